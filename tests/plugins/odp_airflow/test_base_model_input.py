"""The ``base_model`` Param in resolve_inputs: resolved through the registry, checked
against the job before validation, staged for the training ``model`` channel."""

from __future__ import annotations

from pathlib import Path

import pytest

from odp_airflow import tasks
from odp_airflow.failure import StageFailed
from pipeline_lib import registry
from pipeline_lib.registry.base_model import BaseModel, BaseModelError, check_base_model

RUN = "manual__2026-01-01T00:00:00+00:00"


def _resolve(dataset: Path, **params):
    base = {"dataset_uri": str(dataset), "model_name": "m", "base_network": "mobilenet-0.25"}
    return tasks.resolve_inputs({**base, **params}, "dag", RUN)


@pytest.fixture
def champion(odp_home, tiny_model: Path) -> dict:
    info = registry.register_model(tiny_model, "seed", metrics={"mAP": 0.25})
    registry.promote_if_better("seed", info["version"])
    return info


def test_empty_base_model_trains_from_scratch(odp_home, training_data: Path) -> None:
    assert _resolve(training_data)["base_model"] is None
    assert _resolve(training_data, base_model="  ")["base_model"] is None


def test_alias_version_and_tarball_resolve_and_are_staged(
    odp_home, training_data: Path, tiny_model: Path, champion: dict
) -> None:
    inputs = _resolve(training_data, base_model="models:/seed@champion")
    base = inputs["base_model"]
    assert base["lineage"] == f"models:/seed@champion (seed/{champion['version']})"
    assert (base["base_network"], base["num_classes"]) == ("mobilenet-0.25", 2)
    assert base["metrics"]["mAP"] == 0.25
    staged = Path(base["model_uri"])
    assert staged == Path(inputs["run_root"], "resolve_inputs", "base_model", "model.tar.gz")
    assert staged.read_bytes() == tiny_model.read_bytes()

    by_version = _resolve(training_data, base_model="models:/seed/1")["base_model"]
    assert by_version["version"] == 1
    by_file = _resolve(training_data, base_model=str(tiny_model))["base_model"]
    assert by_file["lineage"] == str(tiny_model) and by_file["version"] is None


def test_mismatches_fail_naming_both_sides(odp_home, training_data: Path, champion: dict) -> None:
    with pytest.raises(
        StageFailed, match=r"mobilenet-0.25 model but this run's base_network is vgg-16"
    ):
        _resolve(training_data, base_model="models:/seed@champion", base_network="vgg-16")
    with pytest.raises(StageFailed, match=r"num_classes=2 but this run's data has num_classes=3"):
        _resolve(
            training_data, base_model="models:/seed@champion", hyperparameters={"num_classes": 3}
        )
    with pytest.raises(StageFailed, match="not in the registry"):
        _resolve(training_data, base_model="models:/seed@nope")
    with pytest.raises(StageFailed, match="expected models:/NAME@ALIAS"):
        _resolve(training_data, base_model="runs:/abc/model")
    with pytest.raises(StageFailed, match="no model at"):
        _resolve(training_data, base_model=str(odp_home.home / "missing.tar.gz"))


def test_class_map_rule() -> None:
    base = BaseModel("models:/m@champion", "/x", "vgg-16", 2, {0: "cat", 1: "dog"}, "m", 3)
    check_base_model(base, base_network="vgg-16", classes={0: "cat", 1: "dog"})
    check_base_model(base, base_network="vgg-16", classes=None)  # unknown yet
    with pytest.raises(
        BaseModelError, match=r"class map \{0: 'cat', 1: 'dog'\} but the dataset's is"
    ):
        check_base_model(base, base_network="vgg-16", classes={0: "cat", 1: "cow"})
    check_base_model(
        base, base_network="vgg-16", classes={0: "cat", 1: "cow"}, allow_class_change=True
    )
    with pytest.raises(BaseModelError, match="num_classes=2 .* num_classes=3"):
        check_base_model(
            base, base_network="vgg-16", classes={0: "a", 1: "b", 2: "c"}, allow_class_change=True
        )
