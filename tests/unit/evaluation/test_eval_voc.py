"""VOC metrics: the Padilla reference values, equality with GluonCV, conventions."""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from pipeline_lib.evaluation.types import GroundTruth, Predictions, to_pixels
from pipeline_lib.evaluation.voc import VOCMetric, average_precision, compute_voc, pair_iou

REPO = Path(__file__).resolve().parents[3]
PADILLA = REPO.parent / "shared" / "references" / "padilla_odm"


def _load_padilla(folder: str, detections: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for f in sorted((PADILLA / folder).glob("*.txt")):
        rows = [line.split() for line in f.read_text().splitlines() if line.strip()]
        boxes = np.array([[float(v) for v in r[-4:]] for r in rows]).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]  # left, top, width, height -> corners
        scores = np.array([float(r[1]) for r in rows]) if detections else np.zeros(len(rows))
        out[f.stem] = (boxes, scores)
    return out


def _padilla_expected() -> dict[float, tuple[float, float]]:
    """IoU -> (all-point AP, 11-point AP), parsed from EXPECTED.md's table."""
    table = {}
    for line in (PADILLA / "EXPECTED.md").read_text().splitlines():
        m = re.match(r"\|\s*([0-9.]+)\s*\|\s*([0-9.]+)[^|]*\|\s*([0-9.]+)\s*\|", line)
        if m:
            table[float(m.group(1))] = (float(m.group(2)), float(m.group(3)))
    return table


@pytest.mark.skipif(not PADILLA.is_dir(), reason="../shared/references/padilla_odm not present")
@pytest.mark.parametrize("metric", ["voc", "voc07"])
def test_padilla_reference_values(metric: str) -> None:
    expected = _padilla_expected()
    assert set(expected) == {0.1, 0.3, 0.5, 0.75}
    gt = _load_padilla("groundtruths", False)
    dt = _load_padilla("detections", True)
    m = VOCMetric(metric=metric, class_names=["person"])
    for name in gt:
        db, ds = dt[name]
        m.update(db, np.zeros(len(db)), ds, gt[name][0], np.zeros(len(gt[name][0])))
    results = m.get_many(sorted(expected))
    for r in results:
        want = expected[r.iou_threshold][0 if metric == "voc" else 1]
        assert r.mAP == pytest.approx(want, abs=1e-6), (metric, r.iou_threshold)
        assert r.per_class[0].num_gt == 15
        assert r.per_class[0].num_detections == 24


@pytest.mark.skipif(not PADILLA.is_dir(), reason="../shared/references/padilla_odm not present")
def test_padilla_precision_recall_and_tie_order() -> None:
    """The published PR points at IoU 0.3, and the tie rule that they depend on."""
    text = (PADILLA / "expected_results.txt").read_text()
    want_p = [
        float(v)
        for v in re.search(r"Precision: \[(.*)\]", text).group(1).replace("'", "").split(",")
    ]
    want_r = [
        float(v) for v in re.search(r"Recall: \[(.*)\]", text).group(1).replace("'", "").split(",")
    ]
    gt = _load_padilla("groundtruths", False)
    dt = _load_padilla("detections", True)
    gts = [GroundTruth(b, np.zeros(len(b))) for b, _ in gt.values()]
    preds = [Predictions(dt[k][0], np.zeros(len(dt[k][0])), dt[k][1]) for k in gt]
    r = compute_voc(gts, preds, 0.3, "voc")
    np.testing.assert_allclose(r.per_class[0].curve.precision, want_p, atol=0.005)
    np.testing.assert_allclose(r.per_class[0].curve.recall, want_r, atol=0.005)
    # reversing the order of the files and of the detections reverses every tie
    rev_p = [Predictions(p.boxes[::-1], p.classes, p.scores[::-1]) for p in preds[::-1]]
    assert compute_voc(gts[::-1], rev_p, 0.3, "voc").mAP == pytest.approx(0.2235, abs=1e-4)


def _gluoncv_metrics():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from gluoncv.utils.metrics.voc_detection import VOC07MApMetric, VOCMApMetric
    return {"voc07": VOC07MApMetric, "voc": VOCMApMetric}


@pytest.mark.parametrize("metric", ["voc07", "voc"])
@pytest.mark.parametrize("iou", [0.5, 0.7])
def test_equal_to_gluoncv(random_images, metric: str, iou: float) -> None:
    """Per image and in padded batches, with difficult boxes, classes without ground truth
    and classes without detections; scores distinct (GluonCV's tie order is unstable)."""
    k = 9
    images = random_images(300, k - 2, seed=3, difficult_p=0.15)
    names = [f"c{i}" for i in range(k)]
    theirs = _gluoncv_metrics()[metric](iou_thresh=iou, class_names=names)
    ours = VOCMetric(iou, metric, class_names=names)
    batched = VOCMetric(iou, metric, class_names=names)
    rng = np.random.default_rng(0)
    for start in range(0, len(images), 8):
        chunk = images[start : start + 8]
        n_det = max(len(im.scores) for im in chunk) + 2
        n_gt = max(len(im.gt_classes) for im in chunk) + 1
        pb = -np.ones((len(chunk), n_det, 4))
        pc = -np.ones((len(chunk), n_det, 1))
        ps = -np.ones((len(chunk), n_det, 1))
        gb = -np.ones((len(chunk), n_gt, 4))
        gc = -np.ones((len(chunk), n_gt, 1))
        gd = np.zeros((len(chunk), n_gt, 1))
        for i, im in enumerate(chunk):
            # a class the ground truth never has: predicted only
            dc = np.where(rng.random(len(im.det_classes)) < 0.05, k - 1, im.det_classes)
            nd, ng = len(im.scores), len(im.gt_classes)
            pb[i, :nd], pc[i, :nd, 0], ps[i, :nd, 0] = im.det_boxes, dc, im.scores
            gb[i, :ng], gc[i, :ng, 0], gd[i, :ng, 0] = im.gt_boxes, im.gt_classes, im.difficult
            ours.update(im.det_boxes, dc, im.scores, im.gt_boxes, im.gt_classes, im.difficult)
        theirs.update(pb, pc, ps, gb, gc, gd)
        batched.update(pb, pc, ps, gb, gc, gd)
    names_out, values = theirs.get()
    for result in (ours.get(), batched.get()):
        assert result.mAP == pytest.approx(values[-1], abs=1e-12)
        for cid, value in enumerate(values[:-1]):
            c = result.per_class[cid]
            if math.isnan(value):
                assert c.ap is None, cid
            else:
                assert c.ap == pytest.approx(value, abs=1e-12), cid
    assert ours.get().per_class[k - 1].ap is None  # predicted only: reported, not averaged
    assert ours.get().per_class[k - 1].num_detections > 0
    assert ours.get().per_class[k - 2].num_gt == 0


