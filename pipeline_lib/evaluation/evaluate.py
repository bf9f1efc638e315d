"""``odp evaluate``: run a trained model over a validation set and write metrics and pictures.

Output folder (written atomically; a retry replaces it as a whole)::

    OUT/metrics.json        metric, overall numbers, per-class AP / ground-truth counts, images
    OUT/detections/*.json   one verbose-layout JSON per image (what ``odp map`` reads)
    OUT/pr_curves.png       precision-recall curve per class
    OUT/confusion_matrix.png  which classes are taken for which (and for background, or missed)
    OUT/samples.png         sample images, predicted (with score) and true boxes

DATA is any of the three input formats: an image+JSON dataset root (its ``validation``
channel) or a folder of annotation JSONs beside images, a RecordIO ``.rec``, or an
augmented manifest (``.jsonl`` / ``.manifest``).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from .. import storage
from ..annotations import annotation_channel, detections_json
from ..gate.channel import Channel
from ..gate.images import check_image
from ..gate.paths import Confined
from ..gate.rules import GateError
from ..images import max_image_pixels
from .dispatch import evaluate_store
from .files import GroundTruthFile, json_names, parse_ground_truth
from .store import DetectionStore
from .types import MetricName
from .voc import voc_from_columns

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
DETECTIONS_DIR = "detections"
PR_CURVES_FILE = "pr_curves.png"
CONFUSION_FILE = "confusion_matrix.png"
SAMPLES_FILE = "samples.png"


class DetectionPredictor(Protocol):
    """What evaluation needs from a model (``pipeline_lib.inference.Predictor``)."""

    def predict_arrays(self, images: list[np.ndarray], batch_size: int = ...) -> list[np.ndarray]:
        """Per image ``(N, 6)`` ``[class_id, score, xmin, ymin, xmax, ymax]`` in pixels."""
        ...


@dataclass(frozen=True)
class EvalItem:
    """One validation image: a name (for its detection file) and a loader.

    ``load()`` returns ``(image HWC uint8 RGB, gt boxes (N, 4) pixel xmin..ymax, gt classes)``.
    """

    name: str
    load: Callable[[], tuple[np.ndarray, np.ndarray, np.ndarray]]
    difficult: np.ndarray | None = None
    crowd: np.ndarray | None = None
    size: tuple[int, int] | None = None  # (width, height) the annotation claims


@dataclass
class EvalData:
    """A validation set as evaluation items plus the class names it declares."""

    items: list[EvalItem]
    class_names: dict[int, str]
    source: str


# ------------------------------------------------------------------ data


def _image_json_data(annotations: Confined, images: Confined) -> EvalData:
    """Items of an image+JSON folder pair, read through the gate: annotation JSONs and the
    images they name stay inside their folders and are regular files (checked now, before
    any image is read); each image passes the header rules before it is decoded."""
    from ..annotations import class_map

    folder = Path(annotations.root)
    truths = []
    for name in json_names(folder):
        raw = annotations.read(name, f"{annotations.label}{name}", "annotation")
        truths.append(parse_ground_truth(raw, folder / name))
    if not truths:
        raise FileNotFoundError(f"{folder}: no annotation JSON files")
    limit = max_image_pixels()
    items = []
    for t in truths:
        source = f"{folder.name}/{t.path.name}"
        images.check(t.annotation.file, source)  # absolute, '..', nested escaping symlinks
        size = (t.annotation.width, t.annotation.height)

        def load(
            t: GroundTruthFile = t, source: str = source, size: tuple[int, int] = size
        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            name = f"{images.label}{t.annotation.file}"
            try:
                data = images.read(t.annotation.file, source)
            except FileNotFoundError:
                raise GateError(
                    "pairing.missing_image", f"{source}: file {t.annotation.file!r} does not exist"
                ) from None
            return (_gated_decode(data, name, size, source, limit), *t.boxes())

        items.append(EvalItem(t.stem, load, t.difficult, t.crowd, size))
    return EvalData(items, class_map([t.annotation for t in truths]), str(folder))


def _gated_decode(
    data: bytes, name: str, size: tuple[int, int] | None, where: str, limit: int
) -> np.ndarray:
    """The gate's image rules from the header (format, pixel limit, 8-bit RGB, truncation,
    the declared size), then the decode as MXNet's readers and the predictor do it."""
    from ..images import decode_rgb  # OpenCV

    check_image(data, name, size, where, limit)
    return decode_rgb(data, name)


