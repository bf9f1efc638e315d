"""COCO metrics equal pycocotools' COCOeval (bbox) numbers."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from evaluation_testdata import make_images

from pipeline_lib.evaluation.coco import (
    COCO_STATS,
    COCOMetric,
    coco_from_columns,
    compute_coco,
)
from pipeline_lib.evaluation.store import DetectionStore
from pipeline_lib.evaluation.types import GroundTruth, Predictions


def _pycocotools(images, n_classes: int):
    """pycocotools on the same data, given as COCO x, y, w, h (what a COCO user would do)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    anns, dets = [], []
    for i, im in enumerate(images):
        g = np.c_[im.gt_boxes[:, :2], im.gt_boxes[:, 2:] - im.gt_boxes[:, :2]]
        areas = g[:, 2] * g[:, 3] if im.area is None else im.area
        for b, c, crowd, a in zip(
            g.tolist(), im.gt_classes.tolist(), im.crowd.tolist(), areas.tolist(), strict=True
        ):
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": c + 1,
                    "bbox": b,
                    "area": a,
                    "iscrowd": int(crowd),
                }
            )
        d = np.c_[im.det_boxes[:, :2], im.det_boxes[:, 2:] - im.det_boxes[:, :2]]
        for b, c, s in zip(d.tolist(), im.det_classes.tolist(), im.scores.tolist(), strict=True):
            dets.append({"image_id": i + 1, "category_id": c + 1, "bbox": b, "score": s})
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {
            "images": [{"id": i + 1} for i in range(len(images))],
            "annotations": anns,
            "categories": [{"id": k + 1, "name": str(k)} for k in range(n_classes)],
        }
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def _store(images) -> DetectionStore:
    store = DetectionStore()
    for im in images:
        store.add_image(
            im.det_boxes,
            im.det_classes,
            im.scores,
            im.gt_boxes,
            im.gt_classes,
            gt_crowd=im.crowd,
            gt_area=im.area,
        )
    return store


@pytest.fixture(scope="module")
def case():
    k = 12
    images = make_images(
        400, k, seed=11, crowd_p=0.08, tie_decimals=2, explicit_area_p=0.2, crowded_image_p=0.02
    )
    return images, k, _pycocotools(images, k)


@pytest.mark.parametrize("backend", ["numpy", "faster_coco_eval"])
def test_twelve_numbers_equal_pycocotools(case, backend: str) -> None:
    images, k, ev = case
    r = coco_from_columns(_store(images).columns(), [str(i) for i in range(k)], backend=backend)
    assert list(r.stats) == list(COCO_STATS)
    np.testing.assert_allclose(r.stats_array(), ev.stats, rtol=0, atol=1e-6)
    np.testing.assert_allclose(r.precision, ev.eval["precision"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(r.recall, ev.eval["recall"], rtol=0, atol=1e-9)
    # the case covers what it claims to
    assert all(v is not None and 0 < v < 1 for v in r.stats.values())
    assert any(im.crowd.any() for im in images) and any(len(im.scores) > 100 for im in images)


def test_per_class_ap_equals_pycocotools(case) -> None:
    images, k, ev = case
    r = coco_from_columns(_store(images).columns(), [str(i) for i in range(k)])
    for cid in range(k):
        p = ev.eval["precision"][:, :, cid, 0, -1]
        assert r.per_class[cid].ap == pytest.approx(p[p > -1].mean(), abs=1e-12)
        p50 = ev.eval["precision"][0, :, cid, 0, -1]
        assert r.per_class_ap50[cid] == pytest.approx(p50[p50 > -1].mean(), abs=1e-12)
        want = sum(int((im.gt_classes[~im.crowd] == cid).sum()) for im in images)
        assert r.per_class[cid].num_gt == want


def test_metric_interface_and_undefined_numbers() -> None:
    # only large boxes: small/medium numbers are undefined (pycocotools -1) -> None
    gt = GroundTruth(
        np.array([[0, 0, 200, 200.0], [300, 300, 500, 500]]),
        np.array([0, 1]),
        crowd=np.array([False, True]),
    )
    pred = Predictions(
        np.array([[0, 0, 200, 190.0], [310, 310, 400, 400]]), np.array([0, 1]), np.array([0.9, 0.8])
    )
    r = compute_coco([gt], [pred], class_names={0: "a", 1: "b", 2: "c"})
    assert r.stats["APs"] is None and r.stats["APm"] is None and r.stats["ARs"] is None
    assert r.stats["AP50"] == pytest.approx(1.0)
    assert r.per_class[1].ap is None  # only a crowd box: no ground truth
    assert r.per_class[2].ap is None and r.per_class[2].num_gt == 0
    d = r.to_dict()
    assert d["metrics"]["mAP"] == d["metrics"]["AP"] and d["metrics"]["APs"] is None
    m = COCOMetric()
    m.update(
        pred.boxes[None],
        pred.classes[None],
        pred.scores[None],
        gt.boxes[None],
        gt.classes[None],
        gt_crowd=gt.crowd[None],
    )
    np.testing.assert_array_equal(m.get().stats_array(), r.stats_array())


def test_empty() -> None:
    r = COCOMetric().get()
    assert all(v is None for v in r.stats.values()) and r.per_class == {}
    none = Predictions(np.zeros((0, 4)), np.zeros(0), np.zeros(0))
    r = compute_coco([GroundTruth(np.array([[0, 0, 50, 50.0]]), np.array([0]))], [none])
    assert r.stats["AP"] == 0.0 and r.per_class[0].ap == 0.0


def test_unknown_backend() -> None:
    with pytest.raises(ValueError, match="backend"):
        coco_from_columns(DetectionStore().columns(), backend="other")  # type: ignore[arg-type]
