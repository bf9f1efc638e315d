"""Augmented manifests (JSON Lines) <-> the image+JSON layout, and a manifest dataset reader.

One line per image, exactly like the SageMaker Ground Truth / Object Detection examples::

    {"source-ref": "s3://bucket/images/1.jpg",
     "bounding-box": {"image_size": [{"width": 500, "height": 400, "depth": 3}],
                      "annotations": [{"class_id": 0, "left": 111, "top": 134,
                                       "width": 61, "height": 128}]},
     "bounding-box-metadata": {"class-map": {"0": "dog"}, "type": "groundtruth/object_detection"}}

``source-ref`` comes first and the label attribute (configurable, default ``bounding-box``)
second: SageMaker streams attributes in that order and the algorithm expects the image before
its label, so a line with the order reversed is an error. ``source-ref`` is an ``s3://`` URI or
a local path (relative paths are relative to the manifest's folder, or ``base_dir``). A local
path must stay inside that folder (no ``..``, no escaping symlink, only regular files): a
manifest never makes us read elsewhere on the machine (:mod:`pipeline_lib.gate.paths`).
"""

from __future__ import annotations

import json
import os
import stat
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from . import storage
from .annotations import (
    CHANNELS,
    AnnotationError,
    DuplicateKeyError,
    ImageAnnotation,
    annotation_channel,
    check_class_id,
    list_annotation_files,
    loads_strict,
    unique_name,
)
from .gate.channel import Channel, parse_annotation, refusal
from .gate.images import check_image
from .gate.paths import Confined, check_image_file, check_relative, read_resolved
from .gate.rules import RULES, GateError
from .images import decode_rgb
from .progress import progress_bar

SOURCE_REF = "source-ref"
OBJECT_DETECTION_TYPE = "groundtruth/object_detection"


class ManifestError(ValueError):
    """A malformed manifest line: the message names the file and line number."""


@dataclass
class ManifestLine:
    """One parsed manifest line."""

    lineno: int
    source_ref: str
    annotation: ImageAnnotation  # ``file`` is the basename of ``source_ref``
    class_map: dict[int, str] | None


def _where(manifest: str, lineno: int) -> str:
    return f"{manifest}: line {lineno}"


def _coded(rule: str, message: str) -> ManifestError:
    return ManifestError(f"{message} [{RULES[rule].code} {rule}]")


def parse_line(
    text: str,
    lineno: int = 1,
    manifest: str = "<manifest>",
    attribute: str = "bounding-box",
    source_attribute: str = SOURCE_REF,
) -> ManifestLine:
    """Parse one JSON line strictly; raises :class:`ManifestError` naming the line."""
    where = _where(manifest, lineno)
    try:
        obj = loads_strict(text)
    except DuplicateKeyError as exc:
        raise _coded(
            "json.duplicate_key", f"{where}: key {exc.key!r} appears twice in one object"
        ) from None
    except (ValueError, RecursionError) as exc:  # also UnicodeDecodeError, 4300+ digits
        msg = (
            f"({exc.msg} at column {exc.colno})"
            if isinstance(exc, json.JSONDecodeError)
            else "(nested too deep)"
            if isinstance(exc, RecursionError)
            else f"({exc})"
        )
        raise _coded("manifest.malformed_line", f"{where}: not valid JSON {msg}") from None
    if not isinstance(obj, Mapping):
        raise _coded(
            "manifest.malformed_line", f"{where}: expected a JSON object, got {type(obj).__name__}"
        )
    keys = list(obj)
    for name in (source_attribute, attribute):
        if name not in obj:
            raise _coded(
                "manifest.source_ref" if name == source_attribute else "manifest.label_attribute",
                f"{where}: no attribute '{name}' (attributes: {keys}); the label attribute "
                f"is configurable (--attribute)",
            )
    if keys.index(source_attribute) > keys.index(attribute):
        raise _coded(
            "manifest.label_attribute",
            f"{where}: attributes in the wrong order: expected '{source_attribute}' before "
            f"'{attribute}', found {keys}",
        )
    ref = obj[source_attribute]
    if not isinstance(ref, str) or not ref:
        raise _coded(
            "manifest.source_ref",
            f"{where}: '{source_attribute}' must be a non-empty string: {ref!r}",
        )
    value = obj[attribute]
    if not isinstance(value, Mapping):
        raise ManifestError(
            f"{where}: '{attribute}' must be an object with image_size and annotations, "
            f"got {type(value).__name__}"
        )
    try:
        ann = ImageAnnotation.from_json(
            {"file": PurePosixPath(ref).name, **value}, f"{where}: '{attribute}'"
        )
    except AnnotationError as exc:
        raise ManifestError(str(refusal(exc))) from None
    class_map = None
    meta = obj.get(f"{attribute}-metadata")
    if isinstance(meta, Mapping) and meta.get("class-map") is not None:
        cmap = meta["class-map"]
        field = f"{attribute}-metadata.class-map"
        try:
            class_map = {
                check_class_id(int(k), where, field): str(v) for k, v in dict(cmap).items()
            }
        except AnnotationError as exc:
            raise ManifestError(str(refusal(exc))) from None
        except (TypeError, ValueError):
            raise _coded(
                "manifest.class_map",
                f"{where}: '{field}' must map class ids to names: {str(cmap)[:200]}",
            ) from None
    return ManifestLine(lineno, ref, ann, class_map)


