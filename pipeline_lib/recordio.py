"""MXNet RecordIO for object detection: ``.rec``/``.idx``/``.lst`` writing and reading.

File format (dmlc-core ``RecordIOWriter``, what ``mx.recordio.MXRecordIO`` writes): each
record is ``uint32 magic=0xced7230a``, ``uint32 lrec`` (top 3 bits: continuation flag, low
29 bits: length), the data, zero padding to 4 bytes. A 4-byte-aligned occurrence of the magic
inside the data splits the record into parts (flags 1, 2, ..., 3) and the magic itself is
dropped; readers put it back. The data of an image record is ``mx.recordio.pack``'s layout:
``struct IfQQ (flag=label size, 0.0, id, id2)``, ``flag`` float32 label values, image bytes.

Detection label (the SageMaker/MXNet convention): ``[A, B, extra header..., (cls, xmin, ymin,
xmax, ymax, extra object values...) * N]`` with header width ``A >= 2``, object width
``B >= 5`` and coordinates normalized to [0, 1]. We write ``A=2, B=5``; we read any width.

The writer here is pure Python (no 3 s / 300 MB ``import mxnet`` in the converter or its
worker processes) and byte-identical to ``mx.recordio.MXIndexedRecordIO`` + ``pack``; the
tests check that byte for byte and read our files back with MXNet's and GluonCV's readers.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import multiprocessing
import os
import struct
import sys
import time
from collections import namedtuple
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from . import storage
from .annotations import (
    CHANNELS,
    AnnotationError,
    Box,
    ImageAnnotation,
    annotation_channel,
)
from .jpeg import read_jpeg_header

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)
_LREC_MASK = (1 << 29) - 1
MAX_RECORD_BYTES = 1 << 29
IR_FORMAT = "<IfQQ"  # == mx.recordio._IR_FORMAT on little-endian hosts
IR_SIZE = struct.calcsize(IR_FORMAT)
HEADER_WIDTH = 2
OBJECT_WIDTH = 5
COORD_EPS = 1e-5  # overhang of normalized coordinates tolerated (float32 rounding) and clipped
CONVERTER_VERSION = 1  # part of the cache key: bump when the bytes we write change

#: Same fields as ``mx.recordio.IRHeader``.
IRHeader = namedtuple("IRHeader", ["flag", "label", "id", "id2"])


class RecordIOError(ValueError):
    """A malformed ``.rec``/``.idx``/``.lst``: the message names the file and record."""


class ConversionError(ValueError):
    """A dataset that cannot be converted: the message names the offending file."""


# ---------------------------------------------------------------- detection labels


@dataclass
class DetectionLabel:
    """A parsed detection label.

    ``header`` holds all header values (``header[0]`` = header width, ``header[1]`` = object
    width, then any extras such as image width/height); ``objects`` is ``(N, object_width)``
    float32 ``[cls, xmin, ymin, xmax, ymax, extra...]`` normalized, padding rows removed.
    """

    header: np.ndarray
    objects: np.ndarray

    @property
    def header_width(self) -> int:
        return int(self.header[0])

    @property
    def object_width(self) -> int:
        return int(self.header[1])

    def boxes(self, width: float | None = None, height: float | None = None) -> np.ndarray:
        """``(N, 5)`` float32 ``[xmin, ymin, xmax, ymax, cls]``; pixels when a size is given."""
        out = np.empty((len(self.objects), 5), dtype=np.float32)
        out[:, :4] = self.objects[:, 1:5]
        out[:, 4] = self.objects[:, 0]
        if width is not None and height is not None:
            out[:, (0, 2)] *= np.float32(width)
            out[:, (1, 3)] *= np.float32(height)
        return out


def pack_label(objects: np.ndarray | Iterable, header_extra: Iterable[float] = ()) -> np.ndarray:
    """``[A, 5, extra..., (cls, xmin, ymin, xmax, ymax)*N]`` as float32 from ``(N, 5)`` objects
    ``[cls, xmin, ymin, xmax, ymax]`` (normalized)."""
    objs = np.asarray(objects, dtype=np.float64).reshape(-1, OBJECT_WIDTH)
    extra = [float(v) for v in header_extra]
    head = np.array([HEADER_WIDTH + len(extra), OBJECT_WIDTH, *extra], dtype=np.float64)
    return np.concatenate([head, objs.ravel()]).astype(np.float32)


def unpack_label(label: np.ndarray | Iterable, where: str = "label", check: bool = True):
    """Parse a raw detection label of any header/object width into a :class:`DetectionLabel`.

    Rows whose class id is negative are padding (``label_pad_value=-1``) and are dropped. With
    ``check`` the coordinates must be finite, inside [0, 1] (a ``1e-5`` overhang is clipped) and
    describe boxes of positive size. Raises :class:`RecordIOError` naming ``where``.
    """
    raw = np.asarray(label, dtype=np.float32).ravel()
    if raw.size < 2:
        raise RecordIOError(
            f"{where}: not a detection label: {raw.size} label value(s), expected "
            f"[header_width, object_width, ...] (was the file written without --pack-label?)"
        )
    hw, ow = float(raw[0]), float(raw[1])
    if not (hw.is_integer() and ow.is_integer()) or hw < 2 or ow < 5 or hw > raw.size:
        raise RecordIOError(
            f"{where}: bad label header: header_width={raw[0]:g}, object_width={raw[1]:g} "
            f"(need integers, header_width >= 2, object_width >= 5) in a label of "
            f"{raw.size} values"
        )
    hw_i, ow_i = int(hw), int(ow)
    if (raw.size - hw_i) % ow_i:
        raise RecordIOError(
            f"{where}: label width disagrees with its header: {raw.size} values, but "
            f"header_width={hw_i} + object_width={ow_i} x N objects cannot make {raw.size}"
        )
    objects = raw[hw_i:].reshape(-1, ow_i)
    if len(objects):
        objects = objects[objects[:, 0] >= 0]
    if check and len(objects):
        objects = _check_objects(objects, where)
    return DetectionLabel(raw[:hw_i].copy(), np.ascontiguousarray(objects))


def _check_objects(objects: np.ndarray, where: str) -> np.ndarray:
    coords = objects[:, 1:5]
    bad = ~np.isfinite(objects[:, :5]).all(axis=1)
    bad |= ((coords < -COORD_EPS) | (coords > 1 + COORD_EPS)).any(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        hint = (
            " (pixel coordinates? RecordIO labels must be normalized)" if coords.max() > 1.5 else ""
        )
        raise RecordIOError(f"{where}: object {i} box {coords[i].tolist()} is outside [0, 1]{hint}")
    coords = np.clip(coords, 0.0, 1.0)
    degenerate = (coords[:, 2] <= coords[:, 0]) | (coords[:, 3] <= coords[:, 1])
    if degenerate.any():
        i = int(np.flatnonzero(degenerate)[0])
        raise RecordIOError(
            f"{where}: object {i} box {objects[i, 1:5].tolist()} has no positive width/height "
            f"(expected xmin < xmax and ymin < ymax)"
        )
    objects = objects.copy()
    objects[:, 1:5] = coords
    return objects


def pack_record(label: np.ndarray | float, payload: bytes, id: int = 0, id2: int = 0) -> bytes:
    """``mx.recordio.pack(IRHeader(0, label, id, id2), payload)``, byte for byte."""
    if isinstance(label, int | float):
        return struct.pack(IR_FORMAT, 0, float(label), id, id2) + payload
    arr = np.asarray(label, dtype=np.float32).ravel()
    return struct.pack(IR_FORMAT, arr.size, 0.0, id, id2) + arr.tobytes() + payload


def unpack_record(data: bytes, where: str = "record") -> tuple[IRHeader, bytes]:
    """``mx.recordio.unpack``: the header (label array when ``flag > 0``) and the payload."""
    if len(data) < IR_SIZE:
        raise RecordIOError(f"{where}: {len(data)} bytes, too short for an image record header")
    flag, label, id_, id2 = struct.unpack_from(IR_FORMAT, data, 0)
    pos = IR_SIZE
    if flag > 0:
        end = pos + 4 * flag
        if end > len(data):
            raise RecordIOError(
                f"{where}: header announces {flag} label values but the record has only "
                f"{(len(data) - IR_SIZE) // 4}"
            )
        label = np.frombuffer(data, np.float32, flag, pos)
        pos = end
    return IRHeader(flag, label, id_, id2), data[pos:]


# ---------------------------------------------------------------- record framing


def _magic_words(data: bytes | memoryview) -> np.ndarray:
    """Offsets of the 4-byte-aligned occurrences of the magic in ``data`` (vectorized)."""
    n4 = len(data) >> 2
    if not n4:
        return np.empty(0, dtype=np.int64)
    return np.flatnonzero(np.frombuffer(data, dtype="<u4", count=n4) == MAGIC) * 4


def _may_hold_magic(part: bytes | memoryview) -> bool:
    if len(part) < 256:
        return MAGIC_BYTES in bytes(part)  # any occurrence: the slow path checks alignment
    n4 = len(part) >> 2
    return bool((np.frombuffer(part, dtype="<u4", count=n4) == MAGIC).any())


def frame_record(data: bytes) -> list[bytes | memoryview]:
    """The on-disk pieces of one record, exactly as dmlc's ``RecordIOWriter`` writes them."""
    return frame_pieces([data])


