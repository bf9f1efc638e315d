"""MXNet 1.9's ``MultiBoxDetection`` (CPU) in numpy, for serving SageMaker's graph without
MXNet (:mod:`pipeline_lib.serving.onnx_runtime`). No MXNet here.

Per image: each anchor's best non-background class and its probability (below
``threshold``: no class), its box decoded from the anchor with the variances (clipped to
[0, 1]), the rows with a class in anchor order, sorted by score (stable), the first
``nms_topk`` kept (the rest lose their class), then greedy suppression of a later row of the
same class (any class with ``force_suppress``) whose IoU with a kept one is at least
``nms_threshold``. Rows without a class are -1. The same float32 operations in the same
order as MXNet's loop, so the rows equal the operator's up to the last bit of ``exp``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MultiBoxParams:
    """The attributes of a ``MultiBoxDetection`` node."""

    nms_threshold: float = 0.5
    nms_topk: int = -1
    threshold: float = 0.01
    force_suppress: bool = False
    clip: bool = True
    variances: tuple[float, float, float, float] = (0.1, 0.1, 0.2, 0.2)

    def to_json(self) -> dict:
        """The ONNX metadata form."""
        return {
            "nms_threshold": self.nms_threshold,
            "nms_topk": self.nms_topk,
            "threshold": self.threshold,
            "force_suppress": self.force_suppress,
            "clip": self.clip,
            "variances": list(self.variances),
        }


def _decode(anchors: np.ndarray, loc: np.ndarray, p: MultiBoxParams) -> np.ndarray:
    f32 = np.float32
    vx, vy, vw, vh = (f32(v) for v in p.variances)
    al, at, ar, ab = anchors[:, 0], anchors[:, 1], anchors[:, 2], anchors[:, 3]
    aw, ah = ar - al, ab - at
    ax, ay = (al + ar) / f32(2), (at + ab) / f32(2)
    px, py, pw, ph = loc[:, 0], loc[:, 1], loc[:, 2], loc[:, 3]
    ox = px * vx * aw + ax
    oy = py * vy * ah + ay
    ow = np.exp(pw * vw) * aw / f32(2)
    oh = np.exp(ph * vh) * ah / f32(2)
    boxes = np.stack([ox - ow, oy - oh, ox + ow, oy + oh], axis=1)
    return np.clip(boxes, f32(0), f32(1)) if p.clip else boxes


def multibox_detection(
    cls_prob: np.ndarray, loc_pred: np.ndarray, anchors: np.ndarray, p: MultiBoxParams
) -> np.ndarray:
    """``(N, A, 6)`` rows ``[class_id, score, xmin, ymin, xmax, ymax]`` from ``cls_prob``
    ``(N, C+1, A)``, ``loc_pred`` ``(N, 4A)`` and ``anchors`` ``(1, A, 4)`` (corners,
    normalized), as MXNet computes them (see the module docstring)."""
    cls_prob = np.asarray(cls_prob, dtype=np.float32)
    loc_pred = np.asarray(loc_pred, dtype=np.float32)
    anchors = np.asarray(anchors, dtype=np.float32).reshape(-1, 4)
    batch, _, count = cls_prob.shape
    out = np.full((batch, count, 6), -1.0, dtype=np.float32)
    threshold, nms = np.float32(p.threshold), np.float32(p.nms_threshold)
    for b in range(batch):
        probs = cls_prob[b, 1:]  # (C, A), background excluded
        best = np.argmax(probs, axis=0)  # the first of equal maxima, as the loop's ">"
        score = probs[best, np.arange(count)]
        ids = np.where(score < threshold, -1, best).astype(np.float32)
        valid = np.flatnonzero(ids >= 0)
        if not len(valid):
            continue
        rows = np.empty((len(valid), 6), dtype=np.float32)
        rows[:, 0], rows[:, 1] = ids[valid], score[valid]
        rows[:, 2:] = _decode(anchors[valid], loc_pred[b].reshape(-1, 4)[valid], p)
        if not 0 < p.nms_threshold <= 1:
            out[b, : len(rows)] = rows
            continue
        order = np.argsort(-rows[:, 1], kind="stable")
        keep_n = len(order) if not 0 < p.nms_topk < len(order) else p.nms_topk
        out[b, : len(rows)] = rows  # rows past nms_topk keep their values, lose their class
        out[b, keep_n : len(rows), 0] = -1
        ranked = rows[order[:keep_n]].copy()
        x1, y1, x2, y2 = ranked[:, 2], ranked[:, 3], ranked[:, 4], ranked[:, 5]
        area = (x2 - x1) * (y2 - y1)
        w = np.maximum(np.float32(0), np.minimum(x2[:, None], x2) - np.maximum(x1[:, None], x1))
        h = np.maximum(np.float32(0), np.minimum(y2[:, None], y2) - np.maximum(y1[:, None], y1))
        inter = w * h
        union = area[:, None] + area - inter
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = np.where(union <= 0, np.float32(0), inter / union)
        suppresses = iou >= nms
        if not p.force_suppress:
            suppresses &= ranked[:, 0][:, None] == ranked[:, 0]
        alive = np.ones(keep_n, dtype=bool)
        for i in range(keep_n):
            if alive[i]:
                alive[i + 1 :] &= ~suppresses[i, i + 1 :]
        ranked[~alive, 0] = -1
        out[b, :keep_n] = ranked
    return out


__all__ = ["MultiBoxParams", "multibox_detection"]
