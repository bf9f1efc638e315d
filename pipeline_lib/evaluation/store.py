"""Collecting detections and ground truth: the store, its input checks, the metric base.

:class:`DetectionStore` takes one image or a padded GluonCV-style batch at a time (numpy or
MXNet), checks it, and concatenates everything into :class:`~.types.DetectionColumns`,
which the vectorised VOC and COCO metrics work on. :class:`DetectionMetric` is the
``reset`` / ``update`` / ``get`` plumbing both metric classes share; ``class_names_map`` and
``same_group_pairs`` are the column helpers both metrics use.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Generic, TypeVar

import numpy as np

from .types import COCOResult, DetectionColumns, GroundTruth, Predictions, VOCResult

ResultT = TypeVar("ResultT", VOCResult, COCOResult)


# ------------------------------------------------------------------ input checks


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


# ------------------------------------------------------------------ the store


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


# ------------------------------------------------------------------ the metric base


class DetectionMetric(ABC, Generic[ResultT]):
    """``reset`` / ``update`` / ``get`` over a :class:`DetectionStore` (numpy, pixel boxes).

    Subclasses give ``update`` (which ground-truth flags they take), ``add_pair`` (one
    :class:`~.types.GroundTruth` / :class:`~.types.Predictions` pair) and ``compute``.
    """

    def __init__(self, class_names: Mapping[int, str] | Sequence[str] | None = None) -> None:
        self.class_names = class_names
        self.store = DetectionStore()

    def reset(self) -> None:
        """Forget all images."""
        self.store.reset()

    def get(self) -> ResultT:
        """The result over everything added since the last reset."""
        return self.compute(self.store.columns())

    @abstractmethod
    def compute(self, cols: DetectionColumns) -> ResultT:
        """The result for concatenated columns."""

    @abstractmethod
    def add_pair(self, gt: GroundTruth, pred: Predictions) -> None:
        """Add one image given as its ground truth and predictions."""

    def add_pairs(self, ground_truth: Sequence[GroundTruth], predictions: Sequence[Predictions]):
        """Add per-image predictions and ground truth (same order); returns ``self``."""
        for gt, pred in zip(ground_truth, predictions, strict=True):
            self.add_pair(gt, pred)
        return self


def check_same_length(
    ground_truth: Sequence[GroundTruth], predictions: Sequence[Predictions]
) -> None:
    """Raise unless there are as many prediction images as ground-truth images."""
    if len(ground_truth) != len(predictions):
        raise ValueError(
            f"{len(ground_truth)} ground-truth images but {len(predictions)} prediction images"
        )
