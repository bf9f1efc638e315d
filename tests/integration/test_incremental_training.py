"""Incremental training: a run seeded from a model.tar.gz starts where the first one ended."""

from __future__ import annotations

import json

import pytest

from pipeline_lib.artifact import package
from pipeline_lib.synthetic import SynthConfig, generate
from pipeline_lib.training.contract import prepare_ml_root
from pipeline_lib.training.entrypoint import run_training
from pipeline_lib.training.recipes import FROM_SCRATCH_CPU

pytestmark = pytest.mark.integration
CHANNELS = ("train", "validation", "train_annotation", "validation_annotation")


def _hp(epochs: int) -> dict:
    return {
        **FROM_SCRATCH_CPU,
        "num_classes": 2,
        "num_training_samples": 96,
        "base_network": "mobilenet-0.25",
        "use_pretrained_model": 0,
        "epochs": epochs,
        "seed": 1,
        "num_workers": 0,  # one process: the seeded run is repeatable
    }


def test_second_run_starts_at_the_first_runs_map(tmp_path):
    data = tmp_path / "data"
    generate(data, SynthConfig(images=120, classes=2, seed=11, max_objects=2))
    channels = {c: data / c for c in CHANNELS}
    first = prepare_ml_root(tmp_path / "first", channels, _hp(epochs=20))
    assert run_training(str(first.root)) == 0
    m1 = json.loads((first.output / "metrics.json").read_text())
    assert m1["validation:mAP"] > 0.8, m1  # it learned
    fresh_start = m1["epochs"][0]["validation_mAP"]

    seed = tmp_path / "seed"
    seed.mkdir()
    package(first.model, seed / "model.tar.gz")
    second = prepare_ml_root(tmp_path / "second", {**channels, "model": seed}, _hp(epochs=2))
    assert run_training(str(second.root)) == 0
    m2 = json.loads((second.output / "metrics.json").read_text())
    assert m2["initial_validation:mAP"] == pytest.approx(m1["validation:mAP"], abs=0.02)
    assert m2["initial_validation:mAP"] > fresh_start + 0.15
    # The seed counts as the best model so far: the artifact is never worse than it.
    assert m2["validation:mAP"] >= m2["initial_validation:mAP"]
