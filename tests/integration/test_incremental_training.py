"""Incremental training: a run seeded from a model.tar.gz starts where the first one ended."""

from __future__ import annotations

import json
import shutil

import pytest

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


def test_second_run_starts_at_the_first_runs_map(learned_model, tmp_path):
    # The first run is the session's learned_model (20 epochs from scratch, mAP > 0.8).
    channels = {c: learned_model.dataset / c for c in CHANNELS}
    seed = tmp_path / "seed"
    seed.mkdir()
    shutil.copyfile(learned_model.tar, seed / "model.tar.gz")
    second = prepare_ml_root(tmp_path / "second", {**channels, "model": seed}, _hp(epochs=2))
    assert run_training(str(second.root)) == 0
    m2 = json.loads((second.output / "metrics.json").read_text())
    assert m2["initial_validation:mAP"] == pytest.approx(learned_model.mAP, abs=0.02)
    assert m2["initial_validation:mAP"] > learned_model.first_epoch_mAP + 0.15
    # The seed counts as the best model so far: the artifact is never worse than it.
    assert m2["validation:mAP"] >= m2["initial_validation:mAP"]
