"""Fixtures for training tests."""

from __future__ import annotations

from pathlib import Path

import mxnet as mx
import pytest

from pipeline_lib.training.model import BASES, pretrained_root


def _write_imagenet_file(mxnet_home: Path, base_network: str, seed: int = 7) -> Path:
    """A base-network weights file in the model-store layout: not GluonCV's official file
    (its SHA-1 differs), so loading it proves we never compare hashes or download."""
    from gluoncv.model_zoo import get_model

    name = BASES[base_network].gluon_name
    mx.random.seed(seed)
    ref = get_model(name, pretrained=False)
    ref.initialize(mx.init.Uniform(0.5))
    ref(mx.nd.zeros((1, 3, 224, 224)))
    path = pretrained_root(mxnet_home) / f"{name}-0123abcd.params"
    path.parent.mkdir(parents=True, exist_ok=True)
    ref.save_parameters(str(path))
    return path


@pytest.fixture
def imagenet_file():
    """``imagenet_file(mxnet_home, base_network)`` writes a generated weights file."""
    return _write_imagenet_file