def frame_pieces(parts: list[bytes]) -> list[bytes | memoryview]:
    """:func:`frame_record` of ``b"".join(parts)`` without joining them when no split is needed
    (every part but the last must have a length that is a multiple of 4)."""
    n = sum(len(p) for p in parts)
    if n >= MAX_RECORD_BYTES:
        raise RecordIOError(f"record of {n} bytes: RecordIO records must be < 2^29 bytes")
    if not any(_may_hold_magic(p) for p in parts):
        out: list[bytes | memoryview] = [struct.pack("<II", MAGIC, n), *parts]
        if n % 4:
            out.append(b"\0" * (4 - n % 4))
        return out
    data = parts[0] if len(parts) == 1 else b"".join(parts)
    view = memoryview(data)
    pieces: list[bytes | memoryview] = []
    dptr = 0
    for pos in _magic_words(data).tolist():  # aligned hits below n & ~3, like dmlc's loop
        cflag = 1 if dptr == 0 else 2
        pieces.append(struct.pack("<II", MAGIC, (cflag << 29) | (pos - dptr)))
        pieces.append(view[dptr:pos])
        dptr = pos + 4
    pieces.append(struct.pack("<II", MAGIC, ((3 if dptr else 0) << 29) | (n - dptr)))
    pieces.append(view[dptr:])
    if n % 4:
        pieces.append(b"\0" * (4 - n % 4))
    return pieces


