"""image+JSON -> MXNet RecordIO (``.rec``/``.idx``/``.lst``): the converter behind
``odp convert recordio``.

Record framing (dmlc-core ``RecordIOWriter``, what ``mx.recordio.MXRecordIO`` writes): each
record is ``uint32 magic=0xced7230a``, ``uint32 lrec`` (top 3 bits: continuation flag, low
29 bits: length), the data, zero padding to 4 bytes. A 4-byte-aligned occurrence of the magic
inside the data splits the record into parts (flags 1, 2, ..., 3) and the magic itself is
dropped; readers put it back. The data of an image record is ``mx.recordio.pack``'s layout:
``struct IfQQ (flag=label size, 0.0, id, id2)``, ``flag`` float32 label values, image bytes.

This module is pure standard library (no numpy, no MXNet), so the command starts in tens of
milliseconds; :mod:`pipeline_lib.recordio` holds the readers. Worker processes read, check
and frame whole chunks of images and write them with ``pwritev`` straight into the output at
offsets this process hands out in order, so both the reading and the writing run on every
core and no image byte passes through this process.
"""

from __future__ import annotations

import functools
import io
import json
import math
import os
import struct
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from . import storage
from .annotations import CHANNELS, AnnotationError, ImageAnnotation, annotation_channel
from .jpeg import read_jpeg_header

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)
MAX_RECORD_BYTES = 1 << 29
IR_FORMAT = "<IfQQ"  # == mx.recordio._IR_FORMAT on little-endian hosts
IR_SIZE = struct.calcsize(IR_FORMAT)
HEADER_WIDTH = 2
OBJECT_WIDTH = 5
CONVERTER_VERSION = 1  # part of the cache key: bump when the bytes we write change

MIN_PARALLEL_IMAGES = 1000  # below this, starting workers costs more than they save
CHUNK_BYTES = 8 << 20  # image bytes a chunk aims at: the memory each worker holds
MAX_CHUNK_IMAGES = 64
_IOV_MAX = 512  # buffers per pwritev call (Linux allows 1024)
PROGRESS_AFTER_SECONDS = 0.5  # no progress bar for conversions shorter than this


class ConversionError(ValueError):
    """A dataset that cannot be converted: the message names the offending file."""


# ---------------------------------------------------------------- record framing


@functools.cache
def _libc_function(name: str, restype, *argtypes):
    """A C library function with its signature, or ``None`` where there is none (non-glibc)."""
    import ctypes

    try:
        fn = getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None
    fn.restype, fn.argtypes = restype, list(argtypes)
    return fn


