"""The tuning job in MLflow: a parent run for the study, a nested run per trial.

Trial runs are opened before training, so ``odp train`` logs each epoch's metrics into them
as it goes (``ODP_MLFLOW_RUN_ID``); their state tag says complete, pruned or failed. The
parent holds the best trial and the study's plots. Runs are found again by their
idempotency key, so a retried trial or a resumed study reuses them.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..registry.runs import IDEMPOTENCY_TAG, LIVE_TAG, flatten_metrics, runs_of_job
from ..registry.store import ensure_experiment, get_client

STUDY_TAG = "odp.tuning.study"
TRIAL_TAG = "odp.tuning.trial"
STATE_TAG = "odp.tuning.state"
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own nesting tag


def _key(study: str, number: int | None = None) -> str:
    return f"tuning/{study}" if number is None else f"tuning/{study}/trial-{number}"


def _open(key: str, run_name: str, tags: Mapping[str, str]) -> tuple[str, bool]:
    """The run of ``key``, reopened if it exists, else created (then True)."""
    client = get_client()
    experiment_id = ensure_experiment(client)
    runs = runs_of_job(client, experiment_id, key)
    if runs:
        run_id = runs[0].info.run_id
        if runs[0].info.status != "RUNNING":
            client.update_run(run_id, status="RUNNING")
        return run_id, False
    run = client.create_run(
        experiment_id, run_name=run_name, tags={**tags, IDEMPOTENCY_TAG: key, LIVE_TAG: "true"}
    )
    return run.info.run_id, True


def parent_run(study: str, settings: Mapping[str, str] | None = None) -> str:
    """The tuning job's run (the same one when the study is resumed). ``settings`` become
    tags ``odp.tuning.<name>``: a resumed job may change some (the number of trials)."""
    from mlflow.entities import RunTag

    run_id, _ = _open(_key(study), f"tune {study}", {STUDY_TAG: study})
    tags = [RunTag(f"odp.tuning.{k}", str(v)[:5000]) for k, v in (settings or {}).items()]
    if tags:
        get_client().log_batch(run_id, tags=tags)
    return run_id


def trial_run(parent_id: str, study: str, number: int, hyperparameters: Mapping[str, str]) -> str:
    """Trial ``number``'s nested run, with its hyperparameters as params."""
    from mlflow.entities import Param

    run_id, created = _open(
        _key(study, number),
        f"trial-{number}",
        {PARENT_TAG: parent_id, STUDY_TAG: study, TRIAL_TAG: str(number)},
    )
    if created:  # a retry's run has them already (and a trial's values never change)
        params = [Param(k, str(v)) for k, v in hyperparameters.items()]
        get_client().log_batch(run_id, params=params)
    return run_id


def end_trial_run(
    run_id: str, state: str, value: float | None, epochs: Iterable[Mapping[str, Any]] = ()
) -> None:
    """Close a trial's run: its state, best mAP, and the per-epoch metrics when training
    could not log them live."""
    from mlflow.entities import Metric, RunTag

    client, now = get_client(), int(time.time() * 1000)
    metrics: list[Metric] = []
    if "validation_mAP" not in client.get_run(run_id).data.metrics:
        for i, row in enumerate(epochs):
            step = int(row.get("epoch", i))
            values = flatten_metrics({k: v for k, v in row.items() if k != "epoch"})
            metrics += [Metric(k, v, now, step) for k, v in values.items()]
    if value is not None:
        metrics.append(Metric("best_validation_mAP", float(value), now, 0))
    client.log_batch(run_id, metrics=metrics, tags=[RunTag(STATE_TAG, state.lower())])
    client.set_terminated(run_id, "FAILED" if state == "FAIL" else "FINISHED")


def finish_parent(
    run_id: str, summary: Mapping[str, Any], plots: Iterable[Path], running: bool = False
) -> None:
    """Best trial, counts and plots on the parent run; closed unless trials still run."""
    from mlflow.entities import Metric, RunTag

    client, now = get_client(), int(time.time() * 1000)
    metrics = [Metric(k, float(v), now, 0) for k, v in summary.get("counts", {}).items()]
    tags = []
    best = summary.get("best")
    if best:
        metrics.append(Metric("best_validation_mAP", float(best["value"]), now, 0))
        tags.append(RunTag("odp.tuning.best_trial", str(best["number"])))
        tags += [RunTag(f"best.{k}", str(v)) for k, v in best["hyperparameters"].items()]
    client.log_batch(run_id, metrics=metrics, tags=tags)
    for plot in plots:
        client.log_artifact(run_id, str(plot), "tuning")
    with tempfile.TemporaryDirectory(prefix="odp-tune-") as tmp:
        path = Path(tmp) / "tuning.json"
        path.write_text(json.dumps(summary, indent=1, default=str))
        client.log_artifact(run_id, str(path), "tuning")
    if not running:
        client.set_terminated(run_id, "FINISHED")


def trial_env(run_id: str) -> dict[str, str]:
    """The environment that makes ``odp train`` log its epochs into the trial's run."""
    from ..registry.store import resolve_tracking_uri

    return {"ODP_MLFLOW_RUN_ID": run_id, "MLFLOW_TRACKING_URI": resolve_tracking_uri()}
