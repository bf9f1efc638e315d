"""MLflow runs of training jobs: one run per job key, live while training, filled at registration.

A job is named by its idempotency key (the DAG uses ``<dag_id>/<run_id>``), stored as the
run tag ``odp.idempotency_key``. :func:`start_run` opens the job's *live* run, which
training logs into as it goes; registration fills the same run with parameters, final
metrics and the model artifacts (:func:`log_run`), or reuses a finished run that an attempt
left behind (:func:`find_run`).
"""

from __future__ import annotations

import hashlib
import math
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .store import ensure_experiment, fluent_store, get_client, quote

if TYPE_CHECKING:
    from mlflow import MlflowClient

IDEMPOTENCY_TAG = "odp.idempotency_key"
LIVE_TAG = "odp.live_run"  # a run opened by start_run: metrics arrive while the job works
MODEL_SHA_TAG = "odp.model_sha256"
MODEL_ID_TAG = "odp.model_id"  # the run's pyfunc (MLflow LoggedModel), set once it is logged
MODEL_ARTIFACT_PATH = "model"  # the run's pyfunc (LoggedModel name): runs:/<id>/model
REPORTS_ARTIFACT_PATH = "evaluation"  # metrics.json, validation report, plots

_MAX_PARAM_VALUE = 6000
_METRIC_KEY_BAD = re.compile(r"[^A-Za-z0-9_\-. /]")


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def normalize_key(key: str) -> str:
    """Idempotency keys go into filter strings; keys with quotes are replaced by a hash."""
    if "'" in key or "\\" in key or len(key) > 250:
        return "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    return key


def _metric_key(key: str) -> str:
    return _METRIC_KEY_BAD.sub("_", str(key))


