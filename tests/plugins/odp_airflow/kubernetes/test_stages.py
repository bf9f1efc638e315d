"""The Kubernetes stages' decisions that need no cluster."""

from __future__ import annotations

import json

import pytest

from odp_airflow.failure import StageFailed
from odp_airflow.kubernetes import stages
from pipeline_lib.training.job import read_job


def _inputs(tmp_path, **over) -> dict:
    return {
        "run_root": str(tmp_path / "run"),
        "dag_id": "object_detection_training",
        "run_id": "manual__1",
        "hyperparameters": {"epochs": "1", "max_runtime_seconds": "600"},
        "compute": "local",
        "instance_count": 1,
        **over,
    }


VALIDATION = {
    "class_counts": {"0": {"name": "a"}},
    "counts": {"images": {"train": 8}},
    "label_width": 7,
}
CONVERTED = {
    "channels": {"train": "/data/train", "validation": "/data/validation"},
    "label_width": 7,
}


def test_local_compute_plans_no_pod(tmp_path):
    assert stages.plan_training(_inputs(tmp_path), VALIDATION, CONVERTED) == []
    assert stages.setup_service(_inputs(tmp_path)) is None
    assert stages.teardown_service(_inputs(tmp_path)) is False


def test_several_hosts_need_kubernetes(tmp_path):
    with pytest.raises(StageFailed, match="instance_count'=2 needs compute=kubernetes"):
        stages.plan_training(_inputs(tmp_path, instance_count=2), VALIDATION, CONVERTED)


def test_kubernetes_plans_one_pod_per_host_and_writes_the_job(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_ODP_KUBERNETES", json.dumps({"gpus": 2, "image": "r/odp:1"}))
    inputs = _inputs(tmp_path, compute="kubernetes", instance_count=3)
    pods = stages.plan_training(inputs, VALIDATION, CONVERTED)
    assert [p["hostname"] for p in pods] == ["algo-1", "algo-2", "algo-3"]
    assert [p["chief"] for p in pods] == [True, False, False]
    assert {p["image"] for p in pods} == {"r/odp:1"}
    assert all(p["active_deadline_seconds"] == 600 + 3600 for p in pods)
    json.dumps(pods)  # travels as XCom
    job = read_job(str(tmp_path / "run" / "train" / "job.json"))
    assert job.hosts == ["algo-1", "algo-2", "algo-3"]
    assert job.channels == CONVERTED["channels"] and job.input_format == "recordio"
    assert job.hyperparameters["num_classes"] == "1"


def test_bad_settings_are_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_ODP_KUBERNETES", json.dumps({"gpus": -1}))
    inputs = _inputs(tmp_path, compute="kubernetes")
    with pytest.raises(ValueError, match=r"odp_kubernetes.gpus=-1 is invalid: expected an integer"):
        stages.plan_training(inputs, VALIDATION, CONVERTED)
