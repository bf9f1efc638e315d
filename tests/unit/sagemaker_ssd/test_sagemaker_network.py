"""The Gluon block odp's engine trains for model_format=sagemaker: its weights are the
training symbol's, by name; it detects as example/ssd's inference does on the same
weights; its training outputs are what GluonCV's targets and loss take; seeds and ImageNet
checkpoints load by name."""

from __future__ import annotations

from pathlib import Path

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

from pipeline_lib.preprocessing import MEAN, STD
from pipeline_lib.sagemaker_ssd.graph import detection_symbol, training_symbol
from pipeline_lib.sagemaker_ssd.layout import MEAN_PIXELS
from pipeline_lib.sagemaker_ssd.network import SageMakerSSD, remap_class_rows
from pipeline_lib.sagemaker_ssd.pretrained import (
    PretrainedWeightsInvalid,
    PretrainedWeightsMissing,
    find_checkpoint,
    is_base_parameter,
    load_checkpoint,
)

SIZE = 300


@pytest.fixture(scope="module")
def net() -> SageMakerSSD:
    mx.random.seed(0)
    block = SageMakerSSD("resnet-50", ["a", "b", "c"], SIZE)
    block.initialize_weights(mx.cpu())
    return block


def test_its_weights_are_the_training_symbols(net: SageMakerSSD) -> None:
    symbol = training_symbol("resnet-50", SIZE, 3)
    args, _, aux = symbol.infer_shape(data=(1, 3, SIZE, SIZE), label=(1, 2, 5))
    shapes = dict(zip(symbol.list_arguments(), args, strict=True))
    shapes.update(zip(symbol.list_auxiliary_states(), aux, strict=True))
    del shapes["data"], shapes["label"]
    assert {n: p.shape for n, p in net.body.collect_params().items()} == shapes


def test_it_detects_as_example_ssd_infers_on_the_same_weights(net: SageMakerSSD) -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (2, 3, SIZE, SIZE)).astype(np.float32)
    normalised = (pixels - MEAN.reshape(1, 3, 1, 1)) / STD.reshape(1, 3, 1, 1)  # the engine's
    ids, scores, boxes = (a.asnumpy() for a in net(mx.nd.array(normalised)))
    reference = mx.gluon.SymbolBlock(
        detection_symbol(training_symbol("resnet-50", SIZE, 3), 0.45),
        mx.sym.var("data"),
        params=net.body.collect_params(),
    )
    minus_mean = pixels - np.array(MEAN_PIXELS, dtype=np.float32).reshape(1, 3, 1, 1)
    rows = reference(mx.nd.array(minus_mean)).asnumpy()
    kept = rows[..., 0] >= 0
    assert kept.sum() > 0
    assert np.array_equal(ids[..., 0] >= 0, kept)
    np.testing.assert_allclose(scores[..., 0][kept], rows[..., 1][kept], atol=1e-4)
    np.testing.assert_allclose(boxes[kept] / SIZE, rows[..., 2:][kept], atol=1e-3)


def test_training_outputs_are_what_gluoncvs_targets_and_loss_take(net: SageMakerSSD) -> None:
    with autograd.train_mode():
        cls_preds, box_preds, anchors = net(mx.nd.zeros((2, 3, SIZE, SIZE)))
    count = anchors.shape[1]
    assert cls_preds.shape == (2, count, 4) and box_preds.shape == (2, count, 4)
    # anchors as GluonCV's target generator takes them: centre, size, in input pixels
    first = anchors[0, 0].asnumpy()
    step = SIZE / 19  # _plus12 is a 19x19 map at 300 (stride 16, rounded up)
    np.testing.assert_allclose(first, [step / 2, step / 2, 0.1 * SIZE, 0.1 * SIZE], rtol=1e-5)


