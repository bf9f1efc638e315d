"""COCO detection metrics (AP@[.5:.95], AP50, AP75, APs/m/l, AR1/10/100, ARs/m/l).

The numbers are pycocotools' ``COCOeval`` (bbox) numbers, computed from per-image arrays
without files, COCO objects or printing.

Conventions are pycocotools': continuous pixel coordinates (no +1), IoU ``>=`` threshold,
``iscrowd`` boxes match any number of detections with IoU = intersection / detection area
and never count as ground truth, area ranges use the ground-truth ``area`` (box area unless
given) and the detection box area, at most 100 detections per image and class by score.
Ties in score keep input order (pycocotools' stable mergesort). VOC ``difficult`` flags
have no COCO meaning and are not used here.

The evaluator is a vectorised numpy reimplementation of ``COCOeval.evaluate()`` +
``accumulate()`` for bounding boxes with the default parameters (proven equal, array for
array, in the tests); ``backend="faster_coco_eval"`` runs the same evaluation through
faster-coco-eval's ``COCOeval_faster`` instead.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np

from .store import DetectionMetric, check_same_length, class_names_map, same_group_pairs
from .types import ClassResult, COCOResult, DetectionColumns, GroundTruth, Predictions

# name -> (ap?, iou threshold or None for .50:.95, area range, max detections); pycocotools order
COCO_STATS: dict[str, tuple[bool, float | None, str, int]] = {
    "AP": (True, None, "all", 100),
    "AP50": (True, 0.5, "all", 100),
    "AP75": (True, 0.75, "all", 100),
    "APs": (True, None, "small", 100),
    "APm": (True, None, "medium", 100),
    "APl": (True, None, "large", 100),
    "AR1": (False, None, "all", 1),
    "AR10": (False, None, "all", 10),
    "AR100": (False, None, "all", 100),
    "ARs": (False, None, "small", 100),
    "ARm": (False, None, "medium", 100),
    "ARl": (False, None, "large", 100),
}
AREA_LABELS = ("all", "small", "medium", "large")
AREA_RANGES = ((0.0, 1e5**2), (0.0, 32.0**2), (32.0**2, 96.0**2), (96.0**2, 1e5**2))
MAX_DETS = (1, 10, 100)
# pycocotools' Params.setDetParams, bit for bit
IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
REC_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
COCOBackend = Literal["numpy", "faster_coco_eval"]
MATCH_CHUNK = 8192  # (detection, ground truth) pairs matched at once: bounds memory


def _summarize(
    precision: np.ndarray, recall: np.ndarray, ap: bool, iou: float | None, area: str, max_det: int
) -> float:
    """pycocotools ``COCOeval._summarize`` on the eval arrays (-1 when nothing is defined)."""
    a = AREA_LABELS.index(area)
    m = MAX_DETS.index(max_det)
    s = precision[..., a, m] if ap else recall[..., a, m]
    if iou is not None:
        s = s[np.flatnonzero(np.isclose(IOU_THRESHOLDS, iou))]
    valid = s[s > -1]
    return float(np.mean(valid)) if valid.size else -1.0


def coco_from_columns(
    cols: DetectionColumns,
    class_names: Mapping[int, str] | Sequence[str] | None = None,
    backend: COCOBackend = "numpy",
) -> COCOResult:
    """COCO metrics from concatenated columns (pixel ``xmin, ymin, xmax, ymax`` boxes).

    ``backend="numpy"`` is this module's vectorised evaluator, ``"faster_coco_eval"`` runs
    the same evaluation through faster-coco-eval's ``COCOeval_faster`` (same numbers).
    """
    names = class_names_map(class_names, np.concatenate([cols.gt_class, cols.det_class]))
    cids = list(names)
    if backend == "numpy":
        precision, recall = _evaluate_numpy(cols, cids)
    elif backend == "faster_coco_eval":
        precision, recall = _evaluate_faster_coco_eval(cols, cids, names)
    else:
        raise ValueError(f"backend must be 'numpy' or 'faster_coco_eval', got {backend!r}")

    stats = {}
    for key, (ap, iou, area, max_det) in COCO_STATS.items():
        v = _summarize(precision, recall, ap, iou, area, max_det)
        stats[key] = None if v == -1 else v

    size = max(cids, default=-1) + 1
    num_gt = np.bincount(cols.gt_class[~cols.gt_crowd], minlength=size)
    num_det = np.bincount(cols.det_class, minlength=size)
    per_class: dict[int, ClassResult] = {}
    ap50: dict[int, float | None] = {}
    for k, cid in enumerate(cids):
        pk, rk = precision[:, :, k : k + 1], recall[:, k : k + 1]
        npos = int(num_gt[cid])
        v = _summarize(pk, rk, True, None, "all", 100)
        v50 = _summarize(pk, rk, True, 0.5, "all", 100)
        per_class[cid] = ClassResult(
            cid, names[cid], None if npos == 0 else max(v, 0.0), npos, int(num_det[cid])
        )
        ap50[cid] = None if npos == 0 else max(v50, 0.0)
    return COCOResult(stats, per_class, ap50, cols.num_images, precision, recall)


def _xywh(b: np.ndarray) -> np.ndarray:
    return np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)


def bbox_iou_coco(d: np.ndarray, g: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """IoU of paired ``x, y, w, h`` boxes, pycocotools' ``bbIou`` arithmetic.

    For a crowd ground truth the union is the detection's area.
    """
    w = np.minimum(d[:, 2] + d[:, 0], g[:, 2] + g[:, 0]) - np.maximum(d[:, 0], g[:, 0])
    h = np.minimum(d[:, 3] + d[:, 1], g[:, 3] + g[:, 1]) - np.maximum(d[:, 1], g[:, 1])
    overlap = (w > 0) & (h > 0)
    inter = np.where(overlap, w * h, 0.0)
    da = d[:, 2] * d[:, 3]
    ga = g[:, 2] * g[:, 3]
    union = np.where(crowd, da, da + ga - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(overlap, inter / np.where(overlap, union, 1.0), 0.0)


def _evaluate_numpy(cols: DetectionColumns, cids: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """pycocotools ``evaluate()`` + ``accumulate()`` (bbox, default params), vectorised.

    Matching is greedy in score order within each (image, class), as ``evaluateImg``; it is
    run for all IoU thresholds and area ranges at once, one detection rank at a time across
    all (image, class) groups, so the Python loop has at most ``max_dets`` steps.
    """
    thr = np.minimum(IOU_THRESHOLDS, 1 - 1e-10)  # evaluateImg's min([t, 1-1e-10])
    n_t, n_a, n_k = len(IOU_THRESHOLDS), len(AREA_RANGES), len(cids)
    precision = -np.ones((n_t, len(REC_THRESHOLDS), n_k, n_a, len(MAX_DETS)))
    recall = -np.ones((n_t, n_k, n_a, len(MAX_DETS)))
    if n_k == 0:
        return precision, recall
    size = max(cids) + 1
    cmask = np.zeros(size, dtype=bool)
    cmask[cids] = True
    in_det = cmask[np.clip(cols.det_class, 0, size - 1)] & (cols.det_class < size)
    in_gt = cmask[np.clip(cols.gt_class, 0, size - 1)] & (cols.gt_class < size)

    g_box = _xywh(cols.gt_boxes[in_gt])
    g_cls = cols.gt_class[in_gt]
    g_img = cols.gt_image[in_gt]
    g_crowd = cols.gt_crowd[in_gt]
    g_area = cols.gt_area[in_gt]
    g_area = np.where(np.isnan(g_area), g_box[:, 2] * g_box[:, 3], g_area)
    lo = np.array([r[0] for r in AREA_RANGES])
    hi = np.array([r[1] for r in AREA_RANGES])
    g_ign = g_crowd[:, None] | (g_area[:, None] < lo) | (g_area[:, None] > hi)  # (G, A)

    d_box = _xywh(cols.det_boxes[in_det])
    d_cls = cols.det_class[in_det]
    d_img = cols.det_image[in_det]
    d_score = cols.det_score[in_det]
    d_area = d_box[:, 2] * d_box[:, 3]
    n_d = len(d_score)

    # rank of each detection within its (image, class) by score, ties in input order
    d_key = d_img * size + d_cls
    within = np.lexsort((-d_score, d_key))
    sk = d_key[within]
    first = np.ones(n_d, dtype=bool)
    first[1:] = sk[1:] != sk[:-1]
    group_start = np.maximum.accumulate(np.where(first, np.arange(n_d), 0))
    rank = np.empty(n_d, dtype=np.int64)
    rank[within] = np.arange(n_d) - group_start
    keep = rank < MAX_DETS[-1]
    d_box, d_cls, d_img, d_score, d_area, rank, d_key = (
        a[keep] for a in (d_box, d_cls, d_img, d_score, d_area, rank, d_key)
    )
    n_d = len(d_score)

    # matching: dtm[d, t, a] matched, dtig[d, t, a] ignored
    dtm = np.zeros((n_d, n_t, n_a), dtype=bool)
    dtig = np.zeros((n_d, n_t, n_a), dtype=bool)
    gtm = np.zeros((len(g_cls), n_t, n_a), dtype=bool)
    by_rank = np.argsort(rank, kind="stable")
    p_det, p_gt, _, p_count = same_group_pairs(d_key[by_rank], g_img * size + g_cls)
    p_det = by_rank[p_det]
    p_iou = bbox_iou_coco(d_box[p_det], g_box[p_gt], g_crowd[p_gt])
    p_rank = rank[p_det]
    step_bounds = np.searchsorted(p_rank, np.arange(MAX_DETS[-1] + 1))
    det_start = np.ones(len(p_det), dtype=bool)  # first pair of each detection
    det_start[1:] = p_det[1:] != p_det[:-1]
    for r in range(MAX_DETS[-1]):
        s, e = int(step_bounds[r]), int(step_bounds[r + 1])
        if s == e:
            continue
        # the detections of one rank are in different groups: independent, so they can be
        # matched in chunks (bounded memory), cut at detection boundaries
        starts = np.flatnonzero(det_start[s:e]) + s
        cuts = np.unique(starts[np.searchsorted(starts, np.arange(s, e, MATCH_CHUNK))])
        for c0, c1 in zip(cuts.tolist(), [*cuts[1:].tolist(), e], strict=True):
            _match_step(
                p_det[c0:c1], p_gt[c0:c1], p_iou[c0:c1], thr, g_ign, g_crowd, gtm, dtm, dtig
            )
    d_out = (d_area[:, None] < lo) | (d_area[:, None] > hi)  # (D, A)
    dtig |= ~dtm & d_out[:, None, :]

    # accumulate, per class: detections ranked by score over all images
    order = np.lexsort((-d_score, d_cls))
    bounds = np.searchsorted(d_cls[order], np.arange(size + 1))
    npig = np.zeros((size, n_a), dtype=np.int64)
    np.add.at(npig, g_cls, ~g_ign)
    for k, cid in enumerate(cids):
        idx = order[bounds[cid] : bounds[cid + 1]]
        for m, max_det in enumerate(MAX_DETS):
            sel = idx[rank[idx] < max_det]
            tps = (dtm[sel] & ~dtig[sel]).reshape(len(sel), n_t * n_a).T  # (T*A, n)
            fps = (~dtm[sel] & ~dtig[sel]).reshape(len(sel), n_t * n_a).T
            q, rc = _interpolate(tps, fps, np.repeat(npig[cid][None, :], n_t, 0).ravel())
            precision[:, :, k, :, m] = q.reshape(n_t, n_a, -1).transpose(0, 2, 1)
            recall[:, k, :, m] = rc.reshape(n_t, n_a)
    return precision, recall


def _match_step(
    det: np.ndarray,
    gt: np.ndarray,
    iou: np.ndarray,
    thr: np.ndarray,
    g_ign: np.ndarray,
    g_crowd: np.ndarray,
    gtm: np.ndarray,
    dtm: np.ndarray,
    dtig: np.ndarray,
) -> None:
    """Match detections of one rank (pairs grouped by detection) at every threshold and area.

    As ``evaluateImg``: among ground truths not yet matched (crowd ones always available)
    with IoU >= threshold, prefer ones not ignored in this area range; take the highest IoU,
    the last such box on ties. Updates ``gtm``, ``dtm``, ``dtig`` in place.
    """
    n = len(det)
    newdet = np.ones(n, dtype=bool)
    newdet[1:] = det[1:] != det[:-1]
    starts = np.flatnonzero(newdet)
    local = np.cumsum(newdet) - 1
    elig = (iou[:, None] >= thr)[:, :, None] & (~gtm[gt] | g_crowd[gt, None, None])  # (P,T,A)
    nonign = ~g_ign[gt][:, None, :]  # (P, 1, A)
    has_pref = np.logical_or.reduceat(elig & nonign, starts, axis=0)
    allowed = elig & (nonign | ~has_pref[local])
    val = np.where(allowed, iou[:, None, None], -1.0)
    best = np.maximum.reduceat(val, starts, axis=0)
    pos = np.arange(n, dtype=np.int32)[:, None, None]
    last = np.maximum.reduceat(np.where(allowed & (val == best[local]), pos, -1), starts, axis=0)
    hit = last >= 0  # (D, T, A)
    dets = det[starts]
    chosen = gt[np.where(hit, last, 0)]
    n_t, n_a = hit.shape[1:]
    ai = np.broadcast_to(np.arange(n_a), hit.shape)
    ti = np.broadcast_to(np.arange(n_t)[:, None], hit.shape)
    dtm[dets] = hit
    dtig[dets] = hit & g_ign[chosen, ai]
    gtm[chosen[hit], ti[hit], ai[hit]] = True


def _interpolate(
    tps: np.ndarray, fps: np.ndarray, npig: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """accumulate()'s precision at the 101 recall levels and final recall, for many rows.

    Rows with ``npig == 0`` are -1 (undefined), as pycocotools leaves them.
    """
    rows, n = tps.shape
    q = np.zeros((rows, len(REC_THRESHOLDS)))
    rc_last = np.zeros(rows)
    tp = np.cumsum(tps, axis=1, dtype=np.int64)
    fp = np.cumsum(fps, axis=1, dtype=np.int64)
    if n:
        tpf = tp.astype(np.float64)
        pr = tpf / (fp + tpf + np.spacing(1))
        env = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]
        with np.errstate(divide="ignore", invalid="ignore"):
            rc_last = tpf[:, -1] / npig
        # first index with tp/npig >= recall level == first index with tp >= k_min (exact)
        k_min = np.zeros((rows, len(REC_THRESHOLDS)), dtype=np.int64)
        for v in np.unique(npig[npig > 0]).tolist():
            levels = np.arange(v + 1) / v  # the values tp / npig can take, as accumulate()
            k_min[npig == v] = np.searchsorted(levels, REC_THRESHOLDS, side="left")
        stride = n + 2  # rows laid end to end, each row's cumsum shifted above the previous
        offset = np.arange(rows)[:, None]
        flat = (tp + offset * stride).ravel()
        pos = np.searchsorted(flat, k_min + offset * stride, side="left") - offset * n
        ok = (pos < n) & (npig > 0)[:, None]
        q[ok] = env[np.nonzero(ok)[0], pos[ok]]
    bad = npig == 0
    q[bad] = -1.0
    rc_last[bad] = -1.0
    return q, rc_last


def _evaluate_faster_coco_eval(
    cols: DetectionColumns, cids: list[int], names: dict[int, str]
) -> tuple[np.ndarray, np.ndarray]:
    """The same evaluation through faster-coco-eval's ``COCOeval_faster`` (in memory)."""
    from faster_coco_eval import COCO, COCOeval_faster

    quiet = logging.getLogger(__name__).debug
    g = _xywh(cols.gt_boxes)
    g_area = np.where(np.isnan(cols.gt_area), g[:, 2] * g[:, 3], cols.gt_area)
    gt_anns = [
        {
            "id": i + 1,
            "image_id": img + 1,
            "category_id": cid + 1,
            "bbox": box,
            "area": area,
            "iscrowd": crowd,
        }
        for i, (img, cid, box, area, crowd) in enumerate(
            zip(
                cols.gt_image.tolist(),
                cols.gt_class.tolist(),
                g.tolist(),
                g_area.tolist(),
                cols.gt_crowd.astype(int).tolist(),
                strict=True,
            )
        )
    ]
    images = [{"id": i + 1, "width": 0, "height": 0} for i in range(cols.num_images)]
    categories = [{"id": c + 1, "name": names[c]} for c in cids]
    coco_gt = COCO(print_function=quiet)
    coco_gt.dataset = {"images": images, "annotations": gt_anns, "categories": categories}
    coco_gt.createIndex()
    d = _xywh(cols.det_boxes)
    dt_anns = [
        {
            "id": i + 1,
            "image_id": img + 1,
            "category_id": cid + 1,
            "bbox": box,
            "score": score,
            "area": box[2] * box[3],
            "iscrowd": 0,
        }
        for i, (img, cid, box, score) in enumerate(
            zip(
                cols.det_image.tolist(),
                cols.det_class.tolist(),
                d.tolist(),
                cols.det_score.tolist(),
                strict=True,
            )
        )
    ]
    coco_dt = COCO(print_function=quiet)
    coco_dt.dataset = {"images": images, "annotations": dt_anns, "categories": categories}
    coco_dt.createIndex()
    ev = COCOeval_faster(coco_gt, coco_dt, "bbox", print_function=quiet)
    ev.params.imgIds = [im["id"] for im in images]
    ev.params.catIds = [c + 1 for c in cids]
    if not cols.num_images or not cids:
        n_t = len(IOU_THRESHOLDS)
        return -np.ones((n_t, 101, len(cids), 4, 3)), -np.ones((n_t, len(cids), 4, 3))
    ev.evaluate()
    ev.accumulate()
    return (
        np.asarray(ev.eval["precision"], dtype=np.float64),
        np.asarray(ev.eval["recall"], dtype=np.float64),
    )


