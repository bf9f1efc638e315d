"""Reading detection ``.rec`` files: record iteration, the ``.idx`` (read or rebuilt by a
scan), the im2rec ``.lst``, and :class:`RecordIODetection`, the random-access dataset the
training and evaluation loaders use. Any header/object label width reads correctly (see
:mod:`pipeline_lib.recordio.labels`); foreign files written by MXNet, im2rec or GluonCV too.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .. import storage
from ..images import ImageDecodeError, decode_rgb
from .errors import RecordIOError
from .format import (
    IR_SIZE,
    LREC_MASK,
    IRHeader,
    format_index,
    parse_record,
    record_id,
    scan_stream,
    unpack_record,
)
from .labels import DetectionLabel, unpack_label


@dataclass
class Record:
    """One image record of a ``.rec``: where it is, its header, detection label and image."""

    ordinal: int
    offset: int
    header: IRHeader
    label: DetectionLabel
    image: bytes


def iter_records(rec_path: str | os.PathLike, check: bool = True) -> Iterator[Record]:
    """Scan a ``.rec`` front to back (no ``.idx`` needed), parsing detection labels."""
    source = str(rec_path)
    with storage.open_read(source) as f:
        for ordinal, (offset, data) in enumerate(scan_stream(f, source)):
            where = f"{source}: record {ordinal} (byte {offset})"
            header, image = unpack_record(data, where)
            label = unpack_label(header.label if header.flag else [header.label], where, check)
            yield Record(ordinal, offset, header, label, image)


# ---------------------------------------------------------------- .idx and .lst


def is_file(uri: str) -> bool:
    """Whether this exact file/object exists (``storage.exists`` also matches S3 prefixes)."""
    if not storage.is_s3(uri):
        return os.path.isfile(uri)
    try:
        storage.size(uri)
    except FileNotFoundError:
        return False
    return True


def idx_path_for(rec_path: str | os.PathLike) -> str:
    """``x.rec`` -> ``x.idx`` (local path or URI)."""
    s = str(rec_path)
    return (s[:-4] if s.endswith(".rec") else s) + ".idx"


def lst_path_for(rec_path: str | os.PathLike) -> str:
    """``x.rec`` -> ``x.lst`` (local path or URI)."""
    s = str(rec_path)
    return (s[:-4] if s.endswith(".rec") else s) + ".lst"


def read_index(idx_path: str | os.PathLike) -> list[tuple[int, int]]:
    """``(key, offset)`` pairs of an ``.idx`` file, in file order."""
    out: list[tuple[int, int]] = []
    text = storage.read_bytes(idx_path).decode("utf-8", errors="replace")
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        try:
            if len(fields) != 2:
                raise ValueError
            out.append((int(fields[0]), int(fields[1])))
        except ValueError:
            raise RecordIOError(
                f"{idx_path}: line {lineno}: expected 'key<TAB>offset', got {line[:80]!r}"
            ) from None
    return out


def rebuild_index(
    rec_path: str | os.PathLike, idx_path: str | os.PathLike | None = None
) -> list[tuple[int, int]]:
    """Scan a ``.rec`` and return its index; keys are the records' header ids when unique
    (as im2rec writes them), else their ordinal. Written atomically to ``idx_path`` if given."""
    offsets: list[int] = []
    ids: list[int] = []
    with storage.open_read(rec_path) as f:
        for offset, data in scan_stream(f, str(rec_path)):
            offsets.append(offset)
            ids.append(record_id(data))
    keys = ids if len(set(ids)) == len(ids) else list(range(len(offsets)))
    entries = list(zip(keys, offsets, strict=True))
    if idx_path is not None:
        with storage.open_atomic(idx_path) as w:
            w.write(format_index(entries).encode())
    return entries


@dataclass(frozen=True)
class LstEntry:
    """One ``.lst`` line: ``index<TAB>label values...<TAB>path``."""

    index: int
    label: np.ndarray
    path: str


def read_lst(lst_path: str | os.PathLike) -> Iterator[LstEntry]:
    """Parse an im2rec ``.lst`` (``index, label..., relative image path``, tab-separated)."""
    with storage.open_read(lst_path) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8")
        for lineno, line in enumerate(text, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            fields = [x.strip() for x in line.split("\t")]
            try:
                if len(fields) < 3:
                    raise ValueError("fewer than 3 fields")
                index = int(fields[0])
                label = np.array([float(x) for x in fields[1:-1]], dtype=np.float64)
            except ValueError as exc:
                raise RecordIOError(
                    f"{lst_path}: line {lineno}: expected 'index<TAB>label...<TAB>path' "
                    f"({exc}): {line[:100]!r}"
                ) from None
            yield LstEntry(index, label, fields[-1])


# ---------------------------------------------------------------- random-access dataset


class RecordIODetection:
    """Random access to a detection ``.rec`` (local or ``s3://``) for training loaders.

    ``ds[i] -> (image HWC uint8 RGB, label float32 (N, 5) [xmin, ymin, xmax, ymax, cls] in
    pixels)``. Any header/object width reads correctly. A missing ``.idx`` is rebuilt by a
    scan (in memory; pass ``save_index=True`` to also write it). The object pickles without
    its file handle and reopens lazily in each process, so it works in forked DataLoader
    workers; reads use ``pread``/ranged GETs and never share a file offset.
    """

    def __init__(
        self,
        rec_path: str | os.PathLike,
        idx_path: str | os.PathLike | None = None,
        *,
        save_index: bool = False,
        check: bool = True,
    ):
        self.rec_path = str(rec_path)
        self.idx_path = str(idx_path) if idx_path is not None else idx_path_for(self.rec_path)
        self.check = check
        size = storage.size(self.rec_path)
        if is_file(self.idx_path):
            entries = read_index(self.idx_path)
        else:
            entries = rebuild_index(self.rec_path, self.idx_path if save_index else None)
        self.keys = np.array([k for k, _ in entries], dtype=np.int64)
        self.offsets = np.array([o for _, o in entries], dtype=np.int64)
        if len(self.offsets) and (self.offsets.min() < 0 or self.offsets.max() >= size):
            bad = int(np.flatnonzero((self.offsets < 0) | (self.offsets >= size))[0])
            raise RecordIOError(
                f"{self.rec_path}: record {bad} (key {self.keys[bad]}): .idx offset "
                f"{self.offsets[bad]} is outside the {size}-byte file (truncated .rec or "
                f"stale .idx)"
            )
        # A record ends where the next one (in file order) starts, or at the end of the file.
        bounds = np.unique(np.append(self.offsets, size))
        self._ends = bounds[np.searchsorted(bounds, self.offsets, side="right")]
        self.size = size
        self._fd: int | None = None
        self._pid: int | None = None
        self._class_ids: tuple[int, ...] | None = None

    def __len__(self) -> int:
        return len(self.offsets)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_fd"] = None
        state["_pid"] = None
        return state

    def __del__(self) -> None:
        self.close()

    def close(self) -> None:
        """Close this process's file handle (reopened on the next read)."""
        fd = getattr(self, "_fd", None)
        if fd is not None and self._pid == os.getpid():
            os.close(fd)
        self._fd = None

    def _pread(self, offset: int, length: int) -> bytes:
        if storage.is_s3(self.rec_path):
            return storage.read_range(self.rec_path, offset, length)
        if self._fd is None or self._pid != os.getpid():
            self._fd = os.open(self.rec_path, os.O_RDONLY)
            self._pid = os.getpid()
        return os.pread(self._fd, length, offset)

    def where(self, i: int) -> str:
        """Where record ``i`` is, for error messages: file, record, key and byte offset."""
        return f"{self.rec_path}: record {i} (key {self.keys[i]}, byte {self.offsets[i]})"

    def _index(self, i: int) -> int:
        n = len(self.offsets)
        if not -n <= i < n:
            raise IndexError(f"record {i} out of range for {n} records")
        return i % n if n else i

    def read(self, i: int) -> bytes:
        """The raw data (IR header + label + image bytes) of record ``i``."""
        i = self._index(i)
        start = int(self.offsets[i])
        buf = self._pread(start, int(self._ends[i]) - start)
        return parse_record(buf, 0, self.where(i))[0]

    def record(self, i: int) -> Record:
        """Record ``i``: header, parsed label (normalized) and encoded image bytes."""
        i = self._index(i)
        where = self.where(i)
        header, image = unpack_record(self.read(i), where)
        label = unpack_label(header.label if header.flag else [header.label], where, self.check)
        return Record(i, int(self.offsets[i]), header, label, image)

    def label(self, i: int) -> DetectionLabel:
        """The detection label of record ``i`` without reading or decoding its image."""
        i = self._index(i)
        start = int(self.offsets[i])
        head = self._pread(start, min(int(self._ends[i]) - start, 8 + IR_SIZE + 4096))
        where = self.where(i)
        if len(head) >= 8 and struct.unpack_from("<I", head, 4)[0] >> 29 == 0:
            length = struct.unpack_from("<I", head, 4)[0] & LREC_MASK
            data = head[8 : 8 + length]
            flag = struct.unpack_from("<I", data, 0)[0] if len(data) >= 4 else 0
            if IR_SIZE + 4 * flag <= len(data):  # the whole label is in the prefix we read
                header, _ = unpack_record(data, where)
                return unpack_label(
                    header.label if header.flag else [header.label], where, self.check
                )
        return self.record(i).label

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        rec = self.record(i)
        try:
            img = decode_rgb(rec.image, self.where(rec.ordinal))
        except ImageDecodeError as exc:
            raise RecordIOError(str(exc)) from None
        h, w = img.shape[:2]
        return img, rec.label.boxes(w, h)

    @property
    def class_ids(self) -> tuple[int, ...]:
        """Sorted class ids used by the records (labels only; images are not read)."""
        if self._class_ids is None:
            ids: set[int] = set()
            for i in range(len(self)):
                ids.update(int(c) for c in self.label(i).objects[:, 0])
            self._class_ids = tuple(sorted(ids))
        return self._class_ids
