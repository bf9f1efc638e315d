"""SSD construction: anchors tile the image; pretrained base weights come from the local cache."""

from __future__ import annotations

import warnings
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest

from pipeline_lib.training.model import (
    PretrainedWeightsInvalid,
    PretrainedWeightsMissing,
    build_ssd,
    pretrained_root,
)


def _loaded(path: Path) -> dict[str, np.ndarray]:
    return {k: v.asnumpy() for k, v in mx.nd.load(str(path)).items()}


def test_pretrained_base_weights_are_loaded_from_the_local_cache(tmp_path, imagenet_file):
    path = imagenet_file(tmp_path, "mobilenet-0.25")
    saved = _loaded(path)
    net = build_ssd("mobilenet-0.25", ["a", "b"], 300, pretrained_base=True, mxnet_home=tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net.initialize()  # as training does: already-loaded parameters are kept
    params = net.features.collect_params()
    first_conv = next(p for n, p in params.items() if n.endswith("conv0_weight"))
    np.testing.assert_array_equal(first_conv.data().asnumpy(), saved["features.0.weight"])
    last_bn = next(p for n, p in params.items() if n.endswith("batchnorm26_running_var"))
    assert any(np.array_equal(last_bn.data().asnumpy(), v) for v in saved.values())


def test_pretrained_base_absent_names_the_folder(tmp_path):
    with pytest.raises(PretrainedWeightsMissing, match=str(tmp_path / "models")):
        build_ssd("mobilenet-0.25", ["a"], 300, pretrained_base=True, mxnet_home=tmp_path)


def test_pretrained_file_of_another_network_is_a_clear_error(tmp_path, imagenet_file):
    other = imagenet_file(tmp_path / "other", "mobilenet-1.0")
    target = pretrained_root(tmp_path) / "mobilenet0.25-0123abcd.params"
    target.parent.mkdir(parents=True)
    target.write_bytes(other.read_bytes())
    with pytest.raises(PretrainedWeightsInvalid, match=r"mobilenet0\.25-0123abcd\.params"):
        build_ssd("mobilenet-0.25", ["a"], 300, pretrained_base=True, mxnet_home=tmp_path)


@pytest.mark.integration
def test_pretrained_vgg16_atrous_base(tmp_path):
    """VGG-16 (SageMaker's default base): GluonCV loads the atrous VGG file itself."""
    from gluoncv.model_zoo.ssd.vgg_atrous import vgg16_atrous_300

    mx.random.seed(3)
    ref = vgg16_atrous_300(pretrained=False)
    ref.initialize(mx.init.Uniform(0.1))
    ref(mx.nd.zeros((1, 3, 300, 300)))
    path = pretrained_root(tmp_path) / "vgg16_atrous-0123abcd.params"
    path.parent.mkdir(parents=True)
    ref.save_parameters(str(path))
    net = build_ssd("vgg-16", ["a", "b"], 300, pretrained_base=True, mxnet_home=tmp_path)
    saved = _loaded(path)
    loaded = net.features._collect_params_with_prefix()
    for key in ("stages.0.0.weight", "stages.4.4.weight"):
        np.testing.assert_array_equal(loaded[key].data().asnumpy(), saved[key])