def parse_record(buf: bytes | memoryview, pos: int = 0, where: str = "record") -> tuple[bytes, int]:
    """Read one (possibly multi-part) record at ``pos`` of ``buf``: ``(data, next_pos)``."""
    parts: list[bytes | memoryview] = []
    view = memoryview(buf)
    first = True
    while True:
        if pos + 8 > len(view):
            raise RecordIOError(
                f"{where}: truncated: record header at byte {pos} needs 8 bytes, "
                f"{max(0, len(view) - pos)} left (incomplete .rec file?)"
            )
        magic, lrec = struct.unpack_from("<II", view, pos)
        if magic != MAGIC:
            raise RecordIOError(
                f"{where}: bad magic 0x{magic:08x} at byte {pos}, expected 0x{MAGIC:08x} "
                f"(not a RecordIO file, or a wrong .idx offset)"
            )
        cflag, length = lrec >> 29, lrec & _LREC_MASK
        if (cflag in (2, 3)) == first or cflag > 3:
            raise RecordIOError(
                f"{where}: bad continuation flag {cflag} at byte {pos} (corrupt .rec, or an "
                f".idx offset pointing into the middle of a record)"
            )
        end = pos + 8 + length
        if end + (-length % 4) > len(view):
            raise RecordIOError(
                f"{where}: truncated: record at byte {pos} announces {length} bytes, "
                f"only {max(0, len(view) - pos - 8)} present (incomplete .rec file?)"
            )
        parts.append(view[pos + 8 : end])
        pos = end + (-length % 4)
        if cflag in (0, 3):
            break
        parts.append(MAGIC_BYTES)
        first = False
    data = bytes(parts[0]) if len(parts) == 1 else b"".join(parts)
    return data, pos


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
        if scan:
            pieces = frame_pieces(parts)
        else:
            n = sum(len(p) for p in parts)
            pieces = [struct.pack("<II", MAGIC, n), *parts]
            if n % 4:
                pieces.append(b"\0" * (4 - n % 4))
        start = self.offset
        if self._writev is not None:
            self._writev(pieces)
        else:
            for piece in pieces:
                self.sink.write(piece)
        self.offset += sum(len(p) for p in pieces)
        return start


def _scan_stream(f, source: str) -> Iterator[tuple[int, bytes]]:
    """Sequentially yield ``(offset, data)`` of every record of a binary stream."""
    pos = 0
    ordinal = 0
    while True:
        head = f.read(8)
        if not head:
            return
        start = pos
        parts: list[bytes] = []
        while True:
            where = f"{source}: record {ordinal}"
            if len(head) < 8:
                raise RecordIOError(
                    f"{where}: truncated: record header at byte {pos} has {len(head)} of 8 "
                    f"bytes (incomplete .rec file?)"
                )
            magic, lrec = struct.unpack("<II", head)
            if magic != MAGIC:
                raise RecordIOError(
                    f"{where}: bad magic 0x{magic:08x} at byte {pos}, expected 0x{MAGIC:08x} "
                    f"(not a RecordIO file?)"
                )
            cflag, length = lrec >> 29, lrec & _LREC_MASK
            if (cflag in (2, 3)) != bool(parts) or cflag > 3:
                raise RecordIOError(f"{where}: bad continuation flag {cflag} at byte {pos}")
            padded = length + (-length % 4)
            body = f.read(padded)
            if len(body) < padded:
                raise RecordIOError(
                    f"{where}: truncated: record at byte {pos} announces {length} bytes, "
                    f"only {max(0, len(body))} present (incomplete .rec file?)"
                )
            pos += 8 + padded
            parts.append(body[:length])
            if cflag in (0, 3):
                break
            parts.append(MAGIC_BYTES)
            head = f.read(8)
        yield start, parts[0] if len(parts) == 1 else b"".join(parts)
        ordinal += 1


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
        for ordinal, (offset, data) in enumerate(_scan_stream(f, source)):
            where = f"{source}: record {ordinal} (byte {offset})"
            header, image = unpack_record(data, where)
            label = unpack_label(header.label if header.flag else [header.label], where, check)
            yield Record(ordinal, offset, header, label, image)


# ---------------------------------------------------------------- .idx and .lst


def _is_file(uri: str) -> bool:
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


def format_index(entries: Iterable[tuple[int, int]]) -> str:
    """``.idx`` text as MXIndexedRecordIO writes it."""
    return "".join(f"{k}\t{o}\n" for k, o in entries)


def rebuild_index(
    rec_path: str | os.PathLike, idx_path: str | os.PathLike | None = None
) -> list[tuple[int, int]]:
    """Scan a ``.rec`` and return its index; keys are the records' header ids when unique
    (as im2rec writes them), else their ordinal. Written atomically to ``idx_path`` if given."""
    offsets: list[int] = []
    ids: list[int] = []
    with storage.open_read(rec_path) as f:
        for offset, data in _scan_stream(f, str(rec_path)):
            offsets.append(offset)
            ids.append(struct.unpack_from("<Q", data, 8)[0] if len(data) >= IR_SIZE else -1)
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


# ---------------------------------------------------------------- image headers


def image_info(data: bytes) -> tuple[int, int, int, str]:
    """``(width, height, channels, ext)`` of an encoded image, from its header only."""
    if data[:2] == b"\xff\xd8":
        header = read_jpeg_header(data)
        if header:
            return header.width, header.height, header.components, ".jpg"
    elif data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 26:
        w, h = struct.unpack_from(">II", data, 16)
        channels = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}.get(data[25], 3)
        return w, h, channels, ".png"
    from PIL import Image  # other formats: let Pillow read the header

    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt = (img.format or "bin").lower()
            return img.width, img.height, len(img.getbands()), "." + fmt.replace("jpeg", "jpg")
    except Exception as exc:
        raise ValueError(f"not a readable image ({len(data)} bytes): {exc}") from None


def decode_rgb(data: bytes, where: str = "image") -> np.ndarray:
    """Decode to HWC uint8 RGB the way MXNet's readers do: OpenCV, colour, and the stored
    pixel grid (EXIF orientation is *not* applied, as ``mx.image.imdecode``)."""
    import cv2

    flags = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    img = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if img is None:
        raise RecordIOError(f"{where}: image bytes ({len(data)}) cannot be decoded")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


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
        if _is_file(self.idx_path):
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

    def _where(self, i: int) -> str:
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
        return parse_record(buf, 0, self._where(i))[0]

    def record(self, i: int) -> Record:
        """Record ``i``: header, parsed label (normalized) and encoded image bytes."""
        i = self._index(i)
        where = self._where(i)
        header, image = unpack_record(self.read(i), where)
        label = unpack_label(header.label if header.flag else [header.label], where, self.check)
        return Record(i, int(self.offsets[i]), header, label, image)

    def label(self, i: int) -> DetectionLabel:
        """The detection label of record ``i`` without reading or decoding its image."""
        i = self._index(i)
        start = int(self.offsets[i])
        head = self._pread(start, min(int(self._ends[i]) - start, 8 + IR_SIZE + 4096))
        where = self._where(i)
        if len(head) >= 8 and struct.unpack_from("<I", head, 4)[0] >> 29 == 0:
            length = struct.unpack_from("<I", head, 4)[0] & _LREC_MASK
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
        img = decode_rgb(rec.image, self._where(rec.ordinal))
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


