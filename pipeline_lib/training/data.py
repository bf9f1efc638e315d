"""Training/validation data: one dataset interface over the three SageMaker input formats.

Every source yields ``(image HWC uint8 RGB numpy, label float32 (N, 5) [xmin, ymin, xmax,
ymax, cls] in pixels)``. Images are decoded as MXNet decodes them (the stored pixel grid,
EXIF orientation not applied), which is what the validator checks ``image_size`` against.

Before training, :func:`gate_channels` refuses what ``odp validate`` refuses in image+JSON
and manifest channels (the gate's image rules, a train/validation overlap), and
:func:`check_channel_folder` a channel folder linked out of its dataset.
"""

from __future__ import annotations

import multiprocessing
import os
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import mxnet as mx
import numpy as np

from ..annotations import annotation_channel, class_map, read_class_map
from ..cpus import available_cpus, single_thread_operators
from ..gate.channel import parse_annotation
from ..gate.images import check_image, content_digest
from ..gate.paths import Confined, read_resolved
from ..gate.rules import GateError
from ..images import decode_rgb

RECORDIO_TYPES = ("application/x-recordio", "application/x-recordio-protobuf")
IMAGE_TYPES = ("application/x-image", "image/jpeg", "image/png", "application/jpeg")


class ImageJsonDetection:
    """The image+JSON layout: ``<root>/<channel>/`` images, ``<root>/<channel>_annotation/`` JSON.

    Both folders go through the gate (:mod:`pipeline_lib.gate.paths`): annotation JSONs and
    the images they name must stay inside their folder and be regular files; JSON is parsed
    strictly (duplicate keys, class ids bounded). Refusals are ``GateError`` (a
    ``ValueError``) naming the file and the rule code."""

    def __init__(self, image_dir: str | Path, annotation_dir: str | Path):
        self.image_dir = Path(image_dir)
        self.images = Confined(self.image_dir, f"{self.image_dir.name}/")
        annotations = Confined(annotation_dir, f"{Path(annotation_dir).name}/")
        self.items: list[tuple[str, str, np.ndarray]] = []  # (resolved image, its JSON, label)
        self.names: list[str] = []  # "<channel>/<file>", how messages name each image
        self.sizes: list[tuple[int, int]] = []  # (width, height) each JSON declares
        anns = []
        for entry in sorted(os.scandir(annotation_dir), key=lambda e: e.name):
            if not entry.name.endswith(".json") or entry.is_dir():
                continue
            source = f"{Path(annotation_dir).name}/{entry.name}"
            ann = parse_annotation(annotations.read(entry.name, source, "annotation"), source)
            anns.append(ann)
            label = ann.label_array()[:, [1, 2, 3, 4, 0]].astype(np.float32)
            self.items.append((self.images.resolve(ann.file, source), source, label))
            self.names.append(f"{self.image_dir.name}/{ann.file}")
            self.sizes.append((ann.width, ann.height))
        if not self.items:
            raise FileNotFoundError(f"no annotation JSON files in {annotation_dir}")
        self.class_map = class_map(anns)

    def __len__(self) -> int:
        return len(self.items)

    def read_image_bytes(self, idx: int) -> bytes:
        """The encoded image of item ``idx`` (a regular file inside the channel; a missing
        one is ``pairing.missing_image``)."""
        path, source, _ = self.items[idx]
        try:
            return read_resolved(path, self.names[idx], source)
        except FileNotFoundError:
            raise GateError(
                "pairing.missing_image", f"{source}: file {self.names[idx]!r} does not exist"
            ) from None

    def __getitem__(self, idx: int) -> tuple[np.ndarray, np.ndarray]:
        return decode_rgb(self.read_image_bytes(idx), self.names[idx]), self.items[idx][2].copy()


@dataclass(frozen=True)
class ChannelSpec:
    """Where a channel's data is and which format it has."""

    name: str
    path: Path
    content_type: str
    attribute_names: tuple[str, ...] = ()


