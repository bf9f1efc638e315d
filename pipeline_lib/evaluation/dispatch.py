"""Metric name -> implementation: ``voc07`` / ``voc`` (:mod:`.voc`) or ``coco`` (:mod:`.coco`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .coco import coco_from_columns
from .store import DetectionStore
from .types import COCOResult, MetricName, VOCResult
from .voc import voc_from_columns

METRICS: tuple[str, ...] = ("voc07", "voc", "coco")


def evaluate_store(
    store: DetectionStore,
    metric: MetricName = "voc07",
    iou: float = 0.5,
    class_names: Mapping[int, str] | Sequence[str] | None = None,
    pixel_offset: float = 1.0,
) -> VOCResult | COCOResult:
    """Run ``voc07`` / ``voc`` (at IoU ``iou``) or ``coco`` (IoU .50:.95) on a store.

    Returns a :class:`~.types.VOCResult` or :class:`~.types.COCOResult`; both
    have ``metrics`` (with ``mAP``), ``per_class`` and ``to_dict()``.
    """
    if metric == "coco":
        return coco_from_columns(store.columns(), class_names)
    if metric not in ("voc07", "voc"):
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    if not 0.0 < float(iou) <= 1.0:
        raise ValueError(f"iou must be in (0, 1], got {iou}")
    return voc_from_columns(
        store.columns(), [float(iou)], metric == "voc07", class_names, pixel_offset
    )[0]