# ---------------------------------------------------------------- image+JSON -> RecordIO


def progress_bar(total: int | None, desc: str):
    """A tqdm bar on stderr; redrawn often on a terminal, every 10 s in logs."""
    from tqdm import tqdm

    return tqdm(
        total=total,
        unit="img",
        desc=desc,
        file=sys.stderr,
        mininterval=0.5 if sys.stderr.isatty() else 10.0,
        dynamic_ncols=True,
    )


@dataclass
class ChannelStats:
    """What one channel's conversion wrote."""

    images: int = 0
    objects: int = 0
    empty_images: int = 0
    max_objects: int = 0
    class_counts: dict[int, int] = field(default_factory=dict)
    rec_bytes: int = 0


@dataclass
class ConversionResult:
    """Outcome of :func:`convert_to_recordio`."""

    label_width: int
    files: list[str]
    channels: dict[str, ChannelStats]
    seconds: float

    @property
    def images(self) -> int:
        return sum(c.images for c in self.channels.values())

    @property
    def class_ids(self) -> list[int]:
        return sorted({k for c in self.channels.values() for k in c.class_counts})


@dataclass
class _Chunk:
    """A slice of one channel's annotation files, prepared by a worker."""

    channel: str
    data: str
    json_uris: list[str]
    start: int  # index of the first record in its channel
    resize: int | None
    quality: int
    box_tolerance: float


@dataclass
class _Item:
    """One record as a worker prepared it: everything but the image bytes (unless re-encoded)."""

    json_uri: str
    image_uri: str
    size: tuple[int, int]  # (width, height) the JSON declares
    head: bytes  # IR header + label: the record's first bytes
    image: bytes | None = None  # image bytes held here (re-encoded, fetched, or too big)
    loc: tuple[int, int] | None = None  # (offset, length) of the bytes in the shared slot
    magic: bool = True  # False once checked: the record holds no aligned RecordIO magic


@dataclass
class _ChunkResult:
    channel: str
    items: list[_Item]
    lst: str
    stats: ChannelStats


def _list_annotations(data: str, channel: str) -> list[str]:
    folder = storage.join(data, annotation_channel(channel))
    if storage.is_s3(data):
        return [u for u in storage.list_files(folder) if u.lower().endswith(".json")]
    try:
        with os.scandir(folder) as it:
            names = [e.name for e in it if e.name.endswith(".json") and e.is_file()]
    except FileNotFoundError:
        return []
    return [os.path.join(folder, name) for name in sorted(names)]