def iter_manifest(
    manifest: str | os.PathLike,
    attribute: str = "bounding-box",
    source_attribute: str = SOURCE_REF,
) -> Iterator[ManifestLine]:
    """Stream the parsed lines of a local or ``s3://`` manifest (blank lines skipped)."""
    manifest = str(manifest)
    if not storage.is_s3(manifest) and os.path.exists(manifest):
        if not stat.S_ISREG(os.stat(manifest).st_mode):  # a FIFO would block the reader
            raise _coded("path.not_regular_file", f"{manifest}: not a regular file")
    with storage.open_read(manifest) as raw:
        for lineno, line in enumerate(raw, 1):
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError:
                raise ManifestError(f"{_where(manifest, lineno)}: not UTF-8") from None
            if text.strip():
                yield parse_line(text, lineno, manifest, attribute, source_attribute)


_FOLDERS: dict[str, Confined] = {}
_FOLDERS_LOCK = threading.Lock()


def _confined(base_dir: str) -> Confined:
    with _FOLDERS_LOCK:
        if base_dir not in _FOLDERS:
            _FOLDERS[base_dir] = Confined(base_dir, f"{base_dir}/")
        return _FOLDERS[base_dir]


def resolve_source(ref: str, base_dir: str, where: str = "source-ref") -> str:
    """``source-ref`` as a readable URI: ``s3://`` URIs as they are; local paths (relative
    to ``base_dir``, or absolute) resolved and confined to ``base_dir``. Raises
    :class:`GateError` (``pairing.path_escape``) naming ``where``."""
    if storage.is_s3(ref):
        return ref
    if storage.is_s3(base_dir):
        return storage.join(base_dir, check_relative(ref, where, "source-ref", base_dir))
    return _confined(base_dir).resolve_ref(ref, where)


def read_source(uri: str, ref: str, where: str) -> bytes:
    """The bytes of a resolved ``source-ref`` (local: only a regular file, never blocking)."""
    if storage.is_s3(uri):
        return storage.read_bytes(uri)
    return read_resolved(uri, ref, where, "source-ref")


def _manifest_dir(manifest: str) -> str:
    if storage.is_s3(manifest):
        return manifest.rsplit("/", 1)[0]
    return str(Path(manifest).resolve().parent)


def manifest_line(
    source_ref: str,
    ann: ImageAnnotation,
    attribute: str = "bounding-box",
    class_map: Mapping[int, str] | None = None,
) -> str:
    """One manifest line (``source-ref``, label attribute, ``<attr>-metadata``), no newline."""
    body = ann.to_json()
    if class_map is None:
        class_map = ann.categories or {b.class_id: f"class_{b.class_id}" for b in ann.boxes}
    line = {
        SOURCE_REF: source_ref,
        attribute: {"image_size": body["image_size"], "annotations": body["annotations"]},
        f"{attribute}-metadata": {
            "class-map": {str(k): v for k, v in sorted(class_map.items())},
            "type": OBJECT_DETECTION_TYPE,
        },
    }
    return json.dumps(line, separators=(", ", ": "))


