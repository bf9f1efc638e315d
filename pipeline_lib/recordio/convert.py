"""image+JSON -> MXNet RecordIO (``.rec``/``.idx``/``.lst``): the converter behind
``odp convert recordio``, its public API and S3 spooling.

Pure standard library at start-up (no numpy, no MXNet), so the command starts in tens of
milliseconds; OpenCV is imported only to re-encode (``resize``). The annotation JSON of a
chunk is parsed and checked here, labels and ``.lst`` lines built, images read and framed;
:mod:`.write_engine` runs that packing on every core and writes the chunks in place. The
bytes are identical to ``mx.recordio.MXIndexedRecordIO`` + ``pack`` (tests check that).

One job, a little over 450 lines: checking and packing a chunk and assembling the outputs
share the chunk types and the per-channel statistics.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .. import bounds, storage
from ..annotations import (
    CHANNELS,
    AnnotationError,
    ImageAnnotation,
    annotation_channel,
    has_positive_size,
    leaves_image,
    list_annotation_files,
)
from ..gate.channel import parse_annotation, refusal
from ..gate.images import MAX_PIXELS, check_image
from ..gate.paths import Confined, check_relative
from ..gate.rules import GateError
from ..images import MAX_RESIZE, decode_bgr, max_image_pixels
from ..progress import LazyProgress
from . import write_engine
from .errors import ConversionError
from .format import (
    HEADER_WIDTH,
    OBJECT_WIDTH,
    format_index,
    frame_pieces,
    frame_whole,
    has_magic,
    pack_header,
)
from .write_engine import (
    Arena,
    Packed,
    Workers,
    pwrite_all,
    read_failed,
    start_writeback,
)

CONVERTER_VERSION = 1  # part of the cache key: bump when the bytes we write change
MIN_PARALLEL_IMAGES = 1000  # below this, starting workers costs more than they save
MAX_CHUNK_IMAGES = 64


@dataclass
class ChannelStats:
    """What one channel's conversion wrote."""

    images: int = 0
    objects: int = 0
    empty_images: int = 0
    max_objects: int = 0
    class_counts: dict[int, int] = field(default_factory=dict)
    rec_bytes: int = 0
    # (content hash, image) per record, when the overlap rule applies; emptied on merge
    digests: list[tuple[bytes, str]] = field(default_factory=list)


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

    __slots__ = (
        "channel", "data", "json_uris", "start", "resize", "quality", "box_tolerance",
        "validate", "digests", "max_pixels",
    )  # fmt: skip

    def __init__(
        self, channel, data, json_uris, start, resize, quality, box_tolerance,
        validate=True, digests=False, max_pixels=MAX_PIXELS,
    ):  # fmt: skip
        self.channel: str = channel
        self.data: str = data
        self.json_uris: list[str] = json_uris
        self.start: int = start  # index of the first record in its channel
        self.resize: int | None = resize
        self.quality: int = quality
        self.box_tolerance: float = box_tolerance
        self.validate: bool = validate  # the image rules (the path gate applies always)
        self.digests: bool = digests  # content hashes for the train/validation overlap rule
        self.max_pixels: int = max_pixels


class _Item:
    """One record before its image bytes are read (unless re-encoded)."""

    __slots__ = ("json_uri", "image_uri", "size", "head", "image", "name", "folder", "digest")

    def __init__(
        self, json_uri: str, image_uri: str, size: tuple[int, int], head: bytes,
        name: str = "", folder: Confined | None = None,
    ):  # fmt: skip
        self.json_uri = json_uri
        self.image_uri = image_uri
        self.size = size  # (width, height) the JSON declares
        self.head = head  # IR header + label: the record's first bytes
        self.image: bytes | None = None  # re-encoded image bytes
        self.name = name  # the JSON's ``file``
        self.folder = folder  # the local channel folder the image must stay inside
        self.digest: bytes | None = None

    def open(self) -> int:
        """A descriptor of the local image, through the path gate (never blocks)."""
        try:
            return self.folder.open(self.name, self.json_uri)  # type: ignore[union-attr]
        except GateError as exc:
            raise ConversionError(str(exc)) from None
        except OSError as exc:
            raise read_failed(self, exc) from None


