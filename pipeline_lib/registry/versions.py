"""Registered model versions: idempotent registration per job key, aliases.

Every registration is one MLflow run (params, per-epoch metrics with ``step=epoch``, final
metrics, ``metrics.json`` and reports under ``evaluation/``, the training dataset as an
input, the model as a pyfunc ``LoggedModel`` named ``model`` holding the original
``model.tar.gz``: :mod:`pipeline_lib.serving.mlflow_model`) and one registered model version
created from that LoggedModel (``source`` ``models:/<model_id>``). Versions are
labelled with **aliases only** (MLflow's stages are deprecated and never used here):

* ``candidate`` moves to every newly registered version;
* ``champion`` moves only through :func:`~pipeline_lib.registry.promotion.promote_if_better`.

Registration is idempotent: pass an ``idempotency_key`` (the DAG uses ``<dag_id>/<run_id>``)
and a retry returns the version that an earlier attempt created instead of a duplicate.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import storage
from ..artifact import ArtifactError, as_tarball, servable_missing
from ..artifact import check as check_archive
from .runs import (
    IDEMPOTENCY_TAG,
    MODEL_ID_TAG,
    MODEL_SHA_TAG,
    find_run,
    flatten_metrics,
    log_run,
    normalize_key,
    runs_of_job,
    sha256,
)
from .store import ensure_experiment, fluent_store, get_client, quote

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

CANDIDATE_ALIAS = "candidate"
CHAMPION_ALIAS = "champion"


def version_info(client: MlflowClient, mv: ModelVersion, created: bool | None = None) -> dict:
    """The dict callers get for a version, with its run's metrics (``created`` if given)."""
    info: dict[str, Any] = {
        "name": mv.name,
        "version": int(mv.version),
        "run_id": mv.run_id,
        "aliases": sorted(mv.aliases or []),
        "model_uri": f"models:/{mv.name}/{mv.version}",
        "source": mv.source,
        "status": mv.status,
        "creation_timestamp": mv.creation_timestamp,
        "tags": dict(mv.tags or {}),
        "metrics": {},
    }
    if mv.run_id:
        try:
            info["metrics"] = dict(client.get_run(mv.run_id).data.metrics)
        except Exception:  # the run may have been deleted; the version still stands  # noqa: S110  metrics are optional in the answer
            pass
    if created is not None:
        info["created"] = created
    return info


def find_version_by_key(client: MlflowClient, name: str, key: str) -> ModelVersion | None:
    """The first usable version of ``name`` registered with idempotency key ``key``."""
    from mlflow.exceptions import MlflowException

    try:
        versions = client.search_model_versions(
            f"name = {quote(name)} and tags.`{IDEMPOTENCY_TAG}` = {quote(key)}"
        )
    except MlflowException:
        return None  # no such registered model yet
    ready = [v for v in versions if v.status != "FAILED_REGISTRATION"]
    if not ready:
        return None
    first = min(ready, key=lambda v: int(v.version))
    return client.get_model_version(name, first.version)  # search results carry no aliases


MAX_NAME = 256


def check_model_name(name: object) -> str:
    """A registered model name MLflow accepts, checked before anything is logged: printable
    characters (no newline), no leading or trailing space, no '/' or ':', at most
    :data:`MAX_NAME` characters."""
    ok = (
        isinstance(name, str)
        and 0 < len(name) <= MAX_NAME
        and name.isprintable()
        and name == name.strip()
        and not any(c in name for c in "/:")
        and name not in (".", "..")
    )
    if not ok:
        shown = repr(name)[:80]
        raise ValueError(
            f"model name {shown}: expected 1 to {MAX_NAME} printable characters, no '/' or ':', "
            "no leading or trailing space"
        )
    return name


def skipped_metrics(data: Mapping[str, Any]) -> list[str]:
    """Names under a metrics file's ``metrics`` (or its top level) whose values are not
    finite numbers (NaN, infinity, a string, null): they cannot be logged."""
    import math

    body = data.get("metrics") if isinstance(data.get("metrics"), Mapping) else data
    out = []
    for key, value in body.items():
        if isinstance(value, Mapping | list):
            continue
        number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
        if number is None or not math.isfinite(number):
            out.append(str(key))
    return out


