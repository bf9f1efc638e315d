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

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    from .coco import COCOResult

VOCMetricName = Literal["voc07", "voc"]
MetricName = Literal["voc07", "voc", "coco"]
METRICS: tuple[str, ...] = ("voc07", "voc", "coco")
VOC07_RECALL_LEVELS = np.arange(0.0, 1.1, 0.1)  # exactly GluonCV's / voc_eval.py's 11 levels


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


def _numpy(value: object) -> object:
    """MXNet NDArrays (or lists of them) to numpy; anything else unchanged."""
    if hasattr(value, "asnumpy"):
        return value.asnumpy()  # type: ignore[union-attr]
    if isinstance(value, list | tuple) and value and hasattr(value[0], "asnumpy"):
        return np.concatenate([v.asnumpy() for v in value], axis=0)
    return value


def _as_boxes(value: object, lead: tuple[int, ...], what: str) -> np.ndarray:
    """Boxes as floats, extra columns dropped: ``(N, 4)`` for one image (``lead=()``; an
    empty input of any shape means no boxes), else exactly ``(*lead, 4)``."""
    arr = np.asarray(value, dtype=np.float64)
    if not lead:
        if arr.size == 0:
            return np.zeros((0, 4))
        if arr.ndim != 2 or arr.shape[1] < 4:
            raise ValueError(f"{what}: expected an (N, 4) array of boxes, got shape {arr.shape}")
        return arr[:, :4]
    if arr.ndim != len(lead) + 1 or arr.shape[:-1] != lead or arr.shape[-1] < 4:
        raise ValueError(f"{what}: expected boxes of shape {(*lead, 4)}, got {arr.shape}")
    return arr[..., :4]


