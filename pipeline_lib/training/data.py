"""Training/validation data: one dataset interface over the three SageMaker input formats.

Every source yields ``(image HWC uint8 RGB numpy, label float32 (N, 5) [xmin, ymin, xmax,
ymax, cls] in pixels)``. Images are decoded as MXNet decodes them (the stored pixel grid,
EXIF orientation not applied), which is what the validator checks ``image_size`` against.
"""

from __future__ import annotations

import multiprocessing
import os
import random
from dataclasses import dataclass
from pathlib import Path

import mxnet as mx
import numpy as np

from ..annotations import annotation_channel, class_map, read_class_map
from ..gate.channel import parse_annotation
from ..gate.paths import Confined, read_resolved
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
        anns = []
        for entry in sorted(os.scandir(annotation_dir), key=lambda e: e.name):
            if not entry.name.endswith(".json") or entry.is_dir():
                continue
            source = f"{Path(annotation_dir).name}/{entry.name}"
            ann = parse_annotation(annotations.read(entry.name, source, "annotation"), source)
            anns.append(ann)
            label = ann.label_array()[:, [1, 2, 3, 4, 0]].astype(np.float32)
            self.items.append((self.images.resolve(ann.file, source), source, label))
        if not self.items:
            raise FileNotFoundError(f"no annotation JSON files in {annotation_dir}")
        self.class_map = class_map(anns)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, idx: int) -> tuple[np.ndarray, np.ndarray]:
        path, source, label = self.items[idx]
        return decode_rgb(read_resolved(path, path, source), path), label.copy()


@dataclass(frozen=True)
class ChannelSpec:
    """Where a channel's data is and which format it has."""

    name: str
    path: Path
    content_type: str
    attribute_names: tuple[str, ...] = ()


def open_channel(spec: ChannelSpec, annotation_path: Path | None = None):
    """A detection dataset for one channel (RecordIO, image+JSON or augmented manifest)."""
    files = sorted(p for p in spec.path.iterdir() if p.is_file()) if spec.path.is_dir() else []
    manifests = [p for p in files if p.suffix in (".jsonl", ".manifest")]
    if spec.attribute_names or (manifests and not annotation_path):
        from ..manifest import ManifestDetection

        if len(manifests) != 1:
            raise FileNotFoundError(
                f"channel '{spec.name}': expected one manifest file in {spec.path}, "
                f"found {[p.name for p in manifests]}"
            )
        attribute = spec.attribute_names[1] if len(spec.attribute_names) > 1 else "bounding-box"
        return ManifestDetection(str(manifests[0]), attribute=attribute, base_dir=str(spec.path))
    if spec.content_type in RECORDIO_TYPES:
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
        img, label = self._dataset[idx]
        return self._transform(mx.nd.array(img, dtype="uint8"), label)