class COCOMetric(DetectionMetric[COCOResult]):
    """COCO metrics with a ``reset`` / ``update`` / ``get`` interface (numpy, pixel boxes)."""

    def update(
        self,
        pred_boxes: object,
        pred_classes: object,
        pred_scores: object,
        gt_boxes: object,
        gt_classes: object,
        gt_crowd: object | None = None,
        gt_area: object | None = None,
    ) -> None:
        """Add one image or a padded batch (``xmin, ymin, xmax, ymax`` pixel boxes)."""
        self.store.add(
            pred_boxes,
            pred_classes,
            pred_scores,
            gt_boxes,
            gt_classes,
            gt_crowd=gt_crowd,
            gt_area=gt_area,
        )

    def add_pair(self, gt: GroundTruth, pred: Predictions) -> None:
        """Add one image; ``gt.crowd`` and ``gt.area`` are used the pycocotools way."""
        self.update(pred.boxes, pred.classes, pred.scores, gt.boxes, gt.classes, gt.crowd, gt.area)

    def compute(self, cols: DetectionColumns) -> COCOResult:
        """The COCO numbers for concatenated columns."""
        return coco_from_columns(cols, self.class_names)


def compute_coco(
    ground_truth: Sequence[GroundTruth],
    predictions: Sequence[Predictions],
    class_names: Mapping[int, str] | Sequence[str] | None = None,
) -> COCOResult:
    """COCO metrics of per-image predictions against per-image ground truth (same order)."""
    check_same_length(ground_truth, predictions)
    return COCOMetric(class_names).add_pairs(ground_truth, predictions).get()