def test_voc_conventions() -> None:
    # +1 pixel convention (GluonCV/VOC) vs continuous coordinates
    a = np.array([[0.0, 0.0, 9.0, 9.0]])
    b = np.array([[5.0, 0.0, 14.0, 9.0]])
    assert pair_iou(a, b, 1.0)[0] == pytest.approx(50 / 150)
    assert pair_iou(a, b, 0.0)[0] == pytest.approx(36 / 126)
    # 11-point vs area AP on a hand-made curve
    rec = np.array([0.5, 0.5, 1.0])
    prec = np.array([1.0, 0.5, 2 / 3])
    assert average_precision(rec, prec, eleven_point=False) == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert average_precision(rec, prec, eleven_point=True) == pytest.approx((6 + 5 * 2 / 3) / 11)
    assert average_precision(np.zeros(0), np.zeros(0), True) == 0.0
    # normalized -> pixels
    np.testing.assert_allclose(to_pixels([[0.1, 0.2, 0.5, 1.0]], 200, 100), [[20, 20, 100, 100]])


def test_matching_rules() -> None:
    gt = GroundTruth(
        np.array([[0, 0, 10, 10], [20, 20, 30, 30.0]]),
        np.array([0, 0]),
        difficult=np.array([False, True]),
    )
    pred = Predictions(
        np.array([[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60.0]]),
        np.array([0, 0, 0, 0]),
        np.array([0.9, 0.8, 0.7, 0.6]),
    )
    r = compute_voc([gt], [pred], metric="voc")
    c = r.per_class[0]
    assert c.num_gt == 1  # the difficult box does not count
    # TP, duplicate FP, difficult match ignored (left out of the curve), FP
    np.testing.assert_allclose(c.curve.precision, [1.0, 0.5, 1 / 3])
    np.testing.assert_allclose(c.curve.recall, [1.0, 1.0, 1.0])
    assert c.ap == pytest.approx(1.0)


def test_no_ground_truth_anywhere_and_empty() -> None:
    r = compute_voc(
        [GroundTruth(np.zeros((0, 4)), np.zeros(0))],
        [Predictions(np.array([[0, 0, 5, 5.0]]), np.array([2]), np.array([0.5]))],
        class_names={0: "a"},
    )
    assert math.isnan(r.mAP)
    assert r.per_class[0].ap is None and r.per_class[2].ap is None
    assert r.to_dict()["metrics"]["mAP"] is None
    empty = VOCMetric().get()
    assert empty.per_class == {} and math.isnan(empty.mAP) and empty.num_images == 0


def test_ground_truth_without_detections_is_zero() -> None:
    gt = GroundTruth(np.array([[0, 0, 10, 10.0]]), np.array([1]))
    none = Predictions(np.zeros((0, 4)), np.zeros(0), np.zeros(0))
    for metric in ("voc07", "voc"):
        r = compute_voc([gt], [none], metric=metric)
        assert r.per_class[1].ap == 0.0 and r.mAP == 0.0


def test_bad_inputs() -> None:
    m = VOCMetric()
    with pytest.raises(ValueError, match="expected 2 values"):
        m.update(np.zeros((2, 4)), [0], [0.5, 0.4], np.zeros((0, 4)), [])
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        m.update(np.zeros((2, 3)), [0, 0], [0.5, 0.4], np.zeros((0, 4)), [])
    with pytest.raises(ValueError, match="finite"):
        m.update(np.full((1, 4), np.nan), [0], [0.5], np.zeros((0, 4)), [])
    with pytest.raises(ValueError, match="integers"):
        m.update(np.zeros((1, 4)), [0.5], [0.5], np.zeros((0, 4)), [])
    with pytest.raises(ValueError, match="metric"):
        VOCMetric(metric="coco")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="iou"):
        VOCMetric(iou_threshold=0)


def test_mxnet_ndarrays_accepted() -> None:
    import mxnet as mx

    m = VOCMetric()
    box = mx.nd.array([[[0, 0, 10, 10]]])
    m.update(box, mx.nd.array([[[0]]]), mx.nd.array([[[0.9]]]), box, mx.nd.array([[[0]]]))
    assert m.get().mAP == pytest.approx(1.0)


def test_normalized_boxes_warn() -> None:
    gt = GroundTruth(np.array([[0.1, 0.1, 0.5, 0.5]]), np.array([0]))
    pred = Predictions(np.array([[0.1, 0.1, 0.5, 0.5]]), np.array([0]), np.array([0.9]))
    with pytest.warns(UserWarning, match="normalized"):
        compute_voc([gt], [pred])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert compute_voc([gt], [pred], pixel_offset=0).mAP == pytest.approx(1.0)
