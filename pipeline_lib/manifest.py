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
a local path (relative paths are relative to the manifest's folder, or ``base_dir``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from . import storage
from .annotations import (
    CHANNELS,
    AnnotationError,
    ImageAnnotation,
    annotation_channel,
    iter_channel,
    list_annotation_files,
    unique_name,
)
from .images import decode_rgb, image_info
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
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(obj, Mapping):
        raise ManifestError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    keys = list(obj)
    for name in (source_attribute, attribute):
        if name not in obj:
            raise ManifestError(
                f"{where}: no attribute '{name}' (attributes: {keys}); the label attribute "
                f"is configurable (--attribute)"
            )
    if keys.index(source_attribute) > keys.index(attribute):
        raise ManifestError(
            f"{where}: attributes in the wrong order: expected '{source_attribute}' before "
            f"'{attribute}', found {keys}"
        )
    ref = obj[source_attribute]
    if not isinstance(ref, str) or not ref:
        raise ManifestError(f"{where}: '{source_attribute}' must be a non-empty string: {ref!r}")
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
        raise ManifestError(str(exc)) from None
    class_map = None
    meta = obj.get(f"{attribute}-metadata")
    if isinstance(meta, Mapping) and meta.get("class-map") is not None:
        cmap = meta["class-map"]
        try:
            class_map = {int(k): str(v) for k, v in dict(cmap).items()}
        except (TypeError, ValueError):
            raise ManifestError(
                f"{where}: '{attribute}-metadata.class-map' must map class ids to names: {cmap!r}"
            ) from None
    return ManifestLine(lineno, ref, ann, class_map)


def iter_manifest(
    manifest: str | os.PathLike,
    attribute: str = "bounding-box",
    source_attribute: str = SOURCE_REF,
) -> Iterator[ManifestLine]:
    """Stream the parsed lines of a local or ``s3://`` manifest (blank lines skipped)."""
    manifest = str(manifest)
    with storage.open_read(manifest) as raw:
        for lineno, line in enumerate(raw, 1):
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError:
                raise ManifestError(f"{_where(manifest, lineno)}: not UTF-8") from None
            if text.strip():
                yield parse_line(text, lineno, manifest, attribute, source_attribute)


def resolve_source(ref: str, base_dir: str) -> str:
    """``source-ref`` as a readable URI: s3 and absolute paths as they are, others under
    ``base_dir``."""
    if storage.is_s3(ref) or os.path.isabs(ref):
        return ref
    return storage.join(base_dir, ref)


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
                try:
                    ann = ImageAnnotation.from_json(json.loads(storage.read_bytes(uri)), uri)
                except json.JSONDecodeError as exc:
                    raise AnnotationError(uri, "<file>", "valid JSON", str(exc)) from None
                yield storage.join(data, channel, ann.file), ann
    else:
        if not Path(data, annotation_channel(channel)).is_dir():
            raise FileNotFoundError(
                f"no annotation folder {Path(data, annotation_channel(channel))}"
            )
        out_dir = None if storage.is_s3(out_jsonl) else Path(out_jsonl).resolve().parent

        def items() -> Iterator[tuple[str, ImageAnnotation]]:
            for path, ann in iter_channel(Path(data), channel):
                path = path.resolve()
                if relative and out_dir is not None:
                    yield Path(os.path.relpath(path, out_dir)).as_posix(), ann
                else:
                    yield str(path), ann

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
        with storage.atomic_dir(out) as tmp:
            img_dir = Path(tmp) / channel
            ann_dir = Path(tmp) / annotation_channel(channel)
            img_dir.mkdir(parents=True)
            ann_dir.mkdir(parents=True)
            for line in iter_manifest(manifest, attribute, source_attribute):
                where = _where(manifest, line.lineno)
                uri = resolve_source(line.source_ref, base)
                try:
                    image = storage.read_bytes(uri)
                except FileNotFoundError:
                    raise ManifestError(f"{where}: image not found: {uri}") from None
                except Exception as exc:  # noqa: BLE001  e.g. botocore NoSuchKey
                    raise ManifestError(f"{where}: cannot read {uri}: {exc}") from None
                _check_size(image, line.annotation, where)
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


def _check_size(image: bytes, ann: ImageAnnotation, where: str) -> None:
    try:
        width, height, _, _ = image_info(image)
    except ValueError as exc:
        raise ManifestError(f"{where}: {exc}") from None
    if (width, height) != (ann.width, ann.height):
        raise ManifestError(
            f"{where}: image_size {ann.width}x{ann.height} does not match the image "
            f"({width}x{height})"
        )


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
            self.sources.append(resolve_source(line.source_ref, self.base_dir))
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
            return storage.read_bytes(self.sources[i])
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
