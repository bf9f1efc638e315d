"""Evaluation pictures (PNG): per-class precision-recall curves, the confusion matrix and a
grid of sample images.

Uses matplotlib's object API with the Agg renderer (no pyplot, no global backend change),
so it is safe in workers and threads without a display.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from .types import ClassResult

PANEL_INCHES = 2.8
DPI = 100


def _grid(n: int, max_cols: int) -> tuple[int, int]:
    cols = max(1, min(max_cols, math.ceil(math.sqrt(n))))
    return math.ceil(n / cols), cols


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=DPI)
    return path


def plot_pr_curves(
    per_class: Mapping[int, ClassResult],
    path: str | Path,
    title: str = "Precision-recall per class",
    max_cols: int = 6,
) -> Path:
    """One panel per class: raw precision/recall points and the interpolated envelope.

    Classes without ground truth get a panel saying so. Needs results with curves (VOC).
    """
    classes = list(per_class.values())
    if not classes:
        fig = Figure(figsize=(4, 2))
        fig.text(0.5, 0.5, "no classes", ha="center", va="center")
        return _save(fig, path)
    rows, cols = _grid(len(classes), max_cols)
    fig = Figure(figsize=(cols * PANEL_INCHES, rows * PANEL_INCHES * 0.9 + 0.6))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, c in zip(axes.flat, classes, strict=False):
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
        if c.ap is None:
            ax.set_title(f"{c.name}: no ground truth", fontsize=8)
            continue
        ax.set_title(f"{c.name}  AP={c.ap:.3f}  (gt={c.num_gt})", fontsize=8)
        curve = c.curve
        if curve is None or curve.recall.size == 0:
            ax.text(0.5, 0.5, "no detections", ha="center", va="center", fontsize=8)
            continue
        recall = np.concatenate(([0.0], curve.recall))
        envelope = np.maximum.accumulate(curve.precision[::-1])[::-1]
        envelope = np.concatenate((envelope[:1], envelope))
        ax.plot(curve.recall, curve.precision, ".", ms=2, color="tab:blue", alpha=0.5)
        ax.step(recall, envelope, where="pre", color="tab:red", lw=1.2)
    for ax in list(axes.flat)[len(classes) :]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("recall", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("precision", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


@dataclass(frozen=True)
class Sample:
    """One image to draw: HWC uint8 RGB pixels, true boxes and predictions (pixels)."""

    image: np.ndarray
    gt_boxes: np.ndarray  # (N, 4) xmin, ymin, xmax, ymax
    gt_classes: np.ndarray
    pred_boxes: np.ndarray  # (M, 4)
    pred_classes: np.ndarray
    pred_scores: np.ndarray
    title: str = ""


def _color(cid: int) -> tuple[float, float, float, float]:
    from matplotlib import colormaps

    return colormaps["tab10"](int(cid) % 10)


def plot_samples(
    samples: Sequence[Sample],
    path: str | Path,
    class_names: Mapping[int, str] | None = None,
    score_threshold: float = 0.3,
    max_cols: int = 4,
) -> Path:
    """Grid of images: true boxes dashed white, predictions (score >= threshold) coloured with
    ``name score`` labels."""
    names = dict(class_names or {})
    if not samples:
        fig = Figure(figsize=(4, 2))
        fig.text(0.5, 0.5, "no images", ha="center", va="center")
        return _save(fig, path)
    rows, cols = _grid(len(samples), max_cols)
    fig = Figure(figsize=(cols * PANEL_INCHES * 1.3, rows * PANEL_INCHES * 1.3 + 0.5))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, s in zip(axes.flat, samples, strict=False):
        ax.imshow(s.image)
        ax.set_axis_off()
        ax.set_title(s.title, fontsize=7)
        for box in s.gt_boxes:
            x0, y0, x1, y1 = box
            ax.add_patch(
                Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="white", lw=1.2, ls="--")
            )
            ax.add_patch(
                Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="black", lw=0.4, ls="--")
            )
        keep = s.pred_scores >= score_threshold
        for box, cid, score in zip(
            s.pred_boxes[keep], s.pred_classes[keep], s.pred_scores[keep], strict=True
        ):
            x0, y0, x1, y1 = box
            color = _color(cid)
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec=color, lw=1.5))
            ax.text(
                x0,
                y0,
                f"{names.get(int(cid), cid)} {score:.2f}",
                fontsize=6,
                color="white",
                va="bottom",
                bbox={"facecolor": color, "alpha": 0.8, "pad": 1, "lw": 0},
            )
    for ax in list(axes.flat)[len(samples) :]:
        ax.axis("off")
    fig.suptitle(
        f"predictions (score >= {score_threshold:g}, coloured) and ground truth (dashed)",
        fontsize=9,
    )
    fig.tight_layout()
    return _save(fig, path)


def plot_confusion_matrix(confusion, path: str | Path) -> Path:
    """The confusion matrix (:class:`~.confusion.ConfusionMatrix`) as a heat map, each row
    normalised by its total (the share of a true class that went to each column) and
    annotated with its counts."""
    from .confusion import BACKGROUND, MISSED

    counts = np.asarray(confusion.matrix, dtype=np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    rows = [*confusion.classes, BACKGROUND]
    cols = [*confusion.classes, MISSED]
    side = max(4.0, 0.6 * len(rows) + 2)
    fig = Figure(figsize=(side + 1, side))
    ax = fig.subplots()
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the row")
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if len(rows) <= 30:
        for (i, j), n in np.ndenumerate(counts):
            if n:
                colour = "white" if shares[i, j] > 0.5 else "black"
                ax.text(j, i, f"{int(n)}", ha="center", va="center", fontsize=7, color=colour)
    ax.set_title(
        f"Confusion matrix (IoU {confusion.iou:g}, score >= {confusion.score_threshold:g})",
        fontsize=10,
    )
    fig.tight_layout()
    return _save(fig, path)
