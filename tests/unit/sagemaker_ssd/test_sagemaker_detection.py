"""MultiBoxDetection in numpy (serving SageMaker's graph without MXNet) equals MXNet's
operator: same rows, same order, to the last bit of exp."""

from __future__ import annotations

import mxnet as mx
import numpy as np
import pytest

from pipeline_lib.sagemaker_ssd.detection import MultiBoxParams, multibox_detection


def _inputs(rng: np.random.Generator, classes: int, anchors: int):
    logits = rng.normal(0, 2, (2, classes + 1, anchors)).astype(np.float32)
    cls_prob = mx.nd.softmax(mx.nd.array(logits), axis=1).asnumpy()
    loc = rng.normal(0, 1, (2, 4 * anchors)).astype(np.float32)
    centre = rng.uniform(0, 1, (anchors, 2))
    size = rng.uniform(0.02, 0.5, (anchors, 2))
    boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
    return cls_prob, loc, boxes.astype(np.float32)[None]


@pytest.mark.parametrize("topk", [400, -1, 30])
@pytest.mark.parametrize("force_suppress", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_rows_equal_mxnets_operator(topk: int, force_suppress: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    cls_prob, loc, anchors = _inputs(rng, int(rng.integers(1, 5)), int(rng.integers(100, 900)))
    params = MultiBoxParams(nms_threshold=0.45, nms_topk=topk, force_suppress=force_suppress)
    theirs = mx.nd.contrib.MultiBoxDetection(
        mx.nd.array(cls_prob),
        mx.nd.array(loc),
        mx.nd.array(anchors),
        nms_threshold=0.45,
        nms_topk=topk,
        force_suppress=force_suppress,
        variances=(0.1, 0.1, 0.2, 0.2),
    ).asnumpy()
    ours = multibox_detection(cls_prob, loc, anchors, params)
    assert np.array_equal(ours[..., 0], theirs[..., 0])  # classes, suppression, order
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)


def test_no_anchor_above_the_threshold_gives_only_empty_rows() -> None:
    cls_prob = np.zeros((1, 3, 10), dtype=np.float32)
    cls_prob[0, 0] = 1.0  # all background
    anchors = np.tile(np.array([0.1, 0.1, 0.3, 0.3], dtype=np.float32), (1, 10, 1))
    out = multibox_detection(cls_prob, np.zeros((1, 40), np.float32), anchors, MultiBoxParams())
    assert (out == -1).all()
