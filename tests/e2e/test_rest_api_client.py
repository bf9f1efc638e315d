"""The REST API as a client uses it, against the real local Airflow (API server, scheduler,
LocalExecutor): a token from ``POST /auth/token``, unpause, trigger a training run with a
conf, then post an asset event for the training-data Asset (its integer id looked up first)
and watch ``object_detection_retraining`` train from the champion and register a new
candidate."""

from __future__ import annotations

import time

import pytest

from pipeline_lib.input_hash import input_content_hash
from pipeline_lib.synthetic import SynthConfig, generate

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

TRAINING, RETRAINING = "object_detection_training", "object_detection_retraining"
MODEL = "object-detection"  # the retraining DAG's default model_name
RUN_TIMEOUT = 900  # seconds for one tiny training run on a busy 2-core machine


def _wait_for_run(stack, token, dag_id, pick, what):
    deadline = time.monotonic() + RUN_TIMEOUT
    while True:
        runs = stack.api("GET", f"/api/v2/dags/{dag_id}/dagRuns?limit=50", token=token)
        run = pick(runs["dag_runs"])
        if run and run["state"] in ("success", "failed"):
            return run
        assert time.monotonic() < deadline, f"{what}: {run}"
        time.sleep(3)


def _task_states(stack, token, dag_id, run_id) -> dict[str, str]:
    tis = stack.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", token=token)
    return {ti["task_id"]: ti["state"] for ti in tis["task_instances"]}


def test_trigger_then_asset_event_retrains_from_the_champion(airflow_stack, tmp_path):
    stack = airflow_stack
    from mlflow.tracking import MlflowClient

    token = stack.token()
    for dag_id in (TRAINING, RETRAINING):
        stack.wait_for_dag(dag_id)
        dag = stack.api("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False}, token)
        assert dag["is_paused"] is False

    conf = {
        "dataset_uri": str(stack.dataset),
        "model_name": MODEL,
        "epochs": 1,
        "mini_batch_size": 4,
        "hyperparameters": {"num_workers": "0"},
    }
    created = stack.api(
        "POST", f"/api/v2/dags/{TRAINING}/dagRuns", {"logical_date": None, "conf": conf}, token
    )
    assert created["conf"]["epochs"] == 1
    run = _wait_for_run(
        stack,
        token,
        TRAINING,
        lambda runs: next((r for r in runs if r["dag_run_id"] == created["dag_run_id"]), None),
        "the triggered training run",
    )
    assert run["state"] == "success", _task_states(stack, token, TRAINING, run["dag_run_id"])
    client = MlflowClient(stack.env["MLFLOW_TRACKING_URI"])
    champion = client.get_model_version_by_alias(MODEL, "champion")

    # New labelled data lands: the producer posts an event for the training-data Asset.
    new_data = tmp_path / "new-data"
    # The asset-triggered run uses the DAG's defaults: mini_batch_size 16 needs 16 images.
    generate(new_data, SynthConfig(images=24, classes=2, seed=22, min_size=96, max_size=128))
    digest = input_content_hash("image+json", dataset_uri=str(new_data))
    assets = stack.api("GET", "/api/v2/assets?name_pattern=odp-training-data", token=token)
    (asset,) = [a for a in assets["assets"] if a["name"] == "odp-training-data"]
    assert isinstance(asset["id"], int)
    event = stack.api(
        "POST",
        "/api/v2/assets/events",
        {"asset_id": asset["id"], "extra": {"uri": str(new_data), "content_hash": digest}},
        token,
    )
    assert event["asset_id"] == asset["id"]

    run = _wait_for_run(
        stack,
        token,
        RETRAINING,
        lambda runs: next((r for r in runs if r["run_type"] == "asset_triggered"), None),
        "the asset-triggered retraining run",
    )
    # unpausing waited for the next cron time: the event's run is the only one
    runs = stack.api("GET", f"/api/v2/dags/{RETRAINING}/dagRuns", token=token)["dag_runs"]
    assert [r["run_type"] for r in runs] == ["asset_triggered"]
    states = _task_states(stack, token, RETRAINING, run["dag_run_id"])
    assert run["state"] == "success", states
    plan = stack.api(
        "GET",
        f"/api/v2/dags/{RETRAINING}/dagRuns/{run['dag_run_id']}/taskInstances/plan_retraining"
        "/xcomEntries/return_value",
        token=token,
    )["value"]
    assert plan["base_model"] == f"models:/{MODEL}@champion", plan
    assert plan["dataset_uri"] == str(new_data) and plan["content_hash"] == digest

    candidate = client.get_model_version_by_alias(MODEL, "candidate")
    assert int(candidate.version) == int(champion.version) + 1
    assert candidate.tags["odp.content_hash"] == digest
    assert candidate.tags["odp.dataset_uri"] == str(new_data)