def wait_ready(client: MlflowClient, mv: ModelVersion, timeout: float = 300) -> ModelVersion:
    """Wait until ``mv`` leaves PENDING_REGISTRATION; raise unless it is READY."""
    deadline = time.monotonic() + timeout
    while mv.status == "PENDING_REGISTRATION" and time.monotonic() < deadline:
        time.sleep(1)
        mv = client.get_model_version(mv.name, mv.version)
    if mv.status != "READY":
        raise RuntimeError(f"model version {mv.name}/{mv.version} is {mv.status}")
    return mv


def ensure_registered_model(client: MlflowClient, name: str) -> None:
    """Create registered model ``name`` unless it exists (safe against a concurrent task)."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        try:
            client.create_registered_model(
                name, description="SSD object detection model (odp pipeline)"
            )
        except MlflowException:
            client.get_registered_model(name)  # created concurrently; raise if truly missing


def register_model(
    model_dir_or_tar: str | os.PathLike,
    name: str,
    metrics_path: str | os.PathLike | None = None,
    run_name: str | None = None,
    params: Mapping[str, Any] | None = None,
    epoch_metrics: Iterable[Mapping[str, Any]] | None = None,
    tags: Mapping[str, Any] | None = None,
    tracking_uri: str | None = None,
    *,
    metrics: Mapping[str, Any] | None = None,
    idempotency_key: str | None = None,
    experiment: str | None = None,
    description: str | None = None,
    version_tags: Mapping[str, Any] | None = None,
    artifacts: Iterable[str | os.PathLike] = (),
    dataset: Any = None,
    class_names: Mapping[int, str] | None = None,
) -> dict:
    """Log a trained model as an MLflow run and register it as a new version of ``name``.

    Args:
        model_dir_or_tar: ``model.tar.gz`` (local or s3://), or a folder that holds one or
            holds the model files themselves (they are tarred).
        name: registered model name.
        metrics_path: a ``metrics.json`` (e.g. from ``odp evaluate``); its numeric values are
            logged as final metrics and the file itself as an artifact.
        run_name: MLflow run name.
        params: run parameters (hyperparameters, dataset URIs, ...); values are stringified.
        epoch_metrics: one mapping per epoch, e.g. ``{"epoch": 3, "validation_mAP": 0.5}``;
            every numeric value is logged with ``step=epoch``.
        tags: extra run tags (also put on the model version).
        tracking_uri: MLflow tracking URI (default: settings / ``MLFLOW_TRACKING_URI``).
        metrics: final metrics given directly (merged over those from ``metrics_path``).
        idempotency_key: identifies the job that produces the model, the same for every
            retry of it (the DAG uses ``<dag_id>/<run_id>``); defaults to
            ``tags["odp.idempotency_key"]``. When a version with this key exists it is
            returned (``created: False``) and nothing new is logged; a run left by an attempt
            that died before creating the version is reused.
        experiment: experiment name (default ``$ODP_MLFLOW_EXPERIMENT`` or
            ``object-detection``).
        description: model version description.
        version_tags: tags for the model version only (e.g. ``validation_mAP``).
        artifacts: more files for the run's ``model/`` folder (a validation report, plots).
        dataset: an ``mlflow.data`` dataset logged as the run's training input.
        class_names: class id -> name for a model without its own (a SageMaker job's
            archive); they replace the archive's when given.

    Returns:
        ``{"name", "version", "run_id", "aliases", "model_uri", "source", "status",
        "metrics", "tags", "created", "experiment_id"}``; the new version carries the
        ``candidate`` alias.
    """
    check_model_name(name)  # before anything is logged: MLflow refuses it after a run
    tags = {str(k): str(v) for k, v in (tags or {}).items()}
    key = idempotency_key or tags.pop(IDEMPOTENCY_TAG, None)
    key = normalize_key(key) if key else None
    client = get_client(tracking_uri)
    experiment_id = ensure_experiment(client, experiment)

    if key:
        existing = find_version_by_key(client, name, key)
        if existing is not None:
            mv = wait_ready(client, existing)
            if CANDIDATE_ALIAS not in (mv.aliases or []):  # an attempt that died half-way
                newest = newest_version(client, name)
                if newest is not None and int(newest.version) == int(mv.version):
                    client.set_registered_model_alias(name, CANDIDATE_ALIAS, mv.version)
                    mv = client.get_model_version(name, mv.version)
            # a live run of a re-run that found this version
            for run in runs_of_job(client, experiment_id, key):
                if run.info.status == "RUNNING" and run.info.run_id != mv.run_id:
                    client.set_terminated(run.info.run_id, "KILLED")
            info = version_info(client, mv, created=False)
            info["experiment_id"] = experiment_id
            return info

    final_metrics: dict[str, float] = {}
    metrics_text: str | None = None
    if metrics_path is not None:
        with storage.local_file(metrics_path) as local_metrics:
            metrics_text = Path(local_metrics).read_text()
        try:
            parsed = json.loads(metrics_text)
            if not isinstance(parsed, dict):
                raise ValueError(f"a JSON {type(parsed).__name__}, not an object")
        except ValueError as exc:
            raise ValueError(f"{metrics_path}: not a metrics JSON object ({exc})") from None
        except RecursionError:
            raise ValueError(
                f"{metrics_path}: not a metrics JSON object (nested too deeply)"
            ) from None
        skipped = skipped_metrics(parsed)
        if skipped:  # said, not silently dropped
            shown = ", ".join(skipped[:5]) + (
                f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
            )
            print(f"warning: {metrics_path}: not logged (not finite numbers): {shown}",
                  file=sys.stderr)  # fmt: skip
        final_metrics.update(flatten_metrics(parsed))
    if metrics:
        final_metrics.update(flatten_metrics(metrics))

    with tempfile.TemporaryDirectory(prefix="odp-metrics-") as scratch:
        metrics_file: Path | None = None
        if metrics_text is not None:
            metrics_file = Path(scratch) / "metrics.json"
            metrics_file.write_text(metrics_text)
        with as_tarball(model_dir_or_tar) as tar_path:
            # a bomb, a damaged or an unservable archive is refused, never stored
            missing = servable_missing(tar_path, check_archive(tar_path))
            if missing:
                raise ArtifactError(
                    f"{model_dir_or_tar}: the model has no {', '.join(missing)}: a registered "
                    "version is a servable pyfunc (expected a model.tar.gz of odp train or of "
                    "SageMaker's Object Detection)"
                )
            sha = sha256(tar_path)
            found = find_run(client, experiment_id, key) if key else None
            run_id = found[0] if found else None
            if not (found and found[1]):
                run_id = log_run(
                    client,
                    experiment_id,
                    run_id=run_id,
                    tar_path=tar_path,
                    run_name=run_name,
                    params=params,
                    epoch_metrics=epoch_metrics,
                    final_metrics=final_metrics,
                    metrics_file=metrics_file,
                    tags={**tags, **({IDEMPOTENCY_TAG: key} if key else {}), MODEL_SHA_TAG: sha},
                    model_name=name,
                    extra_artifacts=[Path(a) for a in artifacts],
                    dataset=dataset,
                    class_names=class_names,
                )

    ensure_registered_model(client, name)
    model_id = client.get_run(run_id).data.tags[MODEL_ID_TAG]
    version_tags = {**tags, **(version_tags or {}), MODEL_SHA_TAG: sha}
    if key:
        version_tags[IDEMPOTENCY_TAG] = key
    # MLflow's registry finds the LoggedModel through the process-wide tracking store
    with fluent_store(client.tracking_uri):
        mv = client.create_model_version(
            name=name,
            source=f"models:/{model_id}",
            run_id=run_id,
            tags=version_tags,
            description=description,
            model_id=model_id,
        )
    mv = wait_ready(client, mv)
    client.set_registered_model_alias(name, CANDIDATE_ALIAS, mv.version)
    info = version_info(client, client.get_model_version(name, mv.version), created=True)
    info["experiment_id"] = experiment_id
    return info


def newest_version(client: MlflowClient, name: str) -> ModelVersion | None:
    """The highest version of ``name``, or ``None`` when it has none."""
    versions = client.search_model_versions(f"name = {quote(name)}")
    return max(versions, key=lambda v: int(v.version)) if versions else None


# ------------------------------------------------------------------ aliases


def get_version_by_alias(name: str, alias: str, tracking_uri: str | None = None) -> dict | None:
    """Info (as :func:`register_model` returns) of the version ``name@alias``, or ``None``."""
    from mlflow.exceptions import MlflowException

    client = get_client(tracking_uri)
    try:
        mv = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None
    return version_info(client, mv)


def get_champion(name: str, tracking_uri: str | None = None) -> dict | None:
    """The version that holds the ``champion`` alias, with its run metrics; ``None`` if none."""
    return get_version_by_alias(name, CHAMPION_ALIAS, tracking_uri)


def get_candidate(name: str, tracking_uri: str | None = None) -> dict | None:
    """The version that holds the ``candidate`` alias (the newest registration), or ``None``."""
    return get_version_by_alias(name, CANDIDATE_ALIAS, tracking_uri)
