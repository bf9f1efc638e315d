"""Pascal VOC detection metrics (``voc07`` 11-point and ``voc`` all-point AP), vectorised.

Conventions, chosen to reproduce the reference implementations exactly:

* **Coordinates** are pixels, ``xmin, ymin, xmax, ymax`` (SageMaker ``left + width`` is
  ``xmax``). Convert normalized predictions with :func:`to_pixels` first.
* **IoU** uses the VOC/GluonCV integer-pixel convention by default: ``pixel_offset=1``
  makes a box ``xmax - xmin + 1`` wide (GluonCV adds 1 to ``xmax``/``ymax`` before
  ``bbox_iou``; rafaelpadilla/Object-Detection-Metrics computes ``(x2 - x1 + 1)``). Pass
  ``pixel_offset=0`` for continuous coordinates (the COCO convention).
* **Matching** is VOC's: each detection, in descending score order within its image and
  class, takes the ground-truth box of highest IoU (first one on ties); IoU ``>= iou`` with
  an unmatched box is a true positive, anything else a false positive (no fall back to the
  second-best box). A detection whose best box is ``difficult`` is ignored (neither);
  COCO ``crowd`` boxes, if any, are treated as difficult.
* **Ties in score** are broken by input order (image order, then the detection's position
  in the image), with stable sorts, so results are reproducible. GluonCV uses an unstable
  ``argsort()[::-1]`` instead, so the two agree exactly whenever scores are distinct.
* **AP**: ``voc07`` averages the interpolated precision at the 11 recall levels
  ``np.arange(0, 1.1, 0.1)`` (as GluonCV's ``VOC07MApMetric``, SageMaker's
  ``validation:mAP``); ``voc`` is the area under the interpolated curve (VOC2010+,
  GluonCV's ``VOCMApMetric``).
* **Classes without ground truth** (no non-difficult box) get ``ap=None`` and are left out
  of ``mAP``; they are listed, never averaged in as NaN. A class with ground truth and no
  detection has AP 0.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .store import DetectionMetric, check_same_length, class_names_map, same_group_pairs
from .types import (
    ClassResult,
    DetectionColumns,
    GroundTruth,
    PRCurve,
    Predictions,
    VOCResult,
    mean_ap,
)

VOCMetricName = Literal["voc07", "voc"]
VOC07_RECALL_LEVELS = np.arange(0.0, 1.1, 0.1)  # exactly GluonCV's / voc_eval.py's 11 levels


# ------------------------------------------------------------------ VOC core


def pair_iou(a: np.ndarray, b: np.ndarray, pixel_offset: float = 1.0) -> np.ndarray:
    """IoU of box ``a[i]`` with ``b[i]`` (rows paired), GluonCV's arithmetic.

    ``pixel_offset`` is added to ``xmax``/``ymax`` first, as GluonCV's VOC metric does.
    Degenerate pairs (zero union) give 0.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if pixel_offset:
        a = a.copy()
        b = b.copy()
        a[:, 2:] += pixel_offset
        b[:, 2:] += pixel_offset
    tl = np.maximum(a[:, :2], b[:, :2])
    br = np.minimum(a[:, 2:], b[:, 2:])
    wh = br - tl
    inter = wh[:, 0] * wh[:, 1] * (tl < br).all(axis=1)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / (area_a + area_b - inter)
    return np.where(np.isfinite(iou), iou, 0.0)


@dataclass
class _Pairs:
    """Every (detection, ground truth) pair in the same image and class."""

    det: np.ndarray  # detection index per pair, grouped by detection ascending
    gt: np.ndarray  # ground-truth index per pair
    iou: np.ndarray
    start: np.ndarray  # first pair of each detection
    count: np.ndarray  # pairs per detection


def _voc_pairs(cols: DetectionColumns, pixel_offset: float) -> _Pairs:
    n_cls = int(max(cols.gt_class.max(initial=-1), cols.det_class.max(initial=-1))) + 1
    det_key = cols.det_image * n_cls + cols.det_class
    gt_key = cols.gt_image * n_cls + cols.gt_class
    det, gt, start, count = same_group_pairs(det_key, gt_key)
    iou = pair_iou(cols.det_boxes[det], cols.gt_boxes[gt], pixel_offset)
    return _Pairs(det, gt, iou, start, count)


