"""pipeline_lib.registry.runs: metric flattening, live runs, runs left by dead attempts."""

from __future__ import annotations

from pathlib import Path

import pytest
from registry_testdata import make_model_dir

from pipeline_lib import registry


def test_flatten_metrics_unwraps_and_skips_non_numbers() -> None:
    flat = registry.flatten_metrics(
        {
            "metrics": {
                "mAP": 0.5,
                "AP": {"circle": 0.25, "sq uare!": 1},
                "n": True,
                "name": "x",
                "nan": float("nan"),
                "curve": [1, 2],
            }
        }
    )
    assert flat == {"mAP": 0.5, "AP/circle": 0.25, "AP/sq uare_": 1.0}


def test_retry_after_crash_reuses_finished_run(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    model_dir = make_model_dir(tmp_path / "model")
    original = MlflowClient.create_model_version
    calls = {"n": 0}

    def crash_once(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("worker died")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "create_model_version", crash_once)
    with pytest.raises(RuntimeError, match="worker died"):
        registry.register_model(model_dir, "reg-crash", metrics={"mAP": 0.1}, idempotency_key="k1")
    info = registry.register_model(
        model_dir, "reg-crash", metrics={"mAP": 0.1}, idempotency_key="k1"
    )
    assert info["created"] is True and info["version"] == 1

    client = registry.get_client()
    exp = client.get_experiment_by_name(registry.DEFAULT_EXPERIMENT)
    runs = client.search_runs([exp.experiment_id], f"tags.`{registry.IDEMPOTENCY_TAG}` = 'k1'")
    assert [r.info.run_id for r in runs] == [info["run_id"]]


def test_live_run_from_training_is_completed_by_registration(store: Path, tmp_path: Path) -> None:
    """start_run opens the run training logs into; a retry gets it back; register_model with
    the same key fills that run (no second run, no duplicated epoch metrics)."""
    from mlflow.entities import Metric

    key = "object_detection_training/live__1"
    run_id = registry.start_run(key, run_name="live", tags={"odp.dataset_uri": "/data"})
    assert registry.start_run(key) == run_id  # the train task retried
    client = registry.get_client()
    client.log_batch(
        run_id, metrics=[Metric("validation_mAP", v, 0, e) for e, v in [(0, 0.2), (1, 0.4)]]
    )
    epochs = [{"epoch": 0, "validation_mAP": 0.2}, {"epoch": 1, "validation_mAP": 0.4}]
    info = registry.register_model(
        make_model_dir(tmp_path / "model"),
        "reg-live",
        metrics={"mAP": 0.4},
        epoch_metrics=epochs,
        idempotency_key=key,
        params={"epochs": "2"},
    )
    assert info["created"] is True and info["run_id"] == run_id
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.params["epochs"] == "2"
    assert run.data.tags["odp.dataset_uri"] == "/data" and run.data.metrics["mAP"] == 0.4
    history = client.get_metric_history(run_id, "validation_mAP")
    assert [(m.step, m.value) for m in history] == [(0, 0.2), (1, 0.4)]

    # the whole DAG run again: the version exists, and the new live run does not linger
    rerun = registry.start_run(key)
    assert rerun != run_id
    again = registry.register_model(
        make_model_dir(tmp_path / "model"), "reg-live", metrics={"mAP": 0.4}, idempotency_key=key
    )
    assert again["created"] is False and again["run_id"] == run_id
    assert client.get_run(rerun).info.status == "KILLED"
