"""The evaluation's data types: per-image inputs, the concatenated columns, the results.

Inputs are pixel boxes ``xmin, ymin, xmax, ymax`` (convert normalized ones with
:func:`to_pixels`). :class:`VOCResult` and :class:`COCOResult` both have ``metrics`` (with
``mAP``), ``per_class`` (:class:`ClassResult`) and ``to_dict()``, so callers treat them alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

MetricName = Literal["voc07", "voc", "coco"]


# ------------------------------------------------------------------ per-image inputs


@dataclass(frozen=True)
class GroundTruth:
    """Ground truth of one image: pixel boxes ``(N, 4)`` xmin, ymin, xmax, ymax.

    ``difficult`` (VOC) boxes are ignored by VOC metrics; ``crowd`` (COCO ``iscrowd``) boxes
    are handled as pycocotools does by COCO metrics. ``area`` overrides the box area used
    for COCO's area ranges (pycocotools reads the annotation's ``area`` field).
    """

    boxes: np.ndarray
    classes: np.ndarray
    difficult: np.ndarray | None = None
    crowd: np.ndarray | None = None
    area: np.ndarray | None = None


@dataclass(frozen=True)
class Predictions:
    """Detections of one image: pixel boxes ``(N, 4)``, class ids ``(N,)``, scores ``(N,)``."""

    boxes: np.ndarray
    classes: np.ndarray
    scores: np.ndarray


def to_pixels(boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    """Normalized ``[0, 1]`` ``xmin, ymin, xmax, ymax`` boxes -> pixel boxes."""
    out = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
    out[:, (0, 2)] *= width
    out[:, (1, 3)] *= height
    return out


# ------------------------------------------------------------------ accumulated columns


@dataclass
class DetectionColumns:
    """All images' boxes, concatenated (what the vectorised metrics work on).

    ``*_image`` is the image index in update order; detections keep their input order, which
    is the tie-break order for equal scores.
    """

    num_images: int
    gt_image: np.ndarray
    gt_class: np.ndarray
    gt_boxes: np.ndarray
    gt_difficult: np.ndarray
    gt_crowd: np.ndarray
    gt_area: np.ndarray  # NaN: use the box area
    det_image: np.ndarray
    det_class: np.ndarray
    det_score: np.ndarray
    det_boxes: np.ndarray


# ------------------------------------------------------------------ results


@dataclass(frozen=True)
class PRCurve:
    """Precision/recall after each detection of a class, in ranking order (ignored ones left out)."""

    precision: np.ndarray
    recall: np.ndarray
    scores: np.ndarray


@dataclass(frozen=True)
class ClassResult:
    """AP of one class. ``ap`` is None when the class has no ground truth."""

    class_id: int
    name: str
    ap: float | None
    num_gt: int
    num_detections: int
    curve: PRCurve | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        return {
            "class_id": self.class_id,
            "name": self.name,
            "ap": self.ap,
            "num_gt": self.num_gt,
            "num_detections": self.num_detections,
            **({"no_ground_truth": True} if self.ap is None else {}),
        }


def mean_ap(per_class: Mapping[int, ClassResult]) -> float:
    """Mean of the AP of the classes that have ground truth (NaN when there are none)."""
    aps = [c.ap for c in per_class.values() if c.ap is not None]
    return float(np.mean(aps)) if aps else math.nan


@dataclass(frozen=True)
class VOCResult:
    """Result of a VOC metric: ``mAP`` over classes with ground truth, and per-class AP."""

    metric: str
    iou_threshold: float
    mAP: float
    per_class: dict[int, ClassResult]
    num_images: int
    pixel_offset: float = 1.0

    @property
    def metrics(self) -> dict[str, float]:
        return {"mAP": self.mAP}

    def to_dict(self) -> dict:
        """JSON-ready summary (NaN written as None)."""
        return {
            "metric": self.metric,
            "iou": self.iou_threshold,
            "pixel_offset": self.pixel_offset,
            "metrics": {k: json_float(v) for k, v in self.metrics.items()},
            "num_images": self.num_images,
            "per_class": [c.to_dict() for c in self.per_class.values()],
        }


def json_float(v: float | None) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


@dataclass(frozen=True)
class COCOResult:
    """The 12 COCO numbers (``None`` where pycocotools prints -1: nothing to measure) and per-class AP.

    ``per_class[c].ap`` is the class's AP@[.5:.95] (area all, 100 detections), ``None`` when
    the class has no (non-crowd) ground truth; ``per_class_ap50`` the same at IoU 0.5.
    ``precision`` ``[T, R, K, A, M]`` and ``recall`` ``[T, K, A, M]`` are pycocotools'
    ``eval`` arrays (-1 = undefined), classes in ``per_class`` order.
    """

    stats: dict[str, float | None]
    per_class: dict[int, ClassResult]
    per_class_ap50: dict[int, float | None]
    num_images: int
    precision: np.ndarray = field(repr=False, compare=False)
    recall: np.ndarray = field(repr=False, compare=False)

    @property
    def metrics(self) -> dict[str, float | None]:
        """The 12 numbers plus ``mAP`` (= ``AP``, the primary COCO number)."""
        return {"mAP": self.stats["AP"], **self.stats}

    def stats_array(self) -> np.ndarray:
        """The 12 numbers in pycocotools' ``COCOeval.stats`` order, -1 where undefined."""
        return np.array([-1.0 if v is None else v for v in self.stats.values()])

    def to_dict(self) -> dict:
        """JSON-ready summary."""
        per_class = []
        for cid, c in self.per_class.items():
            d = c.to_dict()
            d["ap50"] = self.per_class_ap50[cid]
            per_class.append(d)
        return {
            "metric": "coco",
            "iou": "0.50:0.95",
            "metrics": {k: json_float(v) for k, v in self.metrics.items()},
            "num_images": self.num_images,
            "per_class": per_class,
        }
