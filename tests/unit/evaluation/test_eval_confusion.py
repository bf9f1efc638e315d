"""The confusion matrix: a class taken for another, a detection of nothing (background), an
object no detection found (missed), score threshold, difficult objects left out."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline_lib.evaluation.confusion import confusion_matrix
from pipeline_lib.evaluation.plots import plot_confusion_matrix
from pipeline_lib.evaluation.store import DetectionStore

NAMES = {0: "cat", 1: "dog"}


def _store() -> DetectionStore:
    store = DetectionStore()
    # image 0: a dog found as a cat; a cat nobody found; a dog box where nothing is
    store.add_image(
        pred_boxes=[[10, 10, 50, 50], [200, 200, 240, 240], [300, 300, 340, 340]],
        pred_classes=[0, 1, 1],
        pred_scores=[0.9, 0.8, 0.1],  # the last is below the score threshold
        gt_boxes=[[12, 12, 50, 52], [100, 100, 140, 140]],
        gt_classes=[1, 0],
    )
    # image 1: a cat found as a cat twice (the second detection is a duplicate: background),
    # and a difficult dog found: not counted either way
    store.add_image(
        pred_boxes=[[0, 0, 30, 30], [1, 1, 30, 30], [60, 60, 90, 90]],
        pred_classes=[0, 0, 1],
        pred_scores=[0.95, 0.5, 0.7],
        gt_boxes=[[0, 0, 30, 30], [60, 60, 90, 90]],
        gt_classes=[0, 1],
        gt_difficult=[0, 1],
    )
    return store


def test_counts_confusions_background_and_missed() -> None:
    result = confusion_matrix(_store().columns(), NAMES, iou=0.5, score_threshold=0.3)
    #                  cat dog missed
    want = np.array(
        [
            [1, 0, 1],  # cat: one found, one missed
            [1, 0, 0],  # dog: found as a cat
            [1, 1, 0],  # background: a duplicate cat, a dog where nothing is
        ]
    )
    assert np.array_equal(result.matrix, want), result.matrix
    data = result.to_dict()
    assert data["rows"] == ["cat", "dog", "background"]
    assert data["columns"] == ["cat", "dog", "missed"]
    assert data["matrix"] == want.tolist()


def test_a_lower_score_threshold_counts_the_weak_detection(tmp_path: Path) -> None:
    result = confusion_matrix(_store().columns(), NAMES, iou=0.5, score_threshold=0.05)
    assert result.matrix[2, 1] == 2  # the 0.1 dog box where nothing is
    assert plot_confusion_matrix(result, tmp_path / "cm.png").stat().st_size > 1000
