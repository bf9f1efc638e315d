"""The confusion matrix of a detector: which classes are taken for which, and for nothing.

Rows are the true classes plus ``background`` (a detection that matches no object), columns
the predicted classes plus ``missed`` (an object no detection matches). Per image, the
detections scoring at least ``score_threshold`` are matched one to one to the objects they
overlap by at least ``iou`` (the pairs of highest IoU first, whatever their classes, as
Ultralytics and MMDetection count), so a dog found as a cat lands in row dog, column cat.
Objects marked difficult or crowd are left out, and so are the detections matched to them.
IoU follows the evaluation's pixel convention (:func:`~.voc.pair_iou`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .types import DetectionColumns
from .voc import pair_iou

BACKGROUND = "background"
MISSED = "missed"


@dataclass(frozen=True)
class ConfusionMatrix:
    """Counts ``(C + 1, C + 1)``: ``matrix[true][predicted]``; the last row is background,
    the last column missed."""

    classes: list[str]
    matrix: np.ndarray
    iou: float
    score_threshold: float

    def to_dict(self) -> dict:
        """The ``metrics.json`` form: labels of the rows and columns, the counts."""
        return {
            "iou": self.iou,
            "score_threshold": self.score_threshold,
            "rows": [*self.classes, BACKGROUND],
            "columns": [*self.classes, MISSED],
            "matrix": self.matrix.astype(int).tolist(),
        }


def confusion_matrix(
    cols: DetectionColumns,
    class_names: Mapping[int, str],
    iou: float = 0.5,
    score_threshold: float = 0.3,
    pixel_offset: float = 1.0,
) -> ConfusionMatrix:
    """Count matches, confusions, false detections and missed objects (module docstring).
    Detections of a class id outside ``class_names`` count in no column."""
    ids = sorted(class_names)
    index = {cid: i for i, cid in enumerate(ids)}
    n = len(ids)
    matrix = np.zeros((n + 1, n + 1), dtype=np.int64)
    keep = cols.det_score >= score_threshold
    det_image, det_class, det_boxes = (
        cols.det_image[keep],
        cols.det_class[keep],
        cols.det_boxes[keep],
    )
    ignored = cols.gt_difficult | cols.gt_crowd
    for image in range(cols.num_images):
        gt = np.flatnonzero(cols.gt_image == image)
        det = np.flatnonzero(det_image == image)
        gt_rows = [index.get(int(c), -1) for c in cols.gt_class[gt]]
        det_cols = [index.get(int(c), -1) for c in det_class[det]]
        matched_gt, matched_det = set(), set()
        if len(gt) and len(det):
            a = np.repeat(cols.gt_boxes[gt], len(det), axis=0)
            b = np.tile(det_boxes[det], (len(gt), 1))
            ious = pair_iou(a, b, pixel_offset).reshape(len(gt), len(det))
            g, d = np.nonzero(ious >= iou)
            for k in np.argsort(-ious[g, d], kind="stable"):
                gi, di = int(g[k]), int(d[k])
                if gi in matched_gt or di in matched_det:
                    continue
                matched_gt.add(gi)
                matched_det.add(di)
                if not ignored[gt[gi]] and gt_rows[gi] >= 0 and det_cols[di] >= 0:
                    matrix[gt_rows[gi], det_cols[di]] += 1
        for gi, row in enumerate(gt_rows):
            if gi not in matched_gt and not ignored[gt[gi]] and row >= 0:
                matrix[row, n] += 1
        for di, column in enumerate(det_cols):
            if di not in matched_det and column >= 0:
                matrix[n, column] += 1
    names = [str(class_names[cid]) for cid in ids]
    return ConfusionMatrix(names, matrix, float(iou), float(score_threshold))


__all__ = ["BACKGROUND", "MISSED", "ConfusionMatrix", "confusion_matrix"]