def _best_gt(pairs: _Pairs, n_det: int) -> tuple[np.ndarray, np.ndarray]:
    """Per detection: highest IoU over its pairs (-1 without pairs) and that box (first max)."""
    best_iou = np.full(n_det, -1.0)
    best_gt = np.full(n_det, -1, dtype=np.int64)
    has = pairs.count > 0
    if not has.any():
        return best_iou, best_gt
    best_iou[has] = np.maximum.reduceat(pairs.iou, pairs.start[has])
    cand = np.flatnonzero(pairs.iou == best_iou[pairs.det])
    d = pairs.det[cand]
    first = np.ones(len(d), dtype=bool)
    first[1:] = d[1:] != d[:-1]
    best_gt[d[first]] = pairs.gt[cand[first]]
    return best_iou, best_gt


def _voc_match(
    cols: DetectionColumns,
    best_iou: np.ndarray,
    best_gt: np.ndarray,
    rank: np.ndarray,
    iou_threshold: float,
) -> np.ndarray:
    """Match flag per detection: 1 true positive, 0 false positive, -1 ignored (difficult)."""
    match = np.zeros(len(best_iou), dtype=np.int8)
    hit = best_iou >= iou_threshold
    g = np.where(hit, best_gt, 0)
    ignore = cols.gt_difficult | cols.gt_crowd
    difficult = hit & ignore[g] if len(ignore) else np.zeros_like(hit)
    match[difficult] = -1
    cand = np.flatnonzero(hit & ~difficult)
    if len(cand):
        cand = cand[np.argsort(rank[cand], kind="stable")]  # ranking order within the image
        _, first = np.unique(best_gt[cand], return_index=True)
        match[cand[first]] = 1
    return match


def average_precision(recall: np.ndarray, precision: np.ndarray, eleven_point: bool) -> float:
    """VOC AP of a precision/recall curve: 11-point interpolated or area under the envelope."""
    recall = np.asarray(recall, dtype=np.float64)
    precision = np.nan_to_num(np.asarray(precision, dtype=np.float64))
    if eleven_point:
        if recall.size == 0:
            return 0.0
        envelope = np.maximum.accumulate(precision[::-1])[::-1]
        idx = np.searchsorted(recall, VOC07_RECALL_LEVELS, side="left")
        p = np.where(idx < recall.size, envelope[np.minimum(idx, recall.size - 1)], 0.0)
        ap = 0.0
        for v in (p / 11.0).tolist():  # sequential sum, as GluonCV
            ap += v
        return ap
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def voc_from_columns(
    cols: DetectionColumns,
    iou_thresholds: Sequence[float] = (0.5,),
    eleven_point: bool = True,
    class_names: Mapping[int, str] | Sequence[str] | None = None,
    pixel_offset: float = 1.0,
) -> list[VOCResult]:
    """VOC AP at each IoU threshold from concatenated columns (IoUs computed once)."""
    n_det = len(cols.det_score)
    names = class_names_map(class_names, np.concatenate([cols.gt_class, cols.det_class]))
    if pixel_offset and len(cols.gt_boxes) and np.abs(cols.gt_boxes).max() <= 1.0:
        warnings.warn(
            "VOC metric: every ground-truth box lies within [0, 1] -- normalized coordinates? "
            "They must be converted to pixels (to_pixels) before a metric with the +1 pixel "
            "convention, or evaluated with pixel_offset=0.",
            stacklevel=3,
        )
    pairs = _voc_pairs(cols, pixel_offset)
    best_iou, best_gt = _best_gt(pairs, n_det)
    # ranking within an image and class: score descending, ties in input order
    n_cls = max(names, default=-1) + 1
    within = np.lexsort((-cols.det_score, cols.det_image * n_cls + cols.det_class))
    rank = np.empty(n_det, dtype=np.int64)
    rank[within] = np.arange(n_det)
    # ranking within a class over all images: score descending, ties in input order
    order = np.lexsort((-cols.det_score, cols.det_class))
    cls_sorted = cols.det_class[order]
    bounds = np.searchsorted(cls_sorted, np.arange(n_cls + 1))
    counted = ~(cols.gt_difficult | cols.gt_crowd)
    num_gt = np.bincount(cols.gt_class[counted], minlength=n_cls)
    num_det = np.bincount(cols.det_class, minlength=n_cls)
    metric = "voc07" if eleven_point else "voc"

    results = []
    for thr in iou_thresholds:
        match = _voc_match(cols, best_iou, best_gt, rank, float(thr))[order]
        per_class: dict[int, ClassResult] = {}
        for cid, name in names.items():
            m = match[bounds[cid] : bounds[cid + 1]]
            keep = m >= 0
            m = m[keep]
            tp = np.cumsum(m == 1)
            fp = np.cumsum(m == 0)
            precision = tp / np.maximum(tp + fp, 1)
            npos = int(num_gt[cid])
            recall = tp / npos if npos else np.zeros(len(tp))
            scores = cols.det_score[order[bounds[cid] : bounds[cid + 1]]][keep]
            ap = average_precision(recall, precision, eleven_point) if npos else None
            per_class[cid] = ClassResult(
                cid,
                name,
                ap,
                npos,
                int(num_det[cid]),
                PRCurve(precision, recall, scores),
            )
        results.append(
            VOCResult(
                metric, float(thr), mean_ap(per_class), per_class, cols.num_images, pixel_offset
            )
        )
    return results