def _files(spec: ChannelSpec) -> list[Path]:
    return sorted(p for p in spec.path.iterdir() if p.is_file()) if spec.path.is_dir() else []


def channel_format(spec: ChannelSpec, annotation_path: Path | None = None) -> str:
    """``"manifest"``, ``"recordio"`` or ``"image"`` (image+JSON): how :func:`open_channel`
    reads the channel."""
    manifests = [p for p in _files(spec) if p.suffix in (".jsonl", ".manifest")]
    if spec.attribute_names or (manifests and not annotation_path):
        return "manifest"
    return "recordio" if spec.content_type in RECORDIO_TYPES else "image"


def open_channel(spec: ChannelSpec, annotation_path: Path | None = None):
    """A detection dataset for one channel (RecordIO, image+JSON or augmented manifest)."""
    files = _files(spec)
    manifests = [p for p in files if p.suffix in (".jsonl", ".manifest")]
    fmt = channel_format(spec, annotation_path)
    if fmt == "manifest":
        from ..manifest import ManifestDetection

        if len(manifests) != 1:
            raise FileNotFoundError(
                f"channel '{spec.name}': expected one manifest file in {spec.path}, "
                f"found {[p.name for p in manifests]}"
            )
        attribute = spec.attribute_names[1] if len(spec.attribute_names) > 1 else "bounding-box"
        return ManifestDetection(str(manifests[0]), attribute=attribute, base_dir=str(spec.path))
    if fmt == "recordio":
        from ..recordio.reader import RecordIODetection

        recs = [p for p in files if p.suffix == ".rec"]
        if len(recs) != 1:
            raise FileNotFoundError(
                f"channel '{spec.name}': expected exactly one .rec file in {spec.path}, "
                f"found {[p.name for p in recs]}"
            )
        return RecordIODetection(str(recs[0]))
    if annotation_path is None or not annotation_path.is_dir():
        raise FileNotFoundError(
            f"channel '{spec.name}' has content type {spec.content_type} (image files) and "
            f"needs a '{annotation_channel(spec.name)}' channel with JSON annotations"
        )
    return ImageJsonDetection(spec.path, annotation_path)


def check_channel_folder(path: Path, channel: str) -> None:
    """Refuse a channel folder that is a symlink leaving its dataset, as ``odp validate``
    refuses ``<dataset>/train`` linking elsewhere (``pairing.path_escape``).

    ``ML_ROOT/input/data/<channel>`` is a folder (SageMaker) or a link to one (the job's own
    configuration, :func:`~pipeline_lib.training.contract.prepare_ml_root`), which may point
    anywhere. The folder it names, e.g. ``<dataset>/train``, must stay inside the folder
    that holds it. The message names the channel, never what lies outside."""
    link = os.fspath(path)
    if not os.path.islink(link):
        return
    target = os.path.abspath(os.path.join(os.path.dirname(link), os.readlink(link)))
    holder = Confined(os.path.dirname(target), "its dataset")
    if os.path.lexists(target) and not holder.contains(target):
        raise GateError(
            "pairing.path_escape",
            f"channel '{channel}': {target} is a symlink that leaves the dataset; channel "
            f"folders must be inside {holder.root}",
        )


@dataclass(frozen=True)
class _Image:
    """One image of a channel as the gate checks it."""

    name: str  # how the message names it
    where: str  # the annotation JSON or manifest line that declares it
    size: tuple[int, int]  # (width, height) declared
    read: Callable[[], bytes]


def _gated_images(dataset) -> list[_Image] | None:
    """The images of an image+JSON or manifest dataset; None for RecordIO (its records are
    checked when decoded)."""
    if isinstance(dataset, ImageJsonDetection):
        return [
            _Image(name, source, size, lambda i=i: dataset.read_image_bytes(i))
            for i, (name, (_, source, _), size) in enumerate(
                zip(dataset.names, dataset.items, dataset.sizes, strict=True)
            )
        ]
    from ..manifest import ManifestDetection

    if isinstance(dataset, ManifestDetection):
        return [
            _Image(
                source,
                f"{dataset.manifest_path}: line {lineno}",
                size,
                lambda i=i: dataset.read_image_bytes(i),
            )
            for i, (source, lineno, size) in enumerate(
                zip(dataset.sources, dataset.linenos, dataset.sizes, strict=True)
            )
        ]
    return None


