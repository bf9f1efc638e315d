"""The RecordIO byte format: constants, record framing (one writer, one reader), the image
record header and the ``.idx`` text.

Record framing (dmlc-core ``RecordIOWriter``, what ``mx.recordio.MXRecordIO`` writes): each
record is ``uint32 magic=0xced7230a``, ``uint32 lrec`` (top 3 bits: continuation flag, low
29 bits: length), the data, zero padding to 4 bytes. A 4-byte-aligned occurrence of the magic
inside the data splits the record into parts (flags 1, 2, ..., 3) and the magic itself is
dropped; readers put it back. The data of an image record is ``mx.recordio.pack``'s layout:
``struct IfQQ (flag=label size, 0.0, id, id2)``, ``flag`` float32 label values, image bytes.

Standard library only at import (the converter starts without numpy); :func:`unpack_record`
imports numpy for the label array it returns.
"""

from __future__ import annotations

import functools
import struct
from collections import namedtuple
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import BinaryIO

from .errors import ConversionError, RecordIOError

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)
LREC_MASK = (1 << 29) - 1  # low 29 bits of lrec: the part's length
MAX_RECORD_BYTES = 1 << 29
IR_FORMAT = "<IfQQ"  # == mx.recordio._IR_FORMAT on little-endian hosts
IR_SIZE = struct.calcsize(IR_FORMAT)
HEADER_WIDTH = 2  # detection label header we write: [header_width, object_width]
OBJECT_WIDTH = 5  # detection object we write: [cls, xmin, ymin, xmax, ymax]

#: Same fields as ``mx.recordio.IRHeader``.
IRHeader = namedtuple("IRHeader", ["flag", "label", "id", "id2"])


# ---------------------------------------------------------------- finding the magic


@functools.cache
def libc_function(name: str, restype, *argtypes):
    """A C library function with its signature, or ``None`` where there is none (non-glibc)."""
    import ctypes

    try:
        fn = getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None
    fn.restype, fn.argtypes = restype, list(argtypes)
    return fn


def has_magic(data: bytes | int, length: int | None = None) -> bool:
    """Whether the magic occurs anywhere in ``data`` (bytes, or an address and a length):
    glibc's ``memmem`` (SIMD, ~3x faster than ``in``) where available. Most data has none;
    the rare hit is checked exactly by :func:`magic_offsets`."""
    import ctypes

    memmem = libc_function(
        "memmem", ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p,
        ctypes.c_size_t,
    )  # fmt: skip
    n = len(data) if length is None else length  # type: ignore[arg-type]
    if memmem is not None:
        return memmem(data, n, MAGIC_BYTES, 4) is not None
    if isinstance(data, int):  # an address without memmem: read it
        data = ctypes.string_at(data, n)
    return MAGIC_BYTES in data


def magic_offsets(data: bytes) -> list[int]:
    """Offsets of the 4-byte-aligned occurrences of the magic in ``data`` (dmlc's loop only
    looks at whole words)."""
    out = []
    i = data.find(MAGIC_BYTES)
    while i != -1:
        if i % 4 == 0:
            out.append(i)
        i = data.find(MAGIC_BYTES, i + 1)
    return out


# ---------------------------------------------------------------- writing a record


def frame_record(data: bytes) -> list[bytes | memoryview]:
    """The on-disk pieces of one record, exactly as dmlc's ``RecordIOWriter`` writes them."""
    return frame_pieces([data])


def frame_pieces(parts: list[bytes]) -> list[bytes | memoryview]:
    """:func:`frame_record` of ``b"".join(parts)`` without joining them when no split is needed
    (every part but the last must have a length that is a multiple of 4)."""
    parts = [p if isinstance(p, bytes) else bytes(p) for p in parts]
    if not any(has_magic(p) and magic_offsets(p) for p in parts):
        return frame_whole(parts)
    n = _record_size(parts)
    data = parts[0] if len(parts) == 1 else b"".join(parts)
    view = memoryview(data)
    pieces: list[bytes | memoryview] = []
    dptr = 0
    for pos in magic_offsets(data):
        cflag = 1 if dptr == 0 else 2
        pieces.append(struct.pack("<II", MAGIC, (cflag << 29) | (pos - dptr)))
        pieces.append(view[dptr:pos])
        dptr = pos + 4
    pieces.append(struct.pack("<II", MAGIC, ((3 if dptr else 0) << 29) | (n - dptr)))
    pieces.append(view[dptr:])
    if n % 4:
        pieces.append(b"\0" * (4 - n % 4))
    return pieces


def _record_size(parts: list) -> int:
    n = sum(len(p) for p in parts)
    if n >= MAX_RECORD_BYTES:
        raise ConversionError(f"record of {n} bytes: RecordIO records must be < 2^29 bytes")
    return n


def frame_whole(parts: list) -> list:
    """The pieces of a record that the caller knows holds no aligned magic: header, the
    parts, padding (:func:`frame_pieces` without the scan)."""
    n = _record_size(parts)
    out = [struct.pack("<II", MAGIC, n), *parts]
    if n % 4:
        out.append(b"\0" * (4 - n % 4))
    return out


