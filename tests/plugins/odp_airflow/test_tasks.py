"""The DAG's stage functions on real data, without Airflow."""

from __future__ import annotations

import json
import logging
import re

import pytest

from odp_airflow import tasks
from odp_airflow.runs import RunRoot, safe_segment
from pipeline_lib.recordio.reader import RecordIODetection
from pipeline_lib.synthetic import SynthConfig, generate


@pytest.fixture
def dataset(tmp_path):
    generate(tmp_path / "ds", SynthConfig(images=10, classes=2, seed=2))
    return tmp_path / "ds"


def _inputs(dataset, odp_home, **params):
    base = {"dataset_uri": str(dataset), "model_name": "m", "epochs": 3, "base_network": "vgg-16"}
    return tasks.resolve_inputs({**base, **params}, "dag", "manual__2026-01-01T00:00:00+00:00")


def test_run_root_layout(odp_home, dataset):
    inputs = _inputs(dataset, odp_home, hyperparameters={"momentum": 0.8})
    assert inputs["run_root"] == str(
        odp_home.artifact_root / "runs" / "dag" / "manual__2026-01-01T00_00_00_00_00"
    )
    assert inputs["hyperparameters"] == {
        "base_network": "vgg-16",
        "epochs": "3",
        "use_pretrained_model": "0",
        "momentum": "0.8",
    }
    assert RunRoot("s3://b/p", "d", "r:1").task("train") == "s3://b/p/runs/d/r_1/train"
    assert safe_segment("a+b:c") == "a_b_c"


def test_empty_or_missing_dataset_fails_clearly(odp_home, tmp_path):
    with pytest.raises(tasks.StageFailed, match="dataset_uri"):
        _inputs("", odp_home)
    with pytest.raises(tasks.StageFailed, match="not a folder"):
        _inputs(tmp_path / "nope", odp_home)


def test_compute_combinations_are_refused_by_the_first_task(odp_home, dataset):
    with pytest.raises(tasks.StageFailed, match="'instance_count'=2 and 'compute'=local"):
        _inputs(dataset, odp_home, compute="local", instance_count=2)
    with pytest.raises(tasks.StageFailed, match="Param 'compute' must be local or kubernetes"):
        _inputs(dataset, odp_home, compute="slurm")
    assert _inputs(dataset, odp_home, compute="kubernetes", instance_count=3)["instance_count"] == 3


@pytest.mark.parametrize(
    ("params", "words"),
    [  # issue 27: everything checkable without the data is refused by the first task
        ({"artifact_root": "/etc"}, "artifact_root '/etc' is outside the allowed roots"),
        ({"artifact_root": "file:///tmp/x"}, "scheme 'file' is not supported"),
        ({"artifact_root": "s3://../x"}, "is not a valid S3 bucket name"),
        ({"artifact_root": "s3://bucket/a/../b"}, "'..' segment"),
        ({"dataset_uri": "/etc"}, "is not an image+JSON dataset"),
        ({"dataset_uri": "s3://../"}, "is not a valid S3 bucket name"),
        ({"model_name": "a\nb"}, "model name"),
        ({"promotion_margin": "1e9"}, "Param 'promotion_margin'"),
        ({"instance_count": 10**9, "compute": "kubernetes"}, "expected an integer in [1, 64]"),
        ({"hyperparameters": {"epochs": "1e308"}}, "an integer in [1, 10000]"),
        ({"hyperparameters": {"seed": {"a": [1]}}}, "a string value"),
    ],
)
def test_the_first_task_refuses_what_it_can_check(odp_home, dataset, params, words):
    with pytest.raises(tasks.StageFailed, match=re.escape(words)):
        _inputs(dataset, odp_home, **params)


def test_allowed_roots_are_a_setting(odp_home, dataset, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    with pytest.raises(tasks.StageFailed, match="outside the allowed roots"):
        _inputs(dataset, odp_home, artifact_root=str(elsewhere))
    monkeypatch.setenv("ODP_ALLOWED_ROOTS", f"{tmp_path},s3://bucket/odp")
    assert _inputs(dataset, odp_home, artifact_root=str(elsewhere))["artifact_root"] == str(
        elsewhere
    )
    assert _inputs(dataset, odp_home, artifact_root="s3://bucket/odp/team")["run_root"].startswith(
        "s3://bucket/odp/team/runs/"
    )


def test_validate_failure_names_file_and_rule(odp_home, dataset):
    from PIL import Image

    victim = sorted((dataset / "train").glob("*.jpg"))[0]
    Image.open(victim).convert("L").save(victim)
    with pytest.raises(tasks.StageFailed) as err:
        tasks.validate_dataset(_inputs(dataset, odp_home))
    assert victim.name in str(err.value)
    assert "report.json" in str(err.value)


def test_convert_is_cached_by_content(odp_home, dataset, caplog):
    inputs = _inputs(dataset, odp_home)
    validation = tasks.validate_dataset(inputs)
    first = tasks.convert_dataset(inputs, validation)
    assert first["cache_hit"] is False
    train = RecordIODetection(str(first["channels"]["train"]) + "/train.rec")
    assert len(train) == validation["counts"]["images"]["train"]
    classes = json.loads(
        (odp_home.artifact_root / "cache" / "recordio")
        .glob("*/train/class_map.json")
        .__next__()
        .read_text()
    )
    assert classes == {"0": "circle", "1": "square"}
    with caplog.at_level(logging.INFO):
        second = tasks.convert_dataset(inputs, validation)
    assert second["cache_hit"] is True and second["content_hash"] == first["content_hash"]
    assert "dataset unchanged" in caplog.text
    # A changed annotation is a new dataset.
    ann = sorted((dataset / "train_annotation").glob("*.json"))[0]
    data = json.loads(ann.read_text())
    data["annotations"][0]["left"] += 1
    ann.write_text(json.dumps(data))
    assert tasks.convert_dataset(inputs, validation)["cache_hit"] is False


def test_class_id_gap_fails_validate_naming_file_and_rule(odp_home, dataset):
    ann = sorted((dataset / "train_annotation").glob("*.json"))[0]
    data = json.loads(ann.read_text())
    data["annotations"][0]["class_id"] = 5  # ids 0, 1, 5: a gap
    ann.write_text(json.dumps(data))
    with pytest.raises(tasks.StageFailed) as err:
        tasks.validate_dataset(_inputs(dataset, odp_home))
    assert f"class.not_contiguous train_annotation/{ann.name}" in str(err.value)
    assert ".part" not in str(err.value)  # paths name the kept report, not the temp folder
    assert list((odp_home.artifact_root / "runs").glob("*/*/validate/report/report.json"))