def _fmt(x: float) -> str:
    return repr(float(x))


def _normalized_objects(
    ann: ImageAnnotation, where: str, tolerance: float
) -> list[tuple[int, float, float, float, float]]:
    out = []
    w, h = ann.width, ann.height
    for j, box in enumerate(ann.boxes):
        x0, y0, x1, y1 = box.corners
        if not has_positive_size(box.width, box.height):
            raise ConversionError(
                f"{where}: annotations[{j}]: box has no positive width/height "
                f"(width={box.width}, height={box.height}) [B002 box.non_positive]"
            )
        if leaves_image(x0, y0, x1, y1, w, h, tolerance):
            raise ConversionError(
                f"{where}: annotations[{j}]: box (xmin={x0}, ymin={y0}, xmax={x1}, ymax={y1}) "
                f"is outside the {w}x{h} image [B003 box.out_of_bounds]"
            )
        x0, y0 = max(x0, 0.0), max(y0, 0.0)
        x1, y1 = min(x1, float(w)), min(y1, float(h))
        out.append((box.class_id, x0 / w, y0 / h, x1 / w, y1 / h))
    return out


def _reencode(img_bytes: bytes, resize: int | None, quality: int, where: str) -> bytes:
    import cv2

    # the stored pixel grid, as decode_rgb: the boxes refer to it, not to an EXIF rotation
    img = decode_bgr(img_bytes)
    if img is None:
        raise ConversionError(f"{where}: image cannot be decoded")
    if resize:
        h, w = img.shape[:2]
        size = (resize, h * resize // w) if h > w else (w * resize // h, resize)
        if size[0] * size[1] > max_image_pixels():  # sized only within the pixel budget
            raise ConversionError(str(GateError(
                "image.too_large",
                f"{where}: resized to a shorter side of {resize} it would be "
                f"{size[0]}x{size[1]} pixels, above the limit of {max_image_pixels()}",
            )))  # fmt: skip
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
        json_dir = Confined(
            storage.join(task.data, annotation_channel(task.channel)),
            f"{annotation_channel(task.channel)}/",
        )
        raws = (_gated(json_dir.read, os.path.basename(u), u, "annotation") for u in task.json_uris)
    image_dir = storage.join(task.data, task.channel)
    folder = None if s3 else Confined(image_dir, f"{task.channel}/")
    try:
        for k, (json_uri, raw) in enumerate(zip(task.json_uris, raws, strict=True)):
            index = task.start + k
            ann = _gated(parse_annotation, raw, json_uri)
            if s3:
                rel = _gated(check_relative, ann.file, json_uri, "file", f"{task.channel}/")
                image_uri = storage.join(image_dir, rel)
            else:
                image_uri = _gated(folder.check, ann.file, json_uri)  # type: ignore[union-attr]
            objects = _normalized_objects(ann, json_uri, task.box_tolerance)
            label = [float(HEADER_WIDTH), float(OBJECT_WIDTH)]
            for obj in objects:
                label.extend(obj)
            head = pack_header(label, index)
            item = _Item(json_uri, image_uri, (ann.width, ann.height), head, ann.file, folder)
            if task.resize:
                raw_image = _read_image(item, task)
                item.image = _reencode(raw_image, task.resize, task.quality, image_uri)
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


def _stem(path: str) -> str:
    """``a/b/c.jpg`` -> ``c`` (as validation pairs JSONs and images)."""
    name = path.replace("\\", "/").rsplit("/", 1)[-1]
    i = name.rfind(".")
    return name[:i] if i > 0 else name


def _gated(fn, *args, **kwargs):
    """``fn(...)``, with a gate refusal or a bad annotation as a :class:`ConversionError`."""
    try:
        return fn(*args, **kwargs)
    except GateError as exc:
        raise ConversionError(str(exc)) from None
    except AnnotationError as exc:
        raise ConversionError(str(refusal(exc))) from None


def _read_image(item: _Item, task: _Chunk) -> bytes:
    """Image bytes of an item, checked by the image rules and against its JSON's size."""
    if storage.is_s3(item.image_uri):
        try:
            image = storage.read_bytes(item.image_uri)
        except Exception as exc:  # noqa: BLE001  e.g. botocore NoSuchKey
            raise read_failed(item, exc) from None
    else:
        from ..gate.paths import read_fd

        fd = item.open()
        try:
            image = read_fd(fd)
        finally:
            os.close(fd)
    _check_image(item, image, task)
    return image


def _check_image(item: _Item, image: bytes | memoryview, task: _Chunk) -> None:
    """The gate's image rules (``task.validate``), the declared size, the content hash."""
    name = f"{task.channel}/{item.name}"
    if task.validate and _stem(item.name) != _stem(os.path.basename(item.json_uri)):
        raise ConversionError(
            f"{item.json_uri} describes {name}: the JSON and the image must share a base name "
            "[L006 pairing.name_mismatch]"
        )
    _gated(check_image, image, name, item.size, item.json_uri, task.max_pixels, rules=task.validate)
    if task.digests:
        item.digest = overlap_key(image)


def _images(items: list[_Item], s3: bool, task: _Chunk) -> Iterator[bytes]:
    """The image bytes of ``items`` in order; S3 objects are fetched a few at a time ahead."""
    if not s3 or all(it.image is not None for it in items):
        for it in items:
            yield it.image if it.image is not None else _read_image(it, task)
        return
    from concurrent.futures import ThreadPoolExecutor

    window = 16  # requests in flight: bounded memory
    with ThreadPoolExecutor(8) as pool:
        pending: list = []
        for it in items:
            pending.append(pool.submit(lambda it=it: it.image or _read_image(it, task)))
            if len(pending) >= window:
                yield pending.pop(0).result()
        for fut in pending:
            yield fut.result()


def _pack_chunk(task: _Chunk, arena: Arena | None = None) -> Packed:
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
    fetched = _images(items, s3, task) if s3 or arena is None or task.resize else None
    for item in items:
        if fetched is None:
            image, maybe_magic = arena.read(item)  # type: ignore[union-attr]
            _check_image(item, image, task)
        else:
            image = next(fetched)
            maybe_magic = has_magic(image)
        if maybe_magic or has_magic(item.head):  # rare: frame exactly
            framed = frame_pieces([item.head, bytes(image)])
        else:
            framed = frame_whole([item.head, image])
        offsets.append(size)
        pieces.extend(framed)
        size += sum(len(p) for p in framed)
        if item.digest is not None:
            stats.digests.append((item.digest, f"{task.channel}/{item.name}"))
    stats.rec_bytes = size
    return Packed(task.channel, task.start, size, offsets, lst, stats, pieces)


def _max_objects_in(data: str, channel: str) -> int:
    best = 0
    folder = None
    if not storage.is_s3(data):
        folder = Confined(storage.join(data, annotation_channel(channel)))
    for uri in list_annotation_files(data, channel):
        if folder is None:
            raw = storage.read_bytes(uri)
        else:
            raw = _gated(folder.read, os.path.basename(uri), uri, "annotation")
        best = max(best, len(_gated(parse_annotation, raw, uri).boxes))
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
        LazyProgress(sum(len(t.json_uris) for t in tasks), "convert recordio") if progress else None
    )
    pool: Workers | None = None
    outputs = [f"{prefixes[ch]}.{ext}" for ch in channels for ext in ("lst", "idx", "rec")]
    write_engine.remove_stale_parts(outputs)  # left by a conversion killed with SIGKILL
    restore_sigterm = write_engine.sigterm_as_exit()
    try:
        for ch in channels:
            for ext in ("lst", "idx", "rec"):
                writers[ch, ext] = storage.atomic_writer(f"{prefixes[ch]}.{ext}", durable=durable)
                write_engine.hold_part(writers[ch, ext].fileno())
        fds = {ch: writers[ch, "rec"].fileno() for ch in channels}

        def packed_chunks() -> Iterator[tuple[Packed, int]]:
            if workers > 1:
                nonlocal pool
                if any(t.resize for t in tasks):
                    import cv2  # noqa: F401  once here, not once per forked worker
                pool = Workers(min(workers, len(tasks)), tasks, fds, durable, _pack_chunk)
                yield from pool.run()
                pool.close(ok=True)
                return
            pos = dict.fromkeys(channels, 0)
            arena = Arena(2 * write_engine.CHUNK_BYTES)
            for task in tasks:
                packed = _pack_chunk(task, arena)
                fd, offset = fds[task.channel], pos[task.channel]
                pwrite_all(fd, packed.pieces, offset)
                if durable:
                    start_writeback(fd, offset, packed.size)
                pos[task.channel] += packed.size
                yield packed, offset

        overlap = _Overlap(tasks[0].data)
        for packed, offset in packed_chunks():
            ch = packed.channel
            overlap.add(packed.stats.digests)
            writers[ch, "idx"].write(
                format_index((packed.start + k, offset + o) for k, o in enumerate(packed.offsets))
                .encode()
            )  # fmt: skip
            writers[ch, "lst"].write(packed.lst.encode())
            _merge(stats[ch], packed.stats)
            if bar is not None:
                bar.update(packed.stats.images)
        pool = None
        if len(channels) > 1 and any(t.validate for t in tasks):
            _check_class_ids(stats)
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
        restore_sigterm()
    return stats