def _manifest_data(ds, names: list[str], source: str) -> EvalData:
    """Items of a ``ManifestDetection``: images read through its confined ``source-ref``s and
    the gate's image rules before decoding."""
    limit = max_image_pixels()

    def load(i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        where = f"{ds.manifest_path}: line {ds.linenos[i]}"
        img = _gated_decode(ds.read_image_bytes(i), ds.sources[i], ds.sizes[i], where, limit)
        label = np.asarray(ds.label(i), dtype=np.float64).reshape(-1, 5)
        return img, label[:, :4], label[:, 4].astype(np.int64)

    items = [EvalItem(n, lambda i=i: load(i)) for i, n in enumerate(names)]
    return EvalData(items, _class_names(ds, dict(ds.class_map)), source)


def _class_names(ds, class_names: dict[int, str]) -> dict[int, str]:
    names_map = dict(class_names)
    for c in getattr(ds, "class_ids", ()):
        names_map.setdefault(int(c), f"class_{c}")
    return dict(sorted(names_map.items()))


def _pixel_dataset_data(ds, names: list[str], class_names: dict[int, str], source: str) -> EvalData:
    """Items of a ``RecordIODetection`` / ``ManifestDetection`` (``ds[i] -> (image, label)``,
    label ``(N, 5)`` ``[xmin, ymin, xmax, ymax, cls]`` in pixels)."""

    def load(i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        img, label = ds[i]
        label = np.asarray(label, dtype=np.float64).reshape(-1, 5)
        return img, label[:, :4], label[:, 4].astype(np.int64)

    items = [EvalItem(n, lambda i=i: load(i)) for i, n in enumerate(names)]
    return EvalData(items, _class_names(ds, class_names), source)


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        k = seen.get(n, 0)
        seen[n] = k + 1
        out.append(n if k == 0 else f"{n}_{k}")
    return out


def _open_file(path: str) -> EvalData:
    name = Path(storage.split_s3(path)[1] if storage.is_s3(path) else path)
    if name.suffix == ".rec":
        from ..recordio.reader import RecordIODetection

        ds = RecordIODetection(path)
        names = [f"{name.stem}_{i:06d}" for i in range(len(ds))]
        return _pixel_dataset_data(ds, names, {}, path)
    if name.suffix in (".jsonl", ".manifest"):
        from ..manifest import ManifestDetection

        ds = ManifestDetection(path)
        names = _unique([Path(s).stem for s in ds.sources])
        return _manifest_data(ds, names, path)
    raise ValueError(f"{path}: not an evaluation dataset (image+JSON folder, .rec or .jsonl)")


def open_eval_data(data: str | Path, channel: str = "validation") -> EvalData:
    """Evaluation items of a local DATA path: an image+JSON root (``channel``), a folder of
    annotation JSONs beside their images, a ``.rec`` or a manifest (``.jsonl``/``.manifest``,
    also ``s3://`` for these two)."""
    if storage.is_s3(data) or not Path(data).is_dir():
        if not storage.is_s3(data) and not Path(data).exists():
            raise FileNotFoundError(f"evaluation data not found: {data}")
        return _open_file(str(data))
    path = Path(data)
    ann_dir = path / annotation_channel(channel)
    if ann_dir.is_dir():
        gated = Channel(path, channel)  # channel folders leaving the dataset are refused
        return _image_json_data(gated.annotations, gated.images)
    if any(path.glob("*.json")):
        folder = Confined(path, f"{path.name}/")
        return _image_json_data(folder, folder)
    found = sorted([*path.glob("*.rec"), *path.glob("*.jsonl"), *path.glob("*.manifest")])
    if len(found) == 1:
        return _open_file(str(found[0]))
    raise FileNotFoundError(
        f"{data}: expected an image+JSON dataset ({channel}/ and {channel}_annotation/, or "
        f"annotation JSONs beside images), one .rec, or one manifest; found {len(found)} of those"
    )


# ------------------------------------------------------------------ evaluation


def _batches(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _detection_json(item: EvalItem, det: np.ndarray, width: int, height: int) -> dict:
    return {"file": item.name, **detections_json(det, width, height)}


def _check_detections(det: object, name: str) -> np.ndarray:
    arr = np.asarray(det, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 6))
    if arr.ndim != 2 or arr.shape[1] != 6:
        raise ValueError(
            f"{name}: the predictor returned shape {arr.shape}, expected (N, 6) "
            f"[class_id, score, xmin, ymin, xmax, ymax]"
        )
    return arr


def _json_clean(obj: object) -> object:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_clean(v) for v in obj]
    return obj


def evaluate_model(
    model: str | Path | None,
    data: str | Path,
    out: str | Path,
    metric: MetricName = "voc07",
    iou: float = 0.5,
    *,
    predictor: DetectionPredictor | None = None,
    batch_size: int = 16,
    num_samples: int = 16,
    sample_score_threshold: float = 0.3,
    channel: str = "validation",
    class_names: dict[int, str] | None = None,
    overwrite: bool = False,
) -> dict:
    """Evaluate ``model`` (``model.tar.gz`` of either format or artifact folder, local or
    s3) on ``data``; ``class_names`` replace the model's (a SageMaker job's archive has
    none: then the dataset's names are used).

    Writes ``metrics.json``, ``detections/``, ``pr_curves.png`` and ``samples.png`` under
    ``out`` and returns the ``metrics.json`` content (``metrics`` holds ``mAP`` and, for
    ``coco``, the 12 COCO numbers). ``predictor`` replaces loading ``model`` (tests, or a
    model already in memory). An existing ``out`` is refused unless it is an earlier
    evaluation and ``overwrite`` (:func:`storage.check_output`).
    """
    from .confusion import confusion_matrix
    from .plots import Sample, plot_confusion_matrix, plot_pr_curves, plot_samples

    started = time.monotonic()
    storage.check_output(out, overwrite=overwrite, writer="odp evaluate")
    if predictor is None:
        if model is None:
            raise ValueError("evaluate_model needs a model path or a predictor")
        from ..inference import Predictor

        predictor = Predictor.load(model, class_names=class_names)
    model_classes = dict(getattr(predictor, "classes", None) or {})
    config = getattr(predictor, "config", None)
    if config is not None and config.class_names == "generated":
        model_classes = {}  # class_0.. stand-ins: the dataset's names are better

    single_file = str(data).endswith((".rec", ".jsonl", ".manifest"))
    with (
        storage.local_dir(data) if storage.is_s3(data) and not single_file else _as_path(data)
    ) as local_data:
        ds = open_eval_data(local_data, channel)
        n = len(ds.items)
        sample_idx = set(np.unique(np.linspace(0, n - 1, min(num_samples, n)).astype(int)).tolist())
        store = DetectionStore()
        samples: list[Sample] = []
        with storage.atomic_dir(out, overwrite=overwrite, writer="odp evaluate") as tmp:
            det_dir = tmp / DETECTIONS_DIR
            det_dir.mkdir(parents=True, exist_ok=True)
            done = 0
            for batch in _batches(list(enumerate(ds.items)), batch_size):
                loaded = [it.load() for _, it in batch]
                images = [x[0] for x in loaded]
                dets = predictor.predict_arrays(images, batch_size=batch_size)
                if len(dets) != len(images):
                    raise ValueError(
                        f"the predictor returned {len(dets)} results for {len(images)} images"
                    )
                for (i, item), (img, gt_boxes, gt_classes), det in zip(
                    batch, loaded, dets, strict=True
                ):
                    h, w = img.shape[:2]
                    if item.size is not None and tuple(item.size) != (w, h):
                        raise ValueError(
                            f"{item.name}: annotation image_size {item.size[0]}x{item.size[1]} "
                            f"does not match the image {w}x{h}"
                        )
                    det = _check_detections(det, item.name)
                    store.add_image(
                        det[:, 2:6],
                        det[:, 0],
                        det[:, 1],
                        gt_boxes,
                        gt_classes,
                        gt_difficult=item.difficult,
                        gt_crowd=item.crowd,
                    )
                    (det_dir / f"{item.name}.json").write_text(
                        json.dumps(_detection_json(item, det, w, h))
                    )
                    if i in sample_idx:
                        samples.append(
                            Sample(
                                img,
                                gt_boxes,
                                gt_classes,
                                det[:, 2:6],
                                det[:, 0].astype(np.int64),
                                det[:, 1],
                                item.name,
                            )
                        )
                done += len(batch)
                log.info("evaluated %d/%d images", done, n)

            names = {**ds.class_names, **model_classes}
            result = evaluate_store(store, metric, iou, names)
            if metric == "coco":  # curves for the picture: VOC area AP at IoU 0.5
                curves = voc_from_columns(store.columns(), [0.5], False, names, 1.0)[0]
                title = "Precision-recall per class (IoU 0.5; AP = COCO AP@[.5:.95])"
                per_class = {
                    c: replace(v, ap=result.per_class[c].ap) for c, v in curves.per_class.items()
                }
            else:
                title = f"Precision-recall per class ({metric}, IoU {iou:g})"
                per_class = result.per_class
            plot_pr_curves(per_class, tmp / PR_CURVES_FILE, title)
            plot_samples(samples, tmp / SAMPLES_FILE, names, sample_score_threshold)
            confusion = confusion_matrix(
                store.columns(), names, 0.5 if metric == "coco" else iou, sample_score_threshold
            )
            plot_confusion_matrix(confusion, tmp / CONFUSION_FILE)

            summary = result.to_dict()
            summary.update(
                {
                    "confusion_matrix": confusion.to_dict(),
                    "model": None if model is None else str(model),
                    "data": str(data),
                    "num_detections": int(sum(c.num_detections for c in result.per_class.values())),
                    "classes_without_ground_truth": [
                        c.name for c in result.per_class.values() if c.ap is None
                    ],
                    "seconds": round(time.monotonic() - started, 3),
                    "files": {
                        "detections": DETECTIONS_DIR,
                        "pr_curves": PR_CURVES_FILE,
                        "confusion_matrix": CONFUSION_FILE,
                        "samples": SAMPLES_FILE,
                    },
                }
            )
            summary = _json_clean(summary)
            (tmp / METRICS_FILE).write_text(json.dumps(summary, indent=1) + "\n")
    return summary  # type: ignore[return-value]


class _as_path:
    def __init__(self, path: str | Path):
        self.path = path

    def __enter__(self) -> str | Path:
        return self.path

    def __exit__(self, *exc: object) -> None:
        return None


__all__ = ["evaluate_model", "open_eval_data", "EvalItem", "EvalData", "DetectionPredictor"]