def _as_values(value: object, shape: tuple[int, ...], what: str) -> np.ndarray:
    """Float values, one per box: any array with ``prod(shape)`` elements, reshaped."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.size != int(np.prod(shape)):
        raise ValueError(
            f"{what}: expected {int(np.prod(shape))} values (one per box), got {arr.size}"
        )
    return arr.reshape(shape)


def _check_finite(arr: np.ndarray, what: str) -> None:
    if not np.isfinite(arr).all():
        raise ValueError(f"{what}: must be finite numbers")


def _check_integers(arr: np.ndarray, what: str) -> None:
    if (arr != np.floor(arr)).any():  # NaN compares unequal: rejected too
        raise ValueError(f"{what}: class ids must be integers")


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


class DetectionStore:
    """Collects per-image ground truth and predictions (``reset`` / ``update``)."""

    def __init__(self) -> None:
        self.reset()

    def __len__(self) -> int:
        return self._num_images

    def reset(self) -> None:
        """Forget everything seen so far."""
        self._num_images = 0
        self._gt: list[tuple[np.ndarray, ...]] = []
        self._det: list[tuple[np.ndarray, ...]] = []

    @property
    def num_images(self) -> int:
        return self._num_images

    def add_image(
        self,
        pred_boxes: object,
        pred_classes: object,
        pred_scores: object,
        gt_boxes: object,
        gt_classes: object,
        gt_difficult: object | None = None,
        gt_crowd: object | None = None,
        gt_area: object | None = None,
    ) -> None:
        """Add one image: ``(N, 4)`` boxes and ``N`` classes / scores / flags.

        Entries with a negative class id (padding) are dropped.
        """
        pb = _as_boxes(pred_boxes, (), f"image {self._num_images} predictions")
        gb = _as_boxes(gt_boxes, (), f"image {self._num_images} ground truth")
        self._add(
            pb[None],
            pred_classes,
            pred_scores,
            gb[None],
            gt_classes,
            gt_difficult,
            gt_crowd,
            gt_area,
        )

    def add_batch(
        self,
        pred_boxes: object,
        pred_classes: object,
        pred_scores: object,
        gt_boxes: object,
        gt_classes: object,
        gt_difficult: object | None = None,
        gt_crowd: object | None = None,
        gt_area: object | None = None,
    ) -> None:
        """Add a padded batch, GluonCV style: boxes ``(B, N, 4)``, classes / scores ``(B, N)``
        or ``(B, N, 1)``; class -1 marks padding."""
        pb = np.asarray(pred_boxes, dtype=np.float64)
        gb = np.asarray(gt_boxes, dtype=np.float64)
        if pb.ndim != 3 or gb.ndim != 3 or len(pb) != len(gb):
            raise ValueError(
                f"batch: expected (B, N, 4) prediction and (B, M, 4) ground-truth boxes, got "
                f"shapes {pb.shape} and {gb.shape}"
            )
        self._add(pb, pred_classes, pred_scores, gb, gt_classes, gt_difficult, gt_crowd, gt_area)

    def _add(
        self,
        pb: np.ndarray,
        pred_classes: object,
        pred_scores: object,
        gb: np.ndarray,
        gt_classes: object,
        gt_difficult: object | None,
        gt_crowd: object | None,
        gt_area: object | None,
    ) -> None:
        first = self._num_images
        n_img = len(pb)
        where = f"image {first}" if n_img == 1 else f"images {first}..{first + n_img - 1}"
        pb = _as_boxes(pb, pb.shape[:2], f"{where} predictions")
        gb = _as_boxes(gb, gb.shape[:2], f"{where} ground truth")
        pc = _as_values(pred_classes, pb.shape[:2], f"{where} prediction classes")
        ps = _as_values(pred_scores, pb.shape[:2], f"{where} prediction scores")
        gc = _as_values(gt_classes, gb.shape[:2], f"{where} ground-truth classes")
        keep_p = pc >= 0
        keep_g = gc >= 0
        p_img = np.broadcast_to(np.arange(first, first + n_img)[:, None], pc.shape)[keep_p]
        g_img = np.broadcast_to(np.arange(first, first + n_img)[:, None], gc.shape)[keep_g]
        pb, pc, ps = pb[keep_p], pc[keep_p], ps[keep_p]
        gb, gc = gb[keep_g], gc[keep_g]
        _check_finite(pb, f"{where} prediction boxes")
        _check_finite(ps, f"{where} prediction scores")
        _check_finite(gb, f"{where} ground-truth boxes")
        _check_integers(pc, f"{where} prediction classes")
        _check_integers(gc, f"{where} ground-truth classes")

        def flags(value: object | None, what: str, default: float) -> np.ndarray:
            if value is None:
                return np.full(len(gc), default)
            return _as_values(value, keep_g.shape, f"{where} {what}")[keep_g]

        gd = flags(gt_difficult, "difficult", 0.0) != 0
        gcr = flags(gt_crowd, "crowd", 0.0) != 0
        ga = flags(gt_area, "area", np.nan)
        self._det.append((p_img.astype(np.int64), pb, pc.astype(np.int64), ps))
        self._gt.append((g_img.astype(np.int64), gb, gc.astype(np.int64), gd, gcr, ga))
        self._num_images += n_img

    def add(self, *args: object, **kwargs: object) -> None:
        """Add one image (2-D boxes) or a padded batch (3-D boxes); MXNet NDArrays accepted."""
        args = tuple(_numpy(a) for a in args)
        kwargs = {k: _numpy(v) for k, v in kwargs.items()}
        first = np.asarray(args[0] if args else kwargs["pred_boxes"])
        if first.ndim == 3:
            self.add_batch(*args, **kwargs)  # type: ignore[arg-type]
        else:
            self.add_image(*args, **kwargs)  # type: ignore[arg-type]

    def columns(self) -> DetectionColumns:
        """Concatenate everything added so far."""

        def cat(parts: list[np.ndarray], shape: tuple[int, ...], dtype: type) -> np.ndarray:
            return np.concatenate(parts) if parts else np.zeros(shape, dtype)

        gt, det = self._gt, self._det
        return DetectionColumns(
            num_images=self._num_images,
            gt_image=cat([g[0] for g in gt], (0,), np.int64),
            gt_boxes=cat([g[1] for g in gt], (0, 4), np.float64),
            gt_class=cat([g[2] for g in gt], (0,), np.int64),
            gt_difficult=cat([g[3] for g in gt], (0,), bool),
            gt_crowd=cat([g[4] for g in gt], (0,), bool),
            gt_area=cat([g[5] for g in gt], (0,), np.float64),
            det_image=cat([d[0] for d in det], (0,), np.int64),
            det_boxes=cat([d[1] for d in det], (0, 4), np.float64),
            det_class=cat([d[2] for d in det], (0,), np.int64),
            det_score=cat([d[3] for d in det], (0,), np.float64),
        )


def class_names_map(
    class_names: Mapping[int, str] | Sequence[str] | None, ids: np.ndarray
) -> dict[int, str]:
    """Class id -> name for the union of the named classes and the ids seen."""
    if class_names is None:
        names: dict[int, str] = {}
    elif isinstance(class_names, Mapping):
        names = {int(k): str(v) for k, v in class_names.items()}
    else:
        names = {i: str(v) for i, v in enumerate(class_names)}
    for cid in np.unique(ids).tolist():
        names.setdefault(int(cid), f"class_{cid}")
    return dict(sorted(names.items()))


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
            "metrics": {k: _json_float(v) for k, v in self.metrics.items()},
            "num_images": self.num_images,
            "per_class": [c.to_dict() for c in self.per_class.values()],
        }


def _json_float(v: float | None) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


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


def same_group_pairs(
    det_key: np.ndarray, gt_key: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(det index, gt index, start, count) of all pairs with equal keys.

    Pairs are laid out detection-major; within a detection, ground truths keep input order.
    """
    gorder = np.argsort(gt_key, kind="stable")
    gk = gt_key[gorder]
    lo = np.searchsorted(gk, det_key, side="left")
    hi = np.searchsorted(gk, det_key, side="right")
    count = hi - lo
    total = int(count.sum())
    start = np.cumsum(count) - count
    det = np.repeat(np.arange(len(det_key)), count)
    gt = gorder[np.repeat(lo - start, count) + np.arange(total)]
    return det, gt, start, count


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