def output_prefixes(out_prefix: str, channel: str | None) -> dict[str, str]:
    """Channel -> the prefix of its ``.rec``/``.idx``/``.lst`` (see :func:`convert_to_recordio`)."""
    channels = [channel] if channel else list(CHANNELS)
    return {ch: out_prefix if channel else f"{out_prefix}_{ch}" for ch in channels}


def output_files(out_prefix: str, channel: str | None) -> list[str]:
    """Every file :func:`convert_to_recordio` writes for these arguments."""
    return [f"{p}.{ext}" for p in output_prefixes(out_prefix, channel).values() for ext in EXTS]


EXTS = ("rec", "idx", "lst")


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
    validate: bool = True,
    max_pixels: int = MAX_PIXELS,
) -> ConversionResult:
    """Convert an image+JSON dataset to RecordIO ``.rec``/``.idx``/``.lst``.

    ``channel=None`` writes ``{out_prefix}_train.*`` and ``{out_prefix}_validation.*``; a
    channel writes ``{out_prefix}.*``. One ``label_width`` (2 + 5 x most objects in any image
    of either channel) is returned. Image bytes pass through unless ``resize`` (shorter side)
    asks for a JPEG re-encode at ``quality``. Boxes overhanging the image by at most
    ``box_tolerance`` pixels are clipped; others are an error.

    ``workers=0`` uses every core, except for small local pass-through jobs (below
    ``MIN_PARALLEL_IMAGES``) where one process is faster. Memory is one chunk of images
    (``write_engine.CHUNK_BYTES``) per worker whatever the dataset size. Outputs appear only when all of
    them are complete (``durable``: on disk first; write-back starts as each chunk is
    written); on error nothing is left behind. ``s3://`` outputs are assembled in a local
    temporary folder and uploaded (multipart) when complete.

    Every path goes through the gate (:mod:`pipeline_lib.gate.paths`): nothing outside the
    dataset is read, a FIFO never blocks. ``validate`` (default) also applies validation's
    image and dataset rules, from headers only: readable JPEG/PNG, 8-bit RGB, at most
    ``max_pixels``, not truncated, and with both channels the train/validation content
    overlap and class ids 0..K-1; a refusal names the file and ends with the rule's code.
    """
    t0 = time.perf_counter()
    data, out_prefix = str(data), str(out_prefix)
    if channel is not None and channel not in CHANNELS:
        raise ValueError(f"channel must be one of {CHANNELS} or None, got {channel!r}")
    if resize is not None:  # bounded before anything is sized by it
        resize = bounds.parse_int(resize, "resize", minimum=1, maximum=MAX_RESIZE)
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be in 1..100, got {quality}")
    if not storage.is_s3(data) and not Path(data).is_dir():
        raise FileNotFoundError(f"dataset folder not found: {data}")
    channels = [channel] if channel else list(CHANNELS)
    prefixes = output_prefixes(out_prefix, channel)
    listing = {ch: list_annotation_files(data, ch) for ch in channels}
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
        chunk_size = max(1, min(MAX_CHUNK_IMAGES, write_engine.CHUNK_BYTES // typical))
        if n_workers > 1:
            chunk_size = min(chunk_size, math.ceil(total / n_workers))
    digests = validate and channel is None
    tasks = [
        _Chunk(
            ch,
            data,
            uris[k : k + chunk_size],
            k,
            resize,
            quality,
            box_tolerance,
            validate,
            digests,
            max_pixels,
        )  # fmt: skip
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


_EDGE = 4096


def overlap_key(image: bytes | memoryview) -> bytes:
    """A cheap key that byte-identical images always share: a hash of the size and the
    first and last 4 KiB. Keys shared across channels are confirmed on the full bytes."""
    h = hashlib.sha256(len(image).to_bytes(8, "little"))
    h.update(image[:_EDGE])
    h.update(image[-_EDGE:])
    return h.digest()[:16]


class _Overlap:
    """The train/validation overlap rule over the chunks' content keys (train first)."""

    def __init__(self, data: str) -> None:
        self.data = data
        self.seen: dict[bytes, list[str]] = {}  # key -> images of the first channel with it

    def _bytes(self, image: str) -> bytes:
        channel, name = image.split("/", 1)
        if storage.is_s3(self.data):
            return storage.read_bytes(storage.join(self.data, channel, name))
        return _gated(Confined(storage.join(self.data, channel)).read, name, image)

    def add(self, digests: list[tuple[bytes, str]]) -> None:
        for digest, image in digests:
            earlier = self.seen.setdefault(digest, [])
            others = [e for e in earlier if e.split("/", 1)[0] != image.split("/", 1)[0]]
            if not others:
                earlier.append(image)
                continue
            mine = self._bytes(image)  # rare: the same size and edges in both channels
            for first in others:
                if self._bytes(first) == mine:
                    raise ConversionError(
                        f"{image} has the same bytes as {first}: train and validation must not "
                        "share images (validation mAP would be inflated) "
                        "[D001 dataset.train_validation_overlap]"
                    )
        digests.clear()


def _check_class_ids(stats: dict[str, ChannelStats]) -> None:
    """Class ids 0..K-1 across the channels (bounded by the annotation parser)."""
    used = sorted({k for st in stats.values() for k in st.class_counts})
    if used and used[-1] != len(used) - 1:
        missing = sorted(set(range(used[-1] + 1)) - set(used))
        raise ConversionError(
            f"class ids {used[:20]} are used but {missing[:20]} never appear: ids must be "
            "0..K-1 across train+validation [C001 class.not_contiguous]"
        )


def _merge(into: ChannelStats, part: ChannelStats) -> None:
    into.images += part.images
    into.objects += part.objects
    into.empty_images += part.empty_images
    into.max_objects = max(into.max_objects, part.max_objects)
    into.rec_bytes += part.rec_bytes
    for k, v in part.class_counts.items():
        into.class_counts[k] = into.class_counts.get(k, 0) + v
    into.class_counts = dict(sorted(into.class_counts.items()))
