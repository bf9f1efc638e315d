"""MXNet RecordIO for object detection: ``.rec``/``.idx``/``.lst`` reading (and the writer,
re-exported from :mod:`pipeline_lib.recordio_pack`, whose docstring describes the framing).

Detection label (the SageMaker/MXNet convention): ``[A, B, extra header..., (cls, xmin, ymin,
xmax, ymax, extra object values...) * N]`` with header width ``A >= 2``, object width
``B >= 5`` and coordinates normalized to [0, 1]. We write ``A=2, B=5``; we read any width.

The converter is standard library only (no ``import mxnet``, not even numpy) and
byte-identical to ``mx.recordio.MXIndexedRecordIO`` + ``pack``; the tests check that byte for
byte and read our files back with MXNet's and GluonCV's readers.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
from collections import namedtuple
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from . import storage
from .annotations import (
    CHANNELS,
    Box,
    ImageAnnotation,
    annotation_channel,
)
from .recordio_pack import (
    CONVERTER_VERSION,
    HEADER_WIDTH,
    IR_FORMAT,
    IR_SIZE,
    MAGIC,
    MAGIC_BYTES,
    OBJECT_WIDTH,
    ChannelStats,
    ConversionError,
    ConversionResult,
    convert_to_recordio,
    format_index,
    frame_pieces,
    frame_record,
    image_info,
    progress_bar,
)

_LREC_MASK = (1 << 29) - 1
COORD_EPS = 1e-5  # overhang of normalized coordinates tolerated (float32 rounding) and clipped

#: Same fields as ``mx.recordio.IRHeader``.
IRHeader = namedtuple("IRHeader", ["flag", "label", "id", "id2"])


class RecordIOError(ValueError):
    """A malformed ``.rec``/``.idx``/``.lst``: the message names the file and record."""


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