def _read_local(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        data = os.read(fd, size + 1)  # one call for a regular file; +1 notices growth
        if len(data) != size:
            chunks = [data]
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
            data = b"".join(chunks)
        return data
    finally:
        os.close(fd)


def _fmt(x: float) -> str:
    return repr(float(x))


def _normalized_objects(
    ann: ImageAnnotation, where: str, tolerance: float
) -> list[tuple[int, float, float, float, float]]:
    out = []
    w, h = ann.width, ann.height
    for j, box in enumerate(ann.boxes):
        x0, y0, x1, y1 = box.corners
        if box.width <= 0 or box.height <= 0:
            raise ConversionError(
                f"{where}: annotations[{j}]: box has no positive width/height "
                f"(width={box.width}, height={box.height})"
            )
        if x0 < -tolerance or y0 < -tolerance or x1 > w + tolerance or y1 > h + tolerance:
            raise ConversionError(
                f"{where}: annotations[{j}]: box (xmin={x0}, ymin={y0}, xmax={x1}, ymax={y1}) "
                f"is outside the {w}x{h} image"
            )
        x0, y0 = max(x0, 0.0), max(y0, 0.0)
        x1, y1 = min(x1, float(w)), min(y1, float(h))
        out.append((box.class_id, x0 / w, y0 / h, x1 / w, y1 / h))
    return out


def _reencode(img_bytes: bytes, resize: int | None, quality: int, where: str) -> bytes:
    import cv2

    # the stored pixel grid, as decode_rgb: the boxes refer to it, not to an EXIF rotation
    flags = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    img = cv2.imdecode(np.frombuffer(img_bytes, np.uint8), flags)
    if img is None:
        raise ConversionError(f"{where}: image cannot be decoded")
    if resize:
        h, w = img.shape[:2]
        size = (resize, h * resize // w) if h > w else (w * resize // h, resize)
        img = cv2.resize(img, size)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ConversionError(f"{where}: JPEG encoding failed")
    return buf.tobytes()


def _prepare_chunk(task: _Chunk) -> _ChunkResult:
    """Parse and check a chunk's JSON, build record headers, labels and ``.lst`` lines (the
    Python-heavy half of the work; runs in worker processes). Image bytes are left to the
    writer, unless ``resize`` asks for a re-encode (CPU-heavy, so done here)."""
    stats = ChannelStats()
    items: list[_Item] = []
    lst: list[str] = []
    s3 = storage.is_s3(task.data)
    raws: Iterable[bytes]
    pool = None
    if s3:  # overlap request latency with a few threads; memory stays one chunk of JSON
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(8)
        raws = pool.map(storage.read_bytes, task.json_uris)
    else:
        raws = map(_read_local, task.json_uris)
    image_dir = storage.join(task.data, task.channel)
    try:
        for k, (json_uri, raw) in enumerate(zip(task.json_uris, raws, strict=True)):
            index = task.start + k
            try:
                ann = ImageAnnotation.from_json(json.loads(raw), json_uri)
            except (AnnotationError, json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise ConversionError(f"{json_uri}: {exc}") from None
            if "\t" in ann.file or "\n" in ann.file:
                raise ConversionError(f"{json_uri}: file name {ann.file!r} has a tab or newline")
            image_uri = (
                storage.join(image_dir, ann.file) if s3 else os.path.join(image_dir, ann.file)
            )
            objects = _normalized_objects(ann, json_uri, task.box_tolerance)
            label = [float(HEADER_WIDTH), float(OBJECT_WIDTH)]
            for obj in objects:
                label.extend(obj)
            head = struct.pack(f"{IR_FORMAT}{len(label)}f", len(label), 0.0, index, 0, *label)
            item = _Item(json_uri, image_uri, (ann.width, ann.height), head)
            if task.resize:
                item.image = _reencode(_read_image(item), task.resize, task.quality, image_uri)
            items.append(item)
            fields = [str(index), "2", "5"]
            for cls, *coords in objects:
                fields.append(str(cls))
                fields.extend(map(_fmt, coords))
            fields.append(ann.file)
            lst.append("\t".join(fields) + "\n")
            stats.images += 1
            stats.objects += len(objects)
            stats.empty_images += not objects
            stats.max_objects = max(stats.max_objects, len(objects))
            for cls, *_ in objects:
                stats.class_counts[cls] = stats.class_counts.get(cls, 0) + 1
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return _ChunkResult(task.channel, items, "".join(lst), stats)


def _prepare_chunk_safe(task: _Chunk) -> _ChunkResult:
    """Worker entry: re-raise anything as a plain, picklable :class:`ConversionError`."""
    try:
        return _prepare_chunk(task)
    except ConversionError:
        raise
    except Exception as exc:  # noqa: BLE001  keep the message, lose the unpicklable type
        raise ConversionError(f"{type(exc).__name__}: {exc}") from None


def _read_image(item: _Item) -> bytes:
    """Image bytes of an item, checked against the size its JSON declares."""
    try:
        image = (
            storage.read_bytes(item.image_uri)
            if storage.is_s3(item.image_uri)
            else _read_local(item.image_uri)
        )
    except FileNotFoundError:
        raise ConversionError(f"{item.json_uri}: image not found: {item.image_uri}") from None
    except Exception as exc:  # noqa: BLE001  e.g. botocore NoSuchKey
        raise ConversionError(f"{item.json_uri}: cannot read {item.image_uri}: {exc}") from None
    _check_image(item, image)
    return image


def _check_image(item: _Item, image: bytes | memoryview) -> None:
    try:
        width, height, _, _ = image_info(image)
    except ValueError as exc:
        raise ConversionError(f"{item.image_uri}: {exc}") from None
    if (width, height) != item.size:
        raise ConversionError(
            f"{item.json_uri}: image_size {item.size[0]}x{item.size[1]} does not match the "
            f"image {os.path.basename(item.image_uri)} ({width}x{height})"
        )


def _fill_slot(items: list[_Item], slot: memoryview, s3: bool) -> None:
    """Worker side: put each item's image bytes into the shared ``slot`` (local files are read
    straight into it), check them, and note whether the record needs a magic split. Bytes
    that do not fit stay in ``item.image``."""
    cursor = 0
    fetched = _images(items, s3) if s3 else None
    for item in items:
        data: bytes | memoryview | None = item.image
        if data is None and fetched is None:  # local file: read into the slot directly
            try:
                fd = os.open(item.image_uri, os.O_RDONLY)
            except FileNotFoundError:
                raise ConversionError(
                    f"{item.json_uri}: image not found: {item.image_uri}"
                ) from None
            try:
                size = os.fstat(fd).st_size
                if cursor + size <= len(slot):
                    view = slot[cursor : cursor + size]
                    got = 0
                    while got < size and (n := os.readv(fd, [view[got:]])):
                        got += n
                    if got != size:
                        raise ConversionError(f"{item.image_uri}: file changed while read")
                    item.loc = (cursor, size)
                    cursor += size
                    data = view
                else:
                    data = item.image = _read_local(item.image_uri)
            finally:
                os.close(fd)
            _check_image(item, data)
        else:
            if data is None:
                data = next(fetched)  # type: ignore[arg-type]  (read and checked)
            elif fetched is not None:
                next(fetched)  # keep the S3 prefetch in step (yields item.image)
            if cursor + len(data) <= len(slot):
                slot[cursor : cursor + len(data)] = data
                item.loc = (cursor, len(data))
                cursor += len(data)
                item.image = None
            else:
                item.image = bytes(data)
        if _may_hold_magic(item.head) or _may_hold_magic(data):  # rare: check exactly
            item.magic = bool(len(_magic_words(item.head))) or bool(len(_magic_words(data)))
        else:
            item.magic = False


def _images(items: list[_Item], s3: bool) -> Iterator[bytes]:
    """The image bytes of ``items`` in order; S3 objects are fetched a few at a time ahead."""
    if not s3 or all(it.image is not None for it in items):
        for it in items:
            yield it.image if it.image is not None else _read_image(it)
        return
    from concurrent.futures import ThreadPoolExecutor

    window = 16  # requests in flight: bounded memory
    with ThreadPoolExecutor(8) as pool:
        pending: list = []
        for it in items:
            pending.append(pool.submit(lambda it=it: it.image or _read_image(it)))
            if len(pending) >= window:
                yield pending.pop(0).result()
        for fut in pending:
            yield fut.result()


SLOT_BYTES = 16 << 20  # shared memory per chunk slot; each worker has two
_SLOTS = 2


class _Packer:
    """Worker processes that prepare chunks (JSON, checks, labels, ``.lst``) and put the image
    bytes into shared-memory slots, so that this process only copies each image once, from
    the slot into the output. Chunk ``k`` goes to worker ``k % W``; each worker alternates
    between its two slots and waits for this process to free one (bounded memory)."""

    def __init__(self, workers: int, slot_bytes: int | None = None):
        import mmap

        ctx = multiprocessing.get_context("fork")
        self.slot_bytes = slot_bytes = slot_bytes or SLOT_BYTES
        self.arenas = [mmap.mmap(-1, _SLOTS * slot_bytes) for _ in range(workers)]
        self.tasks = [ctx.Queue() for _ in range(workers)]
        self.results = [ctx.Queue() for _ in range(workers)]
        self.free = [ctx.Semaphore(_SLOTS) for _ in range(workers)]
        self.procs = [
            ctx.Process(
                target=_packer_main,
                args=(self.tasks[w], self.results[w], self.free[w], self.arenas[w], slot_bytes),
                daemon=True,
                name=f"odp-convert-{w}",
            )
            for w in range(workers)
        ]
        for proc in self.procs:
            proc.start()

    def run(self, tasks: list[_Chunk]) -> Iterator[tuple[_ChunkResult, memoryview]]:
        """Prepared chunks in order, each with its slot (valid until the next one is asked)."""
        n_workers = len(self.procs)
        for k, task in enumerate(tasks):
            self.tasks[k % n_workers].put(task)
        for q in self.tasks:
            q.put(None)
        for k in range(len(tasks)):
            w = k % n_workers
            status, payload = self._get(w)
            if status != "ok":
                raise ConversionError(payload)
            start = ((k // n_workers) % _SLOTS) * self.slot_bytes
            view = memoryview(self.arenas[w])[start : start + self.slot_bytes]
            try:
                yield payload, view
            finally:
                view.release()
            self.free[w].release()

    def _get(self, w: int):
        import queue

        while True:
            try:
                return self.results[w].get(timeout=1.0)
            except queue.Empty:
                if not self.procs[w].is_alive():
                    raise ConversionError(
                        f"conversion worker {w} died (exit code {self.procs[w].exitcode})"
                    ) from None

    def close(self, ok: bool) -> None:
        for proc in self.procs:
            if ok:
                proc.join(timeout=30)
            if proc.is_alive():
                proc.terminate()
                proc.join()
        for q in (*self.tasks, *self.results):
            q.cancel_join_thread()
            q.close()
        self.arenas = []  # unmapped when the last view of them is gone


def _packer_main(tasks, results, free, arena, slot_bytes: int) -> None:
    import queue

    from .workers import reset_child_signals

    reset_child_signals()

    parent = os.getppid()

    def orphaned() -> bool:  # the converter was killed: do not linger
        return os.getppid() != parent

    n = 0
    while True:
        try:
            task = tasks.get(timeout=1.0)
        except queue.Empty:
            if orphaned():
                return
            continue
        if task is None:
            return
        while not free.acquire(timeout=1.0):
            if orphaned():
                return
        start = (n % _SLOTS) * slot_bytes
        n += 1
        slot = memoryview(arena)[start : start + slot_bytes]
        try:
            res = _prepare_chunk(task)
            _fill_slot(res.items, slot, storage.is_s3(task.data))
            results.put(("ok", res))
        except Exception as exc:  # noqa: BLE001  report, then stop
            msg = str(exc) if isinstance(exc, ConversionError) else f"{type(exc).__name__}: {exc}"
            results.put(("error", msg))
            return
        finally:
            slot.release()


def _max_objects_in(data: str, channel: str) -> int:
    best = 0
    for uri in _list_annotations(data, channel):
        try:
            best = max(best, len(json.loads(storage.read_bytes(uri)).get("annotations", [])))
        except (ValueError, AttributeError) as exc:
            raise ConversionError(f"{uri}: {exc}") from None
    return best


MIN_PARALLEL_IMAGES = 1000  # below this, starting workers costs more than they save


def _resolve_workers(workers: int, images: int, resize: int | None, remote: bool) -> int:
    """``workers > 0`` as given. ``0`` (auto): one per core, except for small pass-through
    jobs on local files, which one process finishes before a pool would have started."""
    if workers and workers > 0:
        return workers
    if images < MIN_PARALLEL_IMAGES and not (resize or remote):
        return 1
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def _typical_image_bytes(data: str, channel: str, sample: int = 32) -> int:
    """Mean size of a few image files of a channel (a guess of 256 KiB on S3)."""
    if storage.is_s3(data):
        return 256 << 10
    sizes = []
    try:
        with os.scandir(os.path.join(data, channel)) as it:
            for entry in it:
                if entry.is_file():
                    sizes.append(entry.stat().st_size)
                    if len(sizes) >= sample:
                        break
    except FileNotFoundError:
        pass
    return max(1, sum(sizes) // len(sizes)) if sizes else 256 << 10


def _convert(
    *,
    listing: dict[str, list[str]],
    prefixes: dict[str, str],
    channel: str | None,
    data: str,
    chunk_size: int,
    resize: int | None,
    quality: int,
    box_tolerance: float,
    progress: bool,
    durable: bool,
    workers: int,
) -> tuple[dict[str, ChannelStats], int]:
    """One conversion attempt; publishes every output or none. Returns the channel stats and
    the most objects in one image over both channels."""
    channels = list(listing)
    tasks = [
        _Chunk(ch, data, uris[k : k + chunk_size], k, resize, quality, box_tolerance)
        for ch, uris in listing.items()
        for k in range(0, len(uris), chunk_size)
    ]
    in_s3 = storage.is_s3(data)
    writers: dict[tuple[str, str], storage.AtomicWriter] = {}
    stats = {ch: ChannelStats() for ch in channels}
    bar = (
        progress_bar(sum(len(v) for v in listing.values()), "convert recordio")
        if progress
        else None
    )
    packer: _Packer | None = None
    try:
        for ch in channels:
            for ext in ("lst", "idx", "rec"):
                writers[ch, ext] = storage.atomic_writer(f"{prefixes[ch]}.{ext}", durable=durable)

        def record_chunk(res: _ChunkResult, offsets: list[int]) -> None:
            first = stats[res.channel].images
            writers[res.channel, "idx"].write(
                format_index((first + k, off) for k, off in enumerate(offsets)).encode()
            )
            writers[res.channel, "lst"].write(res.lst.encode())
            _merge(stats[res.channel], res.stats)

        if workers > 1:
            if resize:
                import cv2  # noqa: F401  once here, not once per forked worker
            packer = _Packer(min(workers, len(tasks)))
            for res, slot in packer.run(tasks):
                rec_w = writers[res.channel, "rec"]
                writer = RecordWriter(rec_w, offset=rec_w.tell())
                offsets = []
                for item in res.items:
                    image = item.image if item.loc is None else slot[item.loc[0] : sum(item.loc)]
                    offsets.append(writer.write_parts([item.head, image], scan=item.magic))
                res.stats.rec_bytes = writer.offset - (offsets[0] if offsets else 0)
                record_chunk(res, offsets)
                if bar is not None:
                    bar.update(res.stats.images)
            packer.close(ok=True)
            packer = None
        else:  # one process: prepare inline, stream the image bytes
            for res in map(_prepare_chunk_safe, tasks):
                rec_w = writers[res.channel, "rec"]
                writer = RecordWriter(rec_w, offset=rec_w.tell())
                offsets = [
                    writer.write_parts([item.head, image])
                    for item, image in zip(res.items, _images(res.items, in_s3), strict=True)
                ]
                res.stats.rec_bytes = writer.offset - (offsets[0] if offsets else 0)
                record_chunk(res, offsets)
                if bar is not None:
                    bar.update(res.stats.images)
        max_objects = max(st.max_objects for st in stats.values())
        if channel is not None:  # one label_width for both channels: look at the other one
            other = [c for c in CHANNELS if c != channel][0]
            if storage.is_s3(data) or Path(data, annotation_channel(other)).is_dir():
                max_objects = max(max_objects, _max_objects_in(data, other))
        # Publish small files first and each .rec last: a .rec that exists is complete.
        storage.commit_all([writers[ch, ext] for ch in channels for ext in ("lst", "idx", "rec")])
        writers.clear()
    finally:
        if packer is not None:
            packer.close(ok=False)
        for w in writers.values():
            w.abort()
        if bar is not None:
            bar.close()
    return stats, max_objects


def convert_to_recordio(
    data: str | os.PathLike,
    out_prefix: str | os.PathLike,
    channel: str | None = None,
    resize: int | None = None,
    quality: int = 95,
    workers: int = 0,
    *,
    box_tolerance: float = 0.0,
    progress: bool = True,
    durable: bool = True,
    chunk_size: int | None = None,
) -> ConversionResult:
    """Convert an image+JSON dataset to RecordIO ``.rec``/``.idx``/``.lst``.

    ``channel=None`` writes ``{out_prefix}_train.*`` and ``{out_prefix}_validation.*``; a
    channel writes ``{out_prefix}.*``. One ``label_width`` (2 + 5 x most objects in any image
    of either channel) is returned. Image bytes pass through unless ``resize`` (shorter side)
    asks for a JPEG re-encode at ``quality``. Boxes overhanging the image by at most
    ``box_tolerance`` pixels are clipped; others are an error.

    With ``workers > 1``, worker processes parse and check the JSON, build labels and
    ``.lst`` lines and read (or re-encode) the images into shared-memory slots, chunk by
    chunk; this process copies each image once from its slot into the output, in order.
    Memory is two slots per worker (``SLOT_BYTES``) whatever the dataset size.
    ``workers=0`` uses every core, except for small local pass-through jobs (below
    ``MIN_PARALLEL_IMAGES``) where one process is faster. Outputs appear only when all of
    them are complete (``durable``: fsynced first); on error nothing is left behind.
    """
    t0 = time.perf_counter()
    data, out_prefix = str(data), str(out_prefix)
    if channel is not None and channel not in CHANNELS:
        raise ValueError(f"channel must be one of {CHANNELS} or None, got {channel!r}")
    if resize is not None and resize <= 0:
        raise ValueError(f"resize must be a positive shorter side, got {resize}")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be in 1..100, got {quality}")
    if not storage.is_s3(data) and not Path(data).is_dir():
        raise FileNotFoundError(f"dataset folder not found: {data}")
    channels = [channel] if channel else list(CHANNELS)
    prefixes = {ch: out_prefix if channel else f"{out_prefix}_{ch}" for ch in channels}
    listing = {ch: _list_annotations(data, ch) for ch in channels}
    for ch, uris in listing.items():
        if not uris:
            raise ConversionError(
                f"{storage.join(data, annotation_channel(ch))}: no annotation JSON files "
                f"for channel '{ch}'"
            )
    total = sum(len(v) for v in listing.values())
    n_workers = _resolve_workers(workers, total, resize, storage.is_s3(data))
    if chunk_size is None and n_workers == 1:
        chunk_size = 256  # only sets how often .idx/.lst are appended
    elif chunk_size is None:  # a chunk's images should fit its shared-memory slot
        typical = max(_typical_image_bytes(data, ch) for ch in channels)
        chunk_size = max(1, min(64, SLOT_BYTES // (2 * typical), math.ceil(total / n_workers)))
    n_tasks = sum(math.ceil(len(v) / chunk_size) for v in listing.values())
    parallel = n_workers > 1 and n_tasks > 1
    stats, max_objects = _convert(
        listing=listing, prefixes=prefixes, channel=channel, data=data, chunk_size=chunk_size,
        resize=resize, quality=quality, box_tolerance=box_tolerance, progress=progress,
        durable=durable, workers=n_workers if parallel else 1,
    )  # fmt: skip
    label_width = HEADER_WIDTH + OBJECT_WIDTH * max(1, max_objects)
    files = [f"{prefixes[ch]}.{ext}" for ch in channels for ext in ("rec", "idx", "lst")]
    return ConversionResult(label_width, files, stats, time.perf_counter() - t0)


def _merge(into: ChannelStats, part: ChannelStats) -> None:
    into.images += part.images
    into.objects += part.objects
    into.empty_images += part.empty_images
    into.max_objects = max(into.max_objects, part.max_objects)
    into.rec_bytes += part.rec_bytes
    for k, v in part.class_counts.items():
        into.class_counts[k] = into.class_counts.get(k, 0) + v
    into.class_counts = dict(sorted(into.class_counts.items()))


# ---------------------------------------------------------------- RecordIO -> image+JSON


def pixel_value(normalized: float, size: int) -> int | float:
    """Pixel coordinate of a float32 normalized value: the shortest decimal (an integer when
    possible) that normalizes back to the very same float32, so round trips are exact."""
    target = np.float32(normalized)
    exact = float(target) * size
    for digits in range(0, 7):
        candidate = round(exact, digits)
        if np.float32(candidate / size) == target:
            return int(candidate) if digits == 0 else candidate
    return exact


def recordio_to_dataset(
    rec_path: str | os.PathLike,
    out: str | os.PathLike,
    channel: str = "train",
    class_names: dict[int, str] | None = None,
    progress: bool = True,
) -> int:
    """Write a ``.rec`` (ours or foreign) as an image+JSON channel under ``out``.

    Image bytes are copied unchanged; names come from the ``.lst`` beside the ``.rec`` when
    there is one (else ``{key:06d}.<ext>``). Pixel boxes are exact inverses of the stored
    normalized values. The output folder appears only when complete. Returns the image count.
    """
    ds = RecordIODetection(rec_path)
    names: dict[int, str] = {}
    lst = lst_path_for(rec_path)
    if _is_file(lst):
        names = {e.index: PurePosixPath(e.path).name for e in read_lst(lst)}
    bar = None
    if progress:
        bar = progress_bar(len(ds), "recordio -> json")
    used: set[str] = set()
    try:
        with storage.atomic_dir(out) as tmp:
            img_dir = Path(tmp) / channel
            ann_dir = Path(tmp) / annotation_channel(channel)
            img_dir.mkdir(parents=True)
            ann_dir.mkdir(parents=True)
            for i in range(len(ds)):
                rec = ds.record(i)
                where = ds._where(i)
                try:
                    width, height, depth, ext = image_info(rec.image)
                except ValueError as exc:
                    raise RecordIOError(f"{where}: {exc}") from None
                key = int(ds.keys[i])
                name = names.get(key) or f"{key:06d}{ext}"
                name = unique_name(name, used)
                boxes = []
                for cls, x0, y0, x1, y1 in rec.label.objects[:, :5].tolist():
                    left, top = pixel_value(x0, width), pixel_value(y0, height)
                    right, bottom = pixel_value(x1, width), pixel_value(y1, height)
                    boxes.append(Box(int(cls), left, top, _sub(right, left), _sub(bottom, top)))
                ann = ImageAnnotation(name, width, height, depth, boxes, class_names)
                (img_dir / name).write_bytes(rec.image)
                (ann_dir / f"{Path(name).stem}.json").write_text(
                    json.dumps(ann.to_json(), indent=1) + "\n", encoding="utf-8"
                )
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return len(ds)


def _sub(a: float, b: float) -> int | float:
    d = a - b
    return int(d) if isinstance(a, int) and isinstance(b, int) else round(d, 9)


def unique_name(name: str, used: set[str]) -> str:
    """``name``, or ``stem_1.ext``, ``stem_2.ext``... if its stem is taken; records it."""
    stem, ext = os.path.splitext(name)
    candidate, n = name, 1
    while stem_key(candidate) in used:
        candidate = f"{stem}_{n}{ext}"
        n += 1
    used.add(stem_key(candidate))
    return candidate


def stem_key(name: str) -> str:
    """Image names that would share an annotation JSON (same stem, any case)."""
    return os.path.splitext(name)[0].lower()


# ---------------------------------------------------------------- cache key


def dataset_content_hash(data: str | os.PathLike, options: dict | None = None) -> str:
    """SHA-256 over the converter version, ``options`` and every file of the four channels
    (relative name, size and bytes, streamed). On S3 the ETag stands in for the bytes, so
    nothing is downloaded. Use it as the conversion cache key."""
    data = str(data)
    h = hashlib.sha256()
    head = {"converter": CONVERTER_VERSION, "options": options or {}}
    h.update(json.dumps(head, sort_keys=True, default=str).encode() + b"\n")
    for folder in (*CHANNELS, *(annotation_channel(c) for c in CHANNELS)):
        base = storage.join(data, folder)
        prefix_len = len(base.rstrip("/")) + 1
        for obj in storage.list_objects(base):
            rel = obj.uri[prefix_len:].replace(os.sep, "/")
            h.update(f"{folder}/{rel}\0{obj.size}\0".encode())
            if obj.etag is not None:
                h.update(obj.etag.encode())
            else:
                with open(obj.uri, "rb") as f:
                    while chunk := f.read(1 << 20):
                        h.update(chunk)
            h.update(b"\0")
    return h.hexdigest()


__all__ = [
    "MAGIC",
    "IRHeader",
    "RecordIOError",
    "ConversionError",
    "DetectionLabel",
    "pack_label",
    "unpack_label",
    "pack_record",
    "unpack_record",
    "frame_record",
    "frame_pieces",
    "parse_record",
    "RecordWriter",
    "Record",
    "iter_records",
    "idx_path_for",
    "lst_path_for",
    "read_index",
    "format_index",
    "rebuild_index",
    "LstEntry",
    "read_lst",
    "image_info",
    "decode_rgb",
    "RecordIODetection",
    "ChannelStats",
    "ConversionResult",
    "convert_to_recordio",
    "progress_bar",
    "pixel_value",
    "recordio_to_dataset",
    "unique_name",
    "dataset_content_hash",
]