def dataset_to_manifest(
    data: str | os.PathLike,
    out_jsonl: str | os.PathLike,
    attribute: str = "bounding-box",
    channel: str = "train",
    *,
    relative: bool = True,
) -> int:
    """Write one channel of an image+JSON dataset as an augmented manifest; returns lines.

    ``source-ref`` is the image's ``s3://`` URI for S3 data; for local data it is relative to
    the manifest's folder (``relative=True``, when both are local) or absolute. The file
    appears only when complete.
    """
    data, out_jsonl = str(data), str(out_jsonl)
    if channel not in CHANNELS:
        raise ValueError(f"channel must be one of {CHANNELS}, got {channel!r}")
    if storage.is_s3(data):

        def items() -> Iterator[tuple[str, ImageAnnotation]]:
            for uri in list_annotation_files(data, channel):
                ann = parse_annotation(storage.read_bytes(uri), uri)
                rel = check_relative(ann.file, uri, "file", f"{channel}/")
                yield storage.join(data, channel, rel), ann
    else:
        if not Path(data, annotation_channel(channel)).is_dir():
            raise FileNotFoundError(
                f"no annotation folder {Path(data, annotation_channel(channel))}"
            )
        out_dir = None if storage.is_s3(out_jsonl) else Path(out_jsonl).resolve().parent
        gated = Channel(data, channel)

        def items() -> Iterator[tuple[str, ImageAnnotation]]:
            for source, ann in gated:
                path = gated.image_path(ann, source)
                check_image_file(path, ann.file, source)
                if out_dir is not None and not path.startswith(f"{out_dir.resolve()}{os.sep}"):
                    raise ValueError(
                        f"{path} would be outside the manifest's folder {out_dir}: readers only "
                        "follow local source-refs inside it; write the manifest into the "
                        "dataset folder (or above it)"
                    )
                if relative and out_dir is not None:
                    yield Path(os.path.relpath(path, out_dir.resolve())).as_posix(), ann
                else:
                    yield path, ann

    n = 0
    with storage.open_atomic(out_jsonl) as w:
        buf: list[str] = []
        for ref, ann in items():
            buf.append(manifest_line(ref, ann, attribute) + "\n")
            n += 1
            if len(buf) >= 1000:
                w.write("".join(buf).encode())
                buf.clear()
        w.write("".join(buf).encode())
    return n


def manifest_to_dataset(
    manifest: str | os.PathLike,
    out: str | os.PathLike,
    attribute: str = "bounding-box",
    channel: str = "train",
    *,
    base_dir: str | None = None,
    source_attribute: str = SOURCE_REF,
    progress: bool = True,
    overwrite: bool = False,
) -> int:
    """Write a manifest as one image+JSON channel under ``out`` (images copied byte for byte,
    boxes exactly as in the manifest, ``categories`` from ``class-map``); returns images.

    The output folder appears only when complete; a bad line leaves nothing behind.
    """
    manifest = str(manifest)
    base = base_dir or _manifest_dir(manifest)
    used: set[str] = set()
    n = 0
    bar = progress_bar(None, "manifest -> json") if progress else None
    try:
        with storage.atomic_dir(out, overwrite=overwrite, writer="odp convert json") as tmp:
            img_dir = Path(tmp) / channel
            ann_dir = Path(tmp) / annotation_channel(channel)
            img_dir.mkdir(parents=True)
            ann_dir.mkdir(parents=True)
            for line in iter_manifest(manifest, attribute, source_attribute):
                where = _where(manifest, line.lineno)
                try:
                    uri = resolve_source(line.source_ref, base, where)
                    image = read_source(uri, line.source_ref, where)
                    check_image(image, line.source_ref, _size(line.annotation), where)
                except GateError as exc:
                    raise ManifestError(str(exc)) from None
                except FileNotFoundError:
                    raise ManifestError(f"{where}: image not found: {line.source_ref}") from None
                except Exception as exc:  # noqa: BLE001  e.g. botocore NoSuchKey
                    raise ManifestError(f"{where}: cannot read {line.source_ref}: {exc}") from None
                name = unique_name(line.annotation.file, used)
                ann = line.annotation
                ann.file = name
                if line.class_map is not None:
                    ann.categories = line.class_map
                (img_dir / name).write_bytes(image)
                (ann_dir / f"{Path(name).stem}.json").write_text(
                    json.dumps(ann.to_json(), indent=1) + "\n", encoding="utf-8"
                )
                n += 1
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return n