_CHUNK = 256  # images in flight at once (bounded memory whatever the dataset size)


def gate_channels(channels: dict[str, object], max_pixels: int, workers: int | None = None) -> int:
    """The checks ``odp validate`` and ``odp convert`` make, before any training: every image
    of an image+JSON or manifest channel is read once, through the gate, and refused on the
    first broken image rule (header only: format, pixel limit, 8-bit RGB, truncation, the
    declared size) or when train and validation share an image (by content,
    ``dataset.train_validation_overlap``). Raises :class:`GateError` naming the file and
    the rule; returns the number of images checked (0 for RecordIO channels)."""
    workers = workers or min(8, available_cpus())
    seen: dict[bytes, tuple[str, str]] = {}  # content digest -> (channel, first image)
    checked = 0

    def check(image: _Image) -> bytes:
        data = image.read()
        try:
            check_image(data, image.name, image.size, image.where, max_pixels)
        except GateError as exc:  # name the JSON / manifest line that declares the image
            if exc.detail.startswith(image.where):
                raise
            raise GateError(exc.rule, f"{image.where}: {exc.detail}") from None
        return content_digest(data)

    with ThreadPoolExecutor(workers, thread_name_prefix="odp-gate") as pool:
        for channel, dataset in channels.items():
            images = _gated_images(dataset)
            for start in range(0, len(images or ()), _CHUNK):
                chunk = images[start : start + _CHUNK]
                for image, digest in zip(chunk, pool.map(check, chunk), strict=True):
                    first = seen.setdefault(digest, (channel, image.name))
                    if first[0] != channel:
                        raise GateError(
                            "dataset.train_validation_overlap",
                            f"{image.name} has the same bytes as {first[1]}: {first[0]} and "
                            f"{channel} must not share images (validation mAP would be "
                            "inflated)",
                        )
                checked += len(chunk)
    return checked


def dataset_classes(dataset, channel_dir: Path | None = None) -> dict[int, str]:
    """Class map of a dataset: a ``class_map.json`` beside the data wins, then the names in
    its annotations, then ``class_<id>`` for every id the labels use."""
    if channel_dir is not None and (Path(channel_dir) / "class_map.json").is_file():
        return read_class_map(Path(channel_dir) / "class_map.json")
    names = getattr(dataset, "class_map", None)  # image+JSON categories, manifest class-map
    if names:
        return dict(names)
    return {c: f"class_{c}" for c in dataset.class_ids}


class TransformDataset(mx.gluon.data.Dataset):
    """Apply a GluonCV SSD transform to a numpy detection dataset (runs in data workers).

    Forked data workers start with a copy of the parent's random state, so without a reseed
    every worker would draw the very same flips, crops and colour jitter. Each worker seeds
    ``random``/``numpy`` once from ``seed`` and its pool index (reproducible per worker)."""

    def __init__(self, dataset, transform, seed: int | None = None):
        self._dataset, self._transform = dataset, transform
        self._seed = random.randrange(2**31) if seed is None else seed  # noqa: S311  augmentation randomness, not a secret
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self._dataset)

    def __getitem__(self, idx: int):
        if os.getpid() != self._pid:  # first item in a forked worker
            self._pid = os.getpid()
            worker = (multiprocessing.current_process()._identity or (0,))[0]
            seed = (self._seed * 1_000_003 + worker) % 2**32
            random.seed(seed)
            np.random.seed(seed)
            single_thread_operators()  # the workers share the cores with the main process
        img, label = self._dataset[idx]
        return self._transform(mx.nd.array(img, dtype="uint8"), label)
