"""Random detection data for the evaluation tests and checks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class RandomImage:
    """Ground truth and detections of one image; boxes as pixel xmin, ymin, xmax, ymax."""

    gt_boxes: np.ndarray
    gt_classes: np.ndarray
    difficult: np.ndarray
    crowd: np.ndarray
    area: np.ndarray | None
    det_boxes: np.ndarray
    det_classes: np.ndarray
    scores: np.ndarray


def make_images(
    n_images: int,
    n_classes: int,
    seed: int,
    *,
    difficult_p: float = 0.0,
    crowd_p: float = 0.0,
    tie_decimals: int | None = None,
    explicit_area_p: float = 0.0,
    crowded_image_p: float = 0.0,
) -> list[RandomImage]:
    """Integer-pixel boxes at all COCO area ranges (some exactly on 32^2 / 96^2), detections
    jittered from the truth (so IoUs land on and near the thresholds) plus false alarms."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_images):
        ng = int(rng.integers(0, 10))
        scale = rng.choice([8, 24, 32, 64, 96, 200], ng)
        wh = np.maximum(1, np.round(rng.uniform(0.5, 1.5, (ng, 2)) * scale[:, None]))
        on_edge = rng.random(ng) < 0.1
        wh[on_edge] = rng.choice([32, 96], (int(on_edge.sum()), 1))
        xy = np.round(rng.uniform(0, 500, (ng, 2)))
        gt = np.concatenate([xy, xy + wh], 1)
        gc = rng.integers(0, n_classes, ng)
        area = None
        if explicit_area_p and rng.random() < explicit_area_p:
            area = np.where(
                rng.random(ng) < 0.5,
                rng.choice([1024.0, 9216.0, 500.0, 5000.0], ng),
                wh[:, 0] * wh[:, 1],
            )
        nd = 150 if rng.random() < crowded_image_p else int(rng.integers(0, 25))
        src = rng.integers(0, max(ng, 1), nd)
        if ng:
            det = gt[src] + rng.integers(-4, 5, (nd, 4))
            dc = np.where(rng.random(nd) < 0.85, gc[src], rng.integers(0, n_classes, nd))
        else:
            dxy = np.round(rng.uniform(0, 400, (nd, 2)))
            det = np.concatenate([dxy, dxy + np.round(rng.uniform(1, 150, (nd, 2)))], 1)
            dc = rng.integers(0, n_classes, nd)
        if nd == 150:
            dc[:] = 0
        det[:, 2:] = np.maximum(det[:, 2:], det[:, :2] + 1)
        scores = rng.random(nd)
        if tie_decimals is not None:
            scores = np.round(scores, tie_decimals)
        out.append(
            RandomImage(
                gt.astype(np.float64),
                gc,
                rng.random(ng) < difficult_p,
                rng.random(ng) < crowd_p,
                area,
                det.astype(np.float64),
                dc,
                scores,
            )
        )
    return out