# ---------------------------------------------------------------- reading a record


def read_record(
    read: Callable[[int, int], bytes | memoryview],
    pos: int,
    where: str,
    *,
    indexed: bool,
    head: bytes | None = None,
) -> tuple[bytes, int]:
    """Read one (possibly multi-part) record starting at byte ``pos``: ``(data, next_pos)``.

    ``read(offset, n)`` returns up to ``n`` bytes at ``offset`` (a sequential stream may ignore
    the offset); ``head`` is the first part header when the caller already read it.
    ``indexed``: the record was located through an ``.idx`` offset (random access), which
    the error messages then suggest as a cause. Raises :class:`RecordIOError` naming ``where``.
    """
    parts: list[bytes | memoryview] = []
    first = True
    while True:
        if head is None:
            head = read(pos, 8)
        if len(head) < 8:
            got = f"needs 8 bytes, {len(head)} left" if indexed else f"has {len(head)} of 8 bytes"
            raise RecordIOError(
                f"{where}: truncated: record header at byte {pos} {got} (incomplete .rec file?)"
            )
        magic, lrec = struct.unpack_from("<II", head)
        if magic != MAGIC:
            hint = (
                "not a RecordIO file, or a wrong .idx offset" if indexed else "not a RecordIO file?"
            )
            raise RecordIOError(
                f"{where}: bad magic 0x{magic:08x} at byte {pos}, expected 0x{MAGIC:08x} ({hint})"
            )
        cflag, length = lrec >> 29, lrec & LREC_MASK
        if (cflag in (2, 3)) == first or cflag > 3:
            hint = (
                " (corrupt .rec, or an .idx offset pointing into the middle of a record)"
                if indexed
                else ""
            )
            raise RecordIOError(f"{where}: bad continuation flag {cflag} at byte {pos}{hint}")
        padded = length + (-length % 4)
        body = read(pos + 8, padded)
        if len(body) < padded:
            raise RecordIOError(
                f"{where}: truncated: record at byte {pos} announces {length} bytes, "
                f"only {len(body)} present (incomplete .rec file?)"
            )
        parts.append(body[:length])
        pos += 8 + padded
        head = None
        if cflag in (0, 3):
            break
        parts.append(MAGIC_BYTES)
        first = False
    data = bytes(parts[0]) if len(parts) == 1 else b"".join(parts)
    return data, pos


def parse_record(buf: bytes | memoryview, pos: int = 0, where: str = "record") -> tuple[bytes, int]:
    """Read one (possibly multi-part) record at ``pos`` of ``buf``: ``(data, next_pos)``."""
    view = memoryview(buf)
    return read_record(lambda at, n: view[at : at + n], pos, where, indexed=True)


def scan_stream(f: BinaryIO, source: str) -> Iterator[tuple[int, bytes]]:
    """Sequentially yield ``(offset, data)`` of every record of a binary stream."""
    pos = 0
    ordinal = 0
    read = lambda _at, n: f.read(n)  # noqa: E731  sequential: the offset is implied
    while head := f.read(8):
        data, next_pos = read_record(
            read, pos, f"{source}: record {ordinal}", indexed=False, head=head
        )
        yield pos, data
        pos = next_pos
        ordinal += 1


# ---------------------------------------------------------------- image record header


def pack_header(label: float | Sequence[float], id: int = 0, id2: int = 0) -> bytes:
    """The start of an image record as ``mx.recordio.pack(IRHeader(0, label, id, id2), ...)``
    writes it: the IR header, then the label values as float32 when ``label`` is a sequence
    (a scalar label lives in the header itself)."""
    if isinstance(label, int | float):
        return struct.pack(IR_FORMAT, 0, float(label), id, id2)
    return struct.pack(f"{IR_FORMAT}{len(label)}f", len(label), 0.0, id, id2, *label)


def unpack_record(data: bytes, where: str = "record") -> tuple[IRHeader, bytes]:
    """``mx.recordio.unpack``: the header (label array when ``flag > 0``) and the payload."""
    if len(data) < IR_SIZE:
        raise RecordIOError(f"{where}: {len(data)} bytes, too short for an image record header")
    flag, label, id_, id2 = struct.unpack_from(IR_FORMAT, data, 0)
    pos = IR_SIZE
    if flag > 0:
        import numpy as np

        end = pos + 4 * flag
        if end > len(data):
            raise RecordIOError(
                f"{where}: header announces {flag} label values but the record has only "
                f"{(len(data) - IR_SIZE) // 4}"
            )
        label = np.frombuffer(data, np.float32, flag, pos)
        pos = end
    return IRHeader(flag, label, id_, id2), data[pos:]


def record_id(data: bytes) -> int:
    """The ``id`` field of an image record's header (``-1`` when the record is too short)."""
    return struct.unpack_from("<Q", data, 8)[0] if len(data) >= IR_SIZE else -1


# ---------------------------------------------------------------- .idx text


def format_index(entries: Iterable[tuple[int, int]]) -> str:
    """``.idx`` text as MXIndexedRecordIO writes it."""
    return "".join(f"{k}\t{o}\n" for k, o in entries)