def _has_magic(data: bytes | int, length: int | None = None) -> bool:
    """Whether the magic occurs anywhere in ``data`` (bytes, or an address and a length):
    glibc's ``memmem`` (SIMD, ~3x faster than ``in``) where available. Most data has none;
    the rare hit is checked exactly by :func:`magic_offsets`."""
    import ctypes

    memmem = _libc_function(
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


def frame_record(data: bytes) -> list[bytes | memoryview]:
    """The on-disk pieces of one record, exactly as dmlc's ``RecordIOWriter`` writes them."""
    return frame_pieces([data])


def frame_pieces(parts: list[bytes]) -> list[bytes | memoryview]:
    """:func:`frame_record` of ``b"".join(parts)`` without joining them when no split is needed
    (every part but the last must have a length that is a multiple of 4)."""
    parts = [p if isinstance(p, bytes) else bytes(p) for p in parts]
    if not any(_has_magic(p) and magic_offsets(p) for p in parts):
        return _frame_whole(parts)
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


def _frame_whole(parts: list) -> list:
    """The pieces of a record that holds no aligned magic: header, the parts, padding."""
    n = _record_size(parts)
    out = [struct.pack("<II", MAGIC, n), *parts]
    if n % 4:
        out.append(b"\0" * (4 - n % 4))
    return out


def format_index(entries: Iterable[tuple[int, int]]) -> str:
    """``.idx`` text as MXIndexedRecordIO writes it."""
    return "".join(f"{k}\t{o}\n" for k, o in entries)


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


class _LazyProgress:
    """A progress bar that only appears (and only imports tqdm) once a job runs past
    ``PROGRESS_AFTER_SECONDS``: short conversions print nothing and start faster."""

    def __init__(self, total: int, desc: str):
        self.total, self.desc, self.after = total, desc, PROGRESS_AFTER_SECONDS
        self.t0 = time.perf_counter()
        self.done = 0
        self.bar = None

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is None and time.perf_counter() - self.t0 >= self.after:
            self.bar = progress_bar(self.total, self.desc)
            self.bar.update(self.done - n)
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ---------------------------------------------------------------- conversion


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


class _Chunk:
    """A slice of one channel's annotation files, packed by one worker."""

    __slots__ = ("channel", "data", "json_uris", "start", "resize", "quality", "box_tolerance")

    def __init__(self, channel, data, json_uris, start, resize, quality, box_tolerance):
        self.channel: str = channel
        self.data: str = data
        self.json_uris: list[str] = json_uris
        self.start: int = start  # index of the first record in its channel
        self.resize: int | None = resize
        self.quality: int = quality
        self.box_tolerance: float = box_tolerance


class _Item:
    """One record before its image bytes are read (unless re-encoded)."""

    __slots__ = ("json_uri", "image_uri", "size", "head", "image")

    def __init__(self, json_uri: str, image_uri: str, size: tuple[int, int], head: bytes):
        self.json_uri = json_uri
        self.image_uri = image_uri
        self.size = size  # (width, height) the JSON declares
        self.head = head  # IR header + label: the record's first bytes
        self.image: bytes | None = None  # re-encoded image bytes


class _Packed:
    """A chunk ready to write: its framed bytes and what the ``.idx``/``.lst`` need."""

    __slots__ = ("channel", "start", "size", "offsets", "lst", "stats", "pieces")

    def __init__(self, channel, start, size, offsets, lst, stats, pieces=None):
        self.channel: str = channel
        self.start: int = start
        self.size: int = size  # framed bytes
        self.offsets: list[int] = offsets  # of each record, relative to the chunk
        self.lst: str = lst
        self.stats: ChannelStats = stats
        self.pieces: list = pieces or []  # stays in the worker

    def meta(self) -> _Packed:
        return _Packed(self.channel, self.start, self.size, self.offsets, self.lst, self.stats)


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
    import numpy as np

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


def _prepare_chunk(task: _Chunk) -> tuple[list[_Item], str, ChannelStats]:
    """Parse and check a chunk's JSON, build record headers, labels and ``.lst`` lines;
    re-encode the images when ``resize`` asks for it."""
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
    return items, "".join(lst), stats


def _read_failed(item: _Item, exc: Exception) -> ConversionError:
    if isinstance(exc, FileNotFoundError):
        return ConversionError(f"{item.json_uri}: image not found: {item.image_uri}")
    return ConversionError(f"{item.json_uri}: cannot read {item.image_uri}: {exc}")


def _read_image(item: _Item) -> bytes:
    """Image bytes of an item, checked against the size its JSON declares."""
    try:
        image = (
            storage.read_bytes(item.image_uri)
            if storage.is_s3(item.image_uri)
            else _read_local(item.image_uri)
        )
    except Exception as exc:  # noqa: BLE001  e.g. botocore NoSuchKey
        raise _read_failed(item, exc) from None
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


class _Arena:
    """One reusable buffer for a chunk's local image bytes. Reading into memory that is
    already mapped saves a page fault per 4 KiB, a third of the conversion's time when every
    chunk gets fresh memory. (An anonymous mapping: pages are only touched when used.)"""

    def __init__(self, size: int):  # 2 x CHUNK_BYTES: larger images get their own buffers
        import ctypes
        import mmap

        self.buf = mmap.mmap(-1, size)
        self.view = memoryview(self.buf)
        self.addr = ctypes.addressof(ctypes.c_char.from_buffer(self.buf))  # fixed: never resized
        self.cursor = 0

    def read(self, item: _Item) -> tuple[memoryview | bytes, bool]:
        """A local image's bytes (in the arena when they fit) and whether they may hold the
        magic."""
        try:
            fd = os.open(item.image_uri, os.O_RDONLY)
        except OSError as exc:
            raise _read_failed(item, exc) from None
        try:
            size = os.fstat(fd).st_size
            start = self.cursor
            if start + size > len(self.buf):  # a large image: its own buffer
                data = _read_local(item.image_uri)
                return data, _has_magic(data)
            view = self.view[start : start + size]
            got = 0
            while got < size and (n := os.readv(fd, [view[got:]])):
                got += n
            if got != size or os.read(fd, 1):
                raise ConversionError(f"{item.image_uri}: file changed while being read")
            self.cursor = start + size + (-size % 8)
            return view, _has_magic(self.addr + start, size)
        finally:
            os.close(fd)


def _pack_chunk(task: _Chunk, arena: _Arena | None = None) -> _Packed:
    """Everything about a chunk but where it goes: labels, ``.lst`` lines, the image bytes
    (read and checked) and their framing. Local images are read into ``arena``, which must
    not be reused before the pieces are written."""
    items, lst, stats = _prepare_chunk(task)
    s3 = storage.is_s3(task.data)
    if arena is not None:
        arena.cursor = 0
    pieces: list = []
    offsets = []
    size = 0
    fetched = _images(items, s3) if s3 or arena is None or task.resize else None
    for item in items:
        if fetched is None:
            image, maybe_magic = arena.read(item)  # type: ignore[union-attr]
            _check_image(item, image)
        else:
            image = next(fetched)
            maybe_magic = _has_magic(image)
        if maybe_magic or _has_magic(item.head):  # rare: frame exactly
            framed = frame_pieces([item.head, bytes(image)])
        else:
            framed = _frame_whole([item.head, image])
        offsets.append(size)
        pieces.extend(framed)
        size += sum(len(p) for p in framed)
    stats.rec_bytes = size
    return _Packed(task.channel, task.start, size, offsets, lst, stats, pieces)


def _pwrite_all(fd: int, pieces: list, offset: int) -> None:
    """Write ``pieces`` back to back at ``offset`` (few system calls, no joining)."""
    for i in range(0, len(pieces), _IOV_MAX):
        group = pieces[i : i + _IOV_MAX]
        want = sum(len(p) for p in group)
        done = os.pwritev(fd, group, offset)
        if done < want:  # short write (rare): finish it with plain pwrites
            rest = memoryview(b"".join(bytes(p) for p in group))[done:]
            while rest:
                n = os.pwrite(fd, rest, offset + done)
                rest, done = rest[n:], done + n
        offset += want


def _start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing a range to disk now (``sync_file_range``), so that
    the fsync at the end finds little left to do. A no-op where unavailable."""
    import ctypes

    fn = _libc_function(
        "sync_file_range", ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64,
        ctypes.c_uint,
    )  # fmt: skip
    if fn is not None:
        fn(fd, offset, length, 2)  # SYNC_FILE_RANGE_WRITE: start, do not wait


class _Workers:
    """Worker processes that pack chunks and write them into the outputs themselves.

    Worker ``w`` packs chunks ``w, w + W, w + 2W, ...`` (it inherits the task list at fork).
    For each chunk it reports the framed size, packs its next chunk while this process hands
    out the offset (chunks are placed in order, so the offset of ``k`` is known as soon as
    ``k - 1`` is sized, not written), then writes with ``pwritev`` and starts the write-back.
    Each worker holds two chunks (``2 x CHUNK_BYTES`` each). Messages go over pipes."""

    def __init__(self, workers: int, tasks: list[_Chunk], fds: dict[str, int], durable: bool):
        import multiprocessing

        ctx = multiprocessing.get_context("fork")
        self.n_tasks = len(tasks)
        self.conns = []
        self.procs = []
        for w in range(workers):
            mine, theirs = ctx.Pipe()
            proc = ctx.Process(
                target=_worker_main,
                args=(theirs, tasks[w::workers], fds, durable),
                daemon=True,
                name=f"odp-convert-{w}",
            )
            proc.start()
            theirs.close()
            self.conns.append(mine)
            self.procs.append(proc)

    def run(self) -> Iterator[tuple[_Packed, int]]:
        """Each chunk in order with its offset in its channel's ``.rec``; when the iterator
        ends, every chunk is written."""
        n = len(self.procs)
        pos: dict[str, int] = {}
        written = [0] * n
        for k in range(self.n_tasks):
            w = k % n
            while (msg := self._get(w))[0] == "written":
                written[w] += 1
            packed = msg[1]
            offset = pos.get(packed.channel, 0)
            pos[packed.channel] = offset + packed.size
            try:
                self.conns[w].send(offset)
            except OSError:
                raise self._died(w) from None
            yield packed, offset
        for w in range(n):
            while written[w] < len(range(w, self.n_tasks, n)):
                self._get(w)  # only "written" can come now
                written[w] += 1

    def _get(self, w: int):
        conn = self.conns[w]
        while not conn.poll(1.0):
            if not self.procs[w].is_alive():
                raise self._died(w)
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            raise self._died(w) from None
        if msg[0] == "error":
            raise ConversionError(msg[1])
        return msg

    def _died(self, w: int) -> ConversionError:
        self.procs[w].join(5)
        return ConversionError(f"conversion worker {w} died (exit code {self.procs[w].exitcode})")

    def close(self, ok: bool) -> None:
        for proc in self.procs:
            if ok:
                proc.join(timeout=30)
            if proc.is_alive():
                proc.terminate()
                proc.join()
        for conn in self.conns:
            conn.close()


def _worker_main(conn, tasks: list[_Chunk], fds: dict[str, int], durable: bool) -> None:
    from .workers import reset_child_signals

    reset_child_signals()
    parent = os.getppid()
    arenas = [_Arena(2 * CHUNK_BYTES), _Arena(2 * CHUNK_BYTES)]

    def pack(i: int) -> _Packed | None:
        if i >= len(tasks):
            return None
        try:
            packed = _pack_chunk(tasks[i], arenas[i % 2])
        except Exception as exc:  # noqa: BLE001  report, then stop
            msg = str(exc) if isinstance(exc, ConversionError) else f"{type(exc).__name__}: {exc}"
            conn.send(("error", msg))
            raise SystemExit(0) from None
        conn.send(("sized", packed.meta()))
        return packed

    current = pack(0)
    i = 0
    while current is not None:
        upcoming = pack(i + 1)  # while this process places `current`
        while not conn.poll(1.0):
            if os.getppid() != parent:  # the converter was killed: do not linger
                raise SystemExit(1)
        try:
            offset = conn.recv()
        except EOFError:
            raise SystemExit(1) from None
        fd = fds[current.channel]
        try:
            _pwrite_all(fd, current.pieces, offset)
            if durable:
                _start_writeback(fd, offset, current.size)
        except OSError as exc:
            conn.send(("error", f"writing the {current.channel} .rec: {exc}"))
            return
        conn.send(("written", None))
        current, i = upcoming, i + 1


def _max_objects_in(data: str, channel: str) -> int:
    best = 0
    for uri in _list_annotations(data, channel):
        try:
            best = max(best, len(json.loads(storage.read_bytes(uri)).get("annotations", [])))
        except (ValueError, AttributeError) as exc:
            raise ConversionError(f"{uri}: {exc}") from None
    return best


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


def _convert_local(
    tasks: list[_Chunk],
    prefixes: dict[str, str],
    *,
    workers: int,
    durable: bool,
    progress: bool,
) -> dict[str, ChannelStats]:
    """Write every chunk into local outputs; publish all of them or none."""
    channels = list(prefixes)
    writers: dict[tuple[str, str], storage.AtomicWriter] = {}
    stats = {ch: ChannelStats() for ch in channels}
    bar = (
        _LazyProgress(sum(len(t.json_uris) for t in tasks), "convert recordio")
        if progress
        else None
    )
    pool: _Workers | None = None
    try:
        for ch in channels:
            for ext in ("lst", "idx", "rec"):
                writers[ch, ext] = storage.atomic_writer(f"{prefixes[ch]}.{ext}", durable=durable)
        fds = {ch: writers[ch, "rec"].fileno() for ch in channels}

        def packed_chunks() -> Iterator[tuple[_Packed, int]]:
            if workers > 1:
                nonlocal pool
                if any(t.resize for t in tasks):
                    import cv2  # noqa: F401  once here, not once per forked worker
                pool = _Workers(min(workers, len(tasks)), tasks, fds, durable)
                yield from pool.run()
                pool.close(ok=True)
                return
            pos = dict.fromkeys(channels, 0)
            arena = _Arena(2 * CHUNK_BYTES)
            for task in tasks:
                packed = _pack_chunk(task, arena)
                fd, offset = fds[task.channel], pos[task.channel]
                _pwrite_all(fd, packed.pieces, offset)
                if durable:
                    _start_writeback(fd, offset, packed.size)
                pos[task.channel] += packed.size
                yield packed, offset

        for packed, offset in packed_chunks():
            ch = packed.channel
            writers[ch, "idx"].write(
                format_index((packed.start + k, offset + o) for k, o in enumerate(packed.offsets))
                .encode()
            )  # fmt: skip
            writers[ch, "lst"].write(packed.lst.encode())
            _merge(stats[ch], packed.stats)
            if bar is not None:
                bar.update(packed.stats.images)
        pool = None
        # Publish small files first and each .rec last: a .rec that exists is complete.
        storage.commit_all([writers[ch, ext] for ch in channels for ext in ("lst", "idx", "rec")])
        writers.clear()
    finally:
        if pool is not None:
            pool.close(ok=False)
        for w in writers.values():
            w.abort()
        if bar is not None:
            bar.close()
    return stats


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

    ``workers=0`` uses every core, except for small local pass-through jobs (below
    ``MIN_PARALLEL_IMAGES``) where one process is faster. Memory is one chunk of images
    (``CHUNK_BYTES``) per worker whatever the dataset size. Outputs appear only when all of
    them are complete (``durable``: on disk first; write-back starts as each chunk is
    written); on error nothing is left behind. ``s3://`` outputs are assembled in a local
    temporary folder and uploaded (multipart) when complete.
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
    if chunk_size is None:  # a chunk's images are held in memory at once
        typical = max(_typical_image_bytes(data, ch) for ch in channels)
        chunk_size = max(1, min(MAX_CHUNK_IMAGES, CHUNK_BYTES // typical))
        if n_workers > 1:
            chunk_size = min(chunk_size, math.ceil(total / n_workers))
    tasks = [
        _Chunk(ch, data, uris[k : k + chunk_size], k, resize, quality, box_tolerance)
        for ch, uris in listing.items()
        for k in range(0, len(uris), chunk_size)
    ]
    n_workers = n_workers if len(tasks) > 1 else 1
    options = {"workers": n_workers, "durable": durable, "progress": progress}
    if storage.is_s3(out_prefix):
        stats = _convert_via_spool(tasks, prefixes, **options)
    else:
        stats = _convert_local(tasks, prefixes, **options)

    max_objects = max(st.max_objects for st in stats.values())
    if channel is not None:  # one label_width for both channels: look at the other one
        other = [c for c in CHANNELS if c != channel][0]
        if storage.is_s3(data) or Path(data, annotation_channel(other)).is_dir():
            max_objects = max(max_objects, _max_objects_in(data, other))
    label_width = HEADER_WIDTH + OBJECT_WIDTH * max(1, max_objects)
    files = [f"{prefixes[ch]}.{ext}" for ch in channels for ext in ("rec", "idx", "lst")]
    return ConversionResult(label_width, files, stats, time.perf_counter() - t0)


def _convert_via_spool(
    tasks: list[_Chunk], prefixes: dict[str, str], **options
) -> dict[str, ChannelStats]:
    """Convert into a local temporary folder, then upload each file (``.rec`` last)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="odp-convert-") as tmp:
        local = {ch: os.path.join(tmp, ch) for ch in prefixes}
        stats = _convert_local(tasks, local, **{**options, "durable": False})
        writers = []
        try:
            for ch in prefixes:
                for ext in ("lst", "idx", "rec"):
                    w = storage.atomic_writer(f"{prefixes[ch]}.{ext}")
                    writers.append(w)
                    w.append_file(f"{local[ch]}.{ext}")
        except BaseException:
            for w in writers:
                w.abort()
            raise
        storage.commit_all(writers)
    return stats


def _merge(into: ChannelStats, part: ChannelStats) -> None:
    into.images += part.images
    into.objects += part.objects
    into.empty_images += part.empty_images
    into.max_objects = max(into.max_objects, part.max_objects)
    into.rec_bytes += part.rec_bytes
    for k, v in part.class_counts.items():
        into.class_counts[k] = into.class_counts.get(k, 0) + v
    into.class_counts = dict(sorted(into.class_counts.items()))