def _finite_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def flatten_metrics(data: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a (nested) metrics mapping, keys joined with ``/``.

    ``{"metrics": {"mAP": 0.5, "per_class_AP": {"circle": 0.7}}}`` becomes
    ``{"mAP": 0.5, "per_class_AP/circle": 0.7}``: a top-level ``metrics`` key is unwrapped,
    strings, lists, booleans and non-finite values are skipped.
    """
    if not prefix and isinstance(data.get("metrics"), Mapping):
        data = data["metrics"]
    out: dict[str, float] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_metrics(value, prefix=f"{name}/"))
        elif (number := _finite_number(value)) is not None:
            out[_metric_key(name)] = number
    return out


def _chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def runs_of_job(client: MlflowClient, experiment_id: str, key: str) -> list:
    """Runs tagged with idempotency key ``key``, newest first."""
    return client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{IDEMPOTENCY_TAG}` = {quote(key)}",
        order_by=["attributes.start_time DESC"],
    )


def find_run(client: MlflowClient, experiment_id: str, key: str) -> tuple[str, bool] | None:
    """A run of job ``key`` to finish registering: ``(run_id, True)`` for a finished run that
    holds the model (an attempt died before creating the version), ``(run_id, False)`` for
    the live run :func:`start_run` opened. Runs left by dead attempts are marked KILLED."""
    found: tuple[str, bool] | None = None
    for run in runs_of_job(client, experiment_id, key):
        if found is not None:
            if run.info.status == "RUNNING":
                client.set_terminated(run.info.run_id, "KILLED")
        elif run.info.status == "FINISHED":
            if run.data.tags.get(MODEL_ID_TAG):
                found = (run.info.run_id, True)
        elif run.info.status == "RUNNING":
            if run.data.tags.get(LIVE_TAG) == "true":
                found = (run.info.run_id, False)
            else:  # a registration attempt that died half-way
                client.set_terminated(run.info.run_id, "KILLED")
    return found


def log_pyfunc(
    client: MlflowClient,
    run_id: str,
    tar_path: Path,
    class_names: Mapping[int, str] | None = None,
) -> str:
    """Log ``tar_path`` as the run's pyfunc (:mod:`pipeline_lib.serving.mlflow_model`);
    returns the LoggedModel's id. MLflow's ``log_model`` is fluent-only: the run is made
    active against this client's store for the call (:func:`.store.fluent_store`)."""
    import mlflow

    from ..serving.mlflow_model import log_detector

    with fluent_store(client.tracking_uri):
        with mlflow.start_run(run_id=run_id, nested=mlflow.active_run() is not None):
            return log_detector(
                tar_path, name=MODEL_ARTIFACT_PATH, class_names=class_names
            ).model_id


def start_run(
    idempotency_key: str,
    *,
    run_name: str | None = None,
    tags: Mapping[str, Any] | None = None,
    experiment: str | None = None,
    tracking_uri: str | None = None,
) -> str:
    """Open (or, for a retry, reopen) the MLflow run of job ``idempotency_key`` so that
    training can log into it as it goes (``odp train`` with ``ODP_MLFLOW_RUN_ID``).
    :func:`~pipeline_lib.registry.versions.register_model` with the same key later completes
    this run with the model."""
    key = normalize_key(idempotency_key)
    client = get_client(tracking_uri)
    experiment_id = ensure_experiment(client, experiment)
    for run in runs_of_job(client, experiment_id, key):
        if run.info.status == "RUNNING" and run.data.tags.get(LIVE_TAG) == "true":
            return run.info.run_id
    run_tags = {str(k): str(v) for k, v in (tags or {}).items()}
    run = client.create_run(
        experiment_id, run_name=run_name, tags={**run_tags, IDEMPOTENCY_TAG: key, LIVE_TAG: "true"}
    )
    return run.info.run_id


def log_run(
    client: MlflowClient,
    experiment_id: str,
    *,
    run_id: str | None,
    tar_path: Path,
    run_name: str | None,
    params: Mapping[str, Any] | None,
    epoch_metrics: Iterable[Mapping[str, Any]] | None,
    final_metrics: Mapping[str, float],
    metrics_file: Path | None,
    tags: Mapping[str, str],
    model_name: str,
    extra_artifacts: Iterable[Path] = (),
    dataset: Any = None,
    class_names: Mapping[int, str] | None = None,
) -> str:
    """Fill and finish a run: a new one, or the live run ``run_id`` (whose per-epoch
    metrics arrived during training). The model is logged as a pyfunc (its id in the run
    tag ``odp.model_id``); ``evaluation/`` holds ``metrics.json`` and ``extra_artifacts``;
    ``dataset`` (``mlflow.data``) is the training input. Returns the run's id; the run is
    marked FAILED on error."""
    from mlflow.entities import Metric, Param, RunTag

    run_tags = {**tags, "odp.registered_model_name": model_name}
    if run_id is None:
        run_id = client.create_run(experiment_id, run_name=run_name, tags=run_tags).info.run_id
    else:
        client.log_batch(run_id, tags=[RunTag(k, v) for k, v in run_tags.items()])
        if "validation_mAP" in client.get_run(run_id).data.metrics:
            epoch_metrics = None  # already logged, step by step, while training
    try:
        now = int(time.time() * 1000)
        param_list = [
            Param(str(k)[:250], str(v)[:_MAX_PARAM_VALUE]) for k, v in (params or {}).items()
        ]
        for chunk in _chunks(param_list, 100):
            client.log_batch(run_id, params=chunk)

        metric_list: list[Metric] = []
        for i, row in enumerate(epoch_metrics or []):
            step = int(row.get("epoch", i))
            for k, v in flatten_metrics({k: v for k, v in row.items() if k != "epoch"}).items():
                metric_list.append(Metric(k, v, now, step))
        metric_list.extend(Metric(k, v, now, 0) for k, v in final_metrics.items())
        for chunk in _chunks(metric_list, 1000):
            client.log_batch(run_id, metrics=chunk)

        with tempfile.TemporaryDirectory(prefix="odp-register-") as tmp:
            folder = Path(tmp) / REPORTS_ARTIFACT_PATH
            folder.mkdir()
            if metrics_file is not None:
                shutil.copyfile(metrics_file, folder / "metrics.json")
            for path in extra_artifacts or ():
                shutil.copyfile(path, folder / Path(path).name)
            if any(folder.iterdir()):
                client.log_artifacts(run_id, str(folder), REPORTS_ARTIFACT_PATH)
        if dataset is not None:
            from mlflow.entities import DatasetInput, InputTag

            context = InputTag("mlflow.data.context", "training")
            client.log_inputs(run_id, [DatasetInput(dataset._to_mlflow_entity(), [context])])
        model_id = log_pyfunc(client, run_id, tar_path, class_names)
        client.set_tag(run_id, MODEL_ID_TAG, model_id)
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return run_id