def _size(ann: ImageAnnotation) -> tuple[int, int]:
    return ann.width, ann.height


class ManifestDetection:
    """Detection dataset over an augmented manifest (same contract as ``RecordIODetection``).

    ``ds[i] -> (image HWC uint8 RGB, label float32 (N, 5) [xmin, ymin, xmax, ymax, cls] in
    pixels)``. All lines are parsed (strictly) when it is built; images are read per item
    from local paths or S3. Holds plain data only, so it pickles into DataLoader workers.
    """

    def __init__(
        self,
        manifest_path: str | os.PathLike,
        attribute: str = "bounding-box",
        base_dir: str | os.PathLike | None = None,
        *,
        source_attribute: str = SOURCE_REF,
    ):
        self.manifest_path = str(manifest_path)
        self.attribute = attribute
        self.base_dir = str(base_dir) if base_dir is not None else _manifest_dir(self.manifest_path)
        self.sources: list[str] = []
        self.linenos: list[int] = []
        self.sizes: list[tuple[int, int]] = []
        self.labels: list[np.ndarray] = []
        self.class_map: dict[int, str] = {}
        for line in iter_manifest(self.manifest_path, attribute, source_attribute):
            ann = line.annotation
            where = _where(self.manifest_path, line.lineno)
            try:
                self.sources.append(resolve_source(line.source_ref, self.base_dir, where))
            except GateError as exc:
                raise ManifestError(str(exc)) from None
            self.linenos.append(line.lineno)
            self.sizes.append((ann.width, ann.height))
            arr = ann.label_array()  # [cls, xmin, ymin, xmax, ymax]
            self.labels.append(np.ascontiguousarray(arr[:, [1, 2, 3, 4, 0]], dtype=np.float32))
            if line.class_map:
                self.class_map.update(line.class_map)

    def __len__(self) -> int:
        return len(self.sources)

    def _where(self, i: int) -> str:
        return _where(self.manifest_path, self.linenos[i])

    def read_image_bytes(self, i: int) -> bytes:
        """Encoded bytes of image ``i``."""
        try:
            return read_source(self.sources[i], self.sources[i], self._where(i))
        except GateError as exc:
            raise ManifestError(str(exc)) from None
        except FileNotFoundError:
            raise ManifestError(f"{self._where(i)}: image not found: {self.sources[i]}") from None

    def label(self, i: int) -> np.ndarray:
        """Pixel label ``(N, 5)`` of item ``i`` (no image read)."""
        return self.labels[i].copy()

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"item {i} out of range for {len(self)} lines")
        i %= len(self)
        img = decode_rgb(self.read_image_bytes(i), self._where(i))
        w, h = self.sizes[i]
        if img.shape[:2] != (h, w):
            raise ManifestError(
                f"{self._where(i)}: image_size {w}x{h} does not match the decoded image "
                f"{img.shape[1]}x{img.shape[0]} ({self.sources[i]})"
            )
        return img, self.labels[i].copy()

    @property
    def class_ids(self) -> tuple[int, ...]:
        """Sorted class ids used by the boxes."""
        ids: set[int] = set()
        for lab in self.labels:
            ids.update(int(c) for c in lab[:, 4])
        return tuple(sorted(ids))


__all__ = [
    "SOURCE_REF",
    "ManifestError",
    "ManifestLine",
    "parse_line",
    "iter_manifest",
    "resolve_source",
    "manifest_line",
    "dataset_to_manifest",
    "manifest_to_dataset",
    "ManifestDetection",
]