# ------------------------------------------------------------------ reset/update/get API


class VOCMetric(DetectionMetric[VOCResult]):
    """VOC mAP with GluonCV's ``reset`` / ``update`` / ``get`` interface (numpy inputs).

    ``update`` takes one image (2-D boxes) or a padded batch (3-D, class -1 = padding),
    predictions first, as GluonCV's ``VOCMApMetric.update``. ``get`` returns a
    :class:`VOCResult`. ``metric="voc07"`` is the 11-point AP, ``"voc"`` the area AP.
    """

    def __init__(
        self,
        iou_threshold: float = 0.5,
        metric: VOCMetricName = "voc07",
        class_names: Mapping[int, str] | Sequence[str] | None = None,
        pixel_offset: float = 1.0,
    ) -> None:
        if metric not in ("voc07", "voc"):
            raise ValueError(f"metric must be 'voc07' or 'voc', got {metric!r}")
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
        super().__init__(class_names)
        self.iou_threshold = float(iou_threshold)
        self.metric = metric
        self.pixel_offset = float(pixel_offset)

    def update(
        self,
        pred_boxes: object,
        pred_classes: object,
        pred_scores: object,
        gt_boxes: object,
        gt_classes: object,
        gt_difficult: object | None = None,
    ) -> None:
        """Add one image or a padded batch (pixel ``xmin, ymin, xmax, ymax`` boxes)."""
        self.store.add(pred_boxes, pred_classes, pred_scores, gt_boxes, gt_classes, gt_difficult)

    def add_pair(self, gt: GroundTruth, pred: Predictions) -> None:
        """Add one image; ``gt.difficult`` boxes are ignored the VOC way."""
        self.update(pred.boxes, pred.classes, pred.scores, gt.boxes, gt.classes, gt.difficult)

    def compute(self, cols: DetectionColumns) -> VOCResult:
        """AP per class and mAP at ``iou_threshold``."""
        return self._results(cols, [self.iou_threshold])[0]

    def get_many(self, iou_thresholds: Sequence[float]) -> list[VOCResult]:
        """Results at several IoU thresholds (IoUs are computed once)."""
        return self._results(self.store.columns(), iou_thresholds)

    def _results(self, cols: DetectionColumns, iou_thresholds: Sequence[float]) -> list[VOCResult]:
        return voc_from_columns(
            cols, iou_thresholds, self.metric == "voc07", self.class_names, self.pixel_offset
        )


def compute_voc(
    ground_truth: Sequence[GroundTruth],
    predictions: Sequence[Predictions],
    iou_threshold: float = 0.5,
    metric: VOCMetricName = "voc07",
    class_names: Mapping[int, str] | Sequence[str] | None = None,
    pixel_offset: float = 1.0,
) -> VOCResult:
    """VOC mAP of per-image predictions against per-image ground truth (same order)."""
    check_same_length(ground_truth, predictions)
    metric_ = VOCMetric(iou_threshold, metric, class_names, pixel_offset)
    return metric_.add_pairs(ground_truth, predictions).get()