class VOCMetric:
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
        self.iou_threshold = float(iou_threshold)
        self.metric = metric
        self.class_names = class_names
        self.pixel_offset = float(pixel_offset)
        self.store = DetectionStore()

    def reset(self) -> None:
        """Forget all images."""
        self.store.reset()

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

    def get(self) -> VOCResult:
        """AP per class and mAP over everything added since the last reset."""
        return self.get_many([self.iou_threshold])[0]

    def get_many(self, iou_thresholds: Sequence[float]) -> list[VOCResult]:
        """Results at several IoU thresholds (IoUs are computed once)."""
        return voc_from_columns(
            self.store.columns(),
            iou_thresholds,
            self.metric == "voc07",
            self.class_names,
            self.pixel_offset,
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
    if len(ground_truth) != len(predictions):
        raise ValueError(
            f"{len(ground_truth)} ground-truth images but {len(predictions)} prediction images"
        )
    m = VOCMetric(iou_threshold, metric, class_names, pixel_offset)
    for gt, pred in zip(ground_truth, predictions, strict=True):
        m.update(pred.boxes, pred.classes, pred.scores, gt.boxes, gt.classes, gt.difficult)
    return m.get()


def evaluate_store(
    store: DetectionStore,
    metric: MetricName = "voc07",
    iou: float = 0.5,
    class_names: Mapping[int, str] | Sequence[str] | None = None,
    pixel_offset: float = 1.0,
) -> VOCResult | COCOResult:
    """Run ``voc07`` / ``voc`` (at IoU ``iou``) or ``coco`` (IoU .50:.95) on a store.

    Returns a :class:`VOCResult` or :class:`~pipeline_lib.evaluation.coco.COCOResult`; both
    have ``metrics`` (with ``mAP``), ``per_class`` and ``to_dict()``.
    """
    if metric == "coco":
        from .coco import coco_from_columns

        return coco_from_columns(store.columns(), class_names)
    if metric not in ("voc07", "voc"):
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    if not 0.0 < float(iou) <= 1.0:
        raise ValueError(f"iou must be in (0, 1], got {iou}")
    return voc_from_columns(
        store.columns(), [float(iou)], metric == "voc07", class_names, pixel_offset
    )[0]
