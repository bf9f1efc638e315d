"""Test-only RecordIO helpers: a record writer, ``mx.recordio.pack`` without MXNet, and small
dataset/file helpers shared by the RecordIO tests. The library never writes records this way
(the converter frames records in :mod:`pipeline_lib.recordio.write_engine`'s workers)."""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline_lib.annotations import iter_channel
from pipeline_lib.recordio.format import (
    HEADER_WIDTH,
    OBJECT_WIDTH,
    format_index,
    frame_pieces,
    frame_whole,
    pack_header,
)
from pipeline_lib.recordio.reader import idx_path_for


def pack_label(objects: np.ndarray | Iterable, header_extra: Iterable[float] = ()) -> np.ndarray:
    """``[A, 5, extra..., (cls, xmin, ymin, xmax, ymax)*N]`` as float32 from ``(N, 5)`` objects
    ``[cls, xmin, ymin, xmax, ymax]`` (normalized)."""
    objs = np.asarray(objects, dtype=np.float64).reshape(-1, OBJECT_WIDTH)
    extra = [float(v) for v in header_extra]
    head = np.array([HEADER_WIDTH + len(extra), OBJECT_WIDTH, *extra], dtype=np.float64)
    return np.concatenate([head, objs.ravel()]).astype(np.float32)


def pack_record(label: np.ndarray | float, payload: bytes, id: int = 0, id2: int = 0) -> bytes:
    """``mx.recordio.pack(IRHeader(0, label, id, id2), payload)``, byte for byte."""
    if isinstance(label, int | float):
        return pack_header(float(label), id, id2) + payload
    arr = np.asarray(label, dtype=np.float32).ravel()
    return pack_header(arr.tolist(), id, id2) + payload


class RecordWriter:
    """Appends framed records to a sink; :meth:`write` returns the record's offset.

    The sink is a binary stream (``write``) or anything with ``writev(pieces)`` (such as an
    :class:`~pipeline_lib.storage.AtomicWriter`), which takes a record's pieces in one
    system call without joining them.
    """

    def __init__(self, sink, offset: int = 0):
        self.sink = sink
        self.offset = offset
        self._writev = getattr(sink, "writev", None)

    def write(self, data: bytes) -> int:
        return self.write_parts([data])

    def write_parts(self, parts: list, scan: bool = True) -> int:
        """Write one record given as parts (all but the last a multiple of 4 bytes long).
        ``scan=False``: the caller checked that the data holds no aligned magic."""
        pieces = frame_pieces(parts) if scan else frame_whole(parts)
        start = self.offset
        if self._writev is not None:
            self._writev(pieces)
        else:
            for piece in pieces:
                self.sink.write(piece)
        self.offset += sum(len(p) for p in pieces)
        return start


def write_rec(path: Path, payloads: list[bytes]) -> None:
    """A ``.rec`` of ``payloads`` with its ``.idx`` (keys 0, 1, ...)."""
    with open(path, "wb") as f:
        w = RecordWriter(f)
        offsets = [w.write(p) for p in payloads]
    idx_path_for(path)
    Path(idx_path_for(path)).write_text(format_index(enumerate(offsets)))


def copy_dataset(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def file_names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def max_objects(root: Path) -> int:
    return max(
        len(ann.boxes) for ch in ("train", "validation") for _, ann in iter_channel(root, ch)
    )


def png_bytes(w: int = 8, h: int = 6) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (10, 20, 30)).save(buf, format="PNG")
    return buf.getvalue()