def test_a_class_change_moves_each_class_predictors_rows_by_name(net: SageMakerSSD) -> None:
    params = net.body.collect_params()
    seed = {
        n: mx.nd.array(np.random.default_rng(1).normal(size=p.shape)) for n, p in params.items()
    }
    moved, shared = remap_class_rows(
        params, seed, {0: "a", 1: "b", 2: "c"}, {0: "c", 1: "x", 2: "a"}
    )
    assert shared == {"a", "c"}
    name = "_plus12_cls_pred_conv_weight"  # 4 anchors per position, 3 classes + background
    old, new, fresh = seed[name].asnumpy(), moved[name].asnumpy(), params[name].data().asnumpy()
    for a in range(4):
        assert np.array_equal(new[a * 4], old[a * 4])  # background
        assert np.array_equal(new[a * 4 + 1], old[a * 4 + 3])  # "c": id 2 -> 0
        assert np.array_equal(new[a * 4 + 2], fresh[a * 4 + 2])  # "x": new, fresh
        assert np.array_equal(new[a * 4 + 3], old[a * 4 + 1])  # "a": id 0 -> 2
    loc = "_plus12_loc_pred_conv_weight"
    assert moved[loc] is seed[loc]


def test_an_imagenet_checkpoint_sets_the_base_network_only(
    net: SageMakerSSD, tmp_path: Path
) -> None:
    params = net.body.collect_params()
    base = {n: p for n, p in params.items() if is_base_parameter(n)}
    assert "conv0_weight" in base and "multi_feat_2_conv_1x1_conv_weight" not in base
    rng = np.random.default_rng(2)
    arrays = {n: mx.nd.array(rng.normal(size=p.shape)) for n, p in base.items()}
    arrays["fc1_weight"] = mx.nd.zeros((1000, 2048))  # the classifier SSD does not use
    mx.nd.save(str(tmp_path / "resnet-50-0000.params"), {f"arg:{k}": v for k, v in arrays.items()})
    head = params["multi_feat_2_conv_1x1_conv_weight"].data().asnumpy().copy()
    path = find_checkpoint("resnet-50", tmp_path)
    assert load_checkpoint(path, params) == len(base)
    assert np.array_equal(params["conv0_weight"].data().asnumpy(), arrays["conv0_weight"].asnumpy())
    assert np.array_equal(params["multi_feat_2_conv_1x1_conv_weight"].data().asnumpy(), head)


def test_a_missing_or_foreign_checkpoint_is_one_clear_error(
    net: SageMakerSSD, tmp_path: Path
) -> None:
    with pytest.raises(PretrainedWeightsMissing, match=r"vgg16_reduced-NNNN\.params"):
        find_checkpoint("vgg-16", tmp_path)
    mx.nd.save(str(tmp_path / "resnet-50-0000.params"), {"arg:conv0_weight": mx.nd.zeros((2, 2))})
    with pytest.raises(PretrainedWeightsInvalid, match="parameters are missing"):
        load_checkpoint(find_checkpoint("resnet-50", tmp_path), net.body.collect_params())


def test_vgg_from_scratch_starts_on_the_scale_of_odps_gluoncv_network() -> None:
    """example/ssd's fan-out Xavier on the predictors starts the logits ~8x larger than
    GluonCV's and SGD from scratch diverged (NaN at batch 5 of the throughput benchmark)."""
    from pipeline_lib.training.model import build_ssd

    mx.random.seed(1)
    ours = SageMakerSSD("vgg-16", ["a", "b"], 300)
    ours.initialize_weights(mx.cpu())
    theirs = build_ssd("vgg-16", ["a", "b"], 300)
    theirs.initialize()
    batch = mx.nd.random.normal(shape=(1, 3, 300, 300))  # normalised, as the engine feeds it
    with autograd.train_mode():
        ours_cls = ours(batch)[0].abs().mean().asscalar()
        theirs_cls = theirs(batch)[0].abs().mean().asscalar()
    assert 0.5 < float(ours_cls) / float(theirs_cls) < 2.0, (ours_cls, theirs_cls)
