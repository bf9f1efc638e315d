"""MLflow tracking and model registry: one run per trained model, versions, aliases.

Every registration is one MLflow run (params, per-epoch metrics with ``step=epoch``, final
metrics, the ``model.tar.gz`` plus ``class_map.json``/``metrics.json`` under the artifact
folder ``model/``) and one registered model version created from that folder. Versions are
labelled with **aliases only** (MLflow's stages are deprecated and never used here):

* ``candidate`` moves to every newly registered version;
* ``champion`` moves only through :func:`promote_if_better`.

Registration is idempotent: pass an ``idempotency_key`` (the DAG uses ``<dag_id>/<run_id>``)
and a retry returns the version that an earlier attempt created instead of a duplicate.

The tracking URI defaults to :mod:`pipeline_lib.settings` (a local SQLite store whose
experiments keep their artifacts in ``$ODP_HOME/mlflow/artifacts``, never ``./mlruns`` in the
current directory); ``MLFLOW_TRACKING_URI`` or the ``tracking_uri`` argument point it at a
real MLflow server instead.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import tarfile
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from . import storage
from .settings import load_settings

if TYPE_CHECKING:  # mlflow costs seconds to import; only the functions below import it
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

CANDIDATE_ALIAS = "candidate"
CHAMPION_ALIAS = "champion"
IDEMPOTENCY_TAG = "odp.idempotency_key"
LIVE_TAG = "odp.live_run"  # a run opened by start_run: metrics arrive while the job works
MODEL_SHA_TAG = "odp.model_sha256"
MODEL_ARTIFACT_PATH = "model"
MODEL_FILE = "model.tar.gz"
DEFAULT_EXPERIMENT = "object-detection"
EXPERIMENT_ENV = "ODP_MLFLOW_EXPERIMENT"

_SIDE_FILES = ("class_map.json", "hyperparams.json")
_MAX_PARAM_VALUE = 6000
_METRIC_KEY_BAD = re.compile(r"[^A-Za-z0-9_\-. /]")


# ------------------------------------------------------------------ configuration


def resolve_tracking_uri(tracking_uri: str | None = None) -> str:
    """The tracking URI to use: the argument, else ``MLFLOW_TRACKING_URI``, else local SQLite."""
    return tracking_uri or load_settings().mlflow_tracking_uri


def _is_db_uri(uri: str) -> bool:
    scheme = urlparse(uri).scheme
    return scheme.split("+")[0] in {"sqlite", "postgresql", "mysql", "mssql"}


def _artifact_root_uri() -> str:
    """Artifact root for stores used without a server: a local folder, or e.g. ``s3://...``."""
    root = load_settings().mlflow_artifacts
    if "://" in root:
        return root.rstrip("/")
    return Path(root).resolve().as_uri()


def _init_sqlite_store(uri: str) -> None:
    """Create a new SQLite store with its *Default* experiment under the artifact root.

    Without this, MLflow's client would create the store with ``./mlruns`` (relative to the
    current directory) as the default artifact root.
    """
    db_path = Path(uri[len("sqlite:///") :]) if uri.startswith("sqlite:///") else None
    if db_path is None or str(db_path) in ("", ":memory:") or db_path.exists():
        return
    db_path.parent.mkdir(parents=True, exist_ok=True)
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    root = _artifact_root_uri()
    if root.startswith("file:"):
        Path(urlparse(root).path).mkdir(parents=True, exist_ok=True)
    SqlAlchemyStore(uri, root)


def get_client(tracking_uri: str | None = None) -> MlflowClient:
    """An ``MlflowClient`` for the tracking and registry store (created if it is local)."""
    from mlflow import MlflowClient

    uri = resolve_tracking_uri(tracking_uri)
    if uri.startswith("sqlite:"):
        _init_sqlite_store(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def ensure_experiment(client: MlflowClient, name: str | None = None) -> str:
    """Id of experiment ``name`` (default ``$ODP_MLFLOW_EXPERIMENT`` or ``object-detection``).

    With a database store used directly (no server), a new experiment gets its artifact
    location under the local artifact folder; with a server, the server decides.
    """
    name = name or os.environ.get(EXPERIMENT_ENV) or DEFAULT_EXPERIMENT
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    location = None
    if _is_db_uri(client.tracking_uri):
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "experiment"
        location = f"{_artifact_root_uri()}/{safe}"
    from mlflow.exceptions import MlflowException

    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:  # created concurrently by another task
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


# ------------------------------------------------------------------ helpers


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _quote(value: str) -> str:
    """A value safe inside a single-quoted MLflow filter string."""
    if "'" in value or "\\" in value:
        raise ValueError(f"quotes are not allowed in registry filter values: {value!r}")
    return f"'{value}'"


def _normalize_key(key: str) -> str:
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


@contextmanager
def _local_model(model_dir_or_tar: str | os.PathLike) -> Iterator[Path]:
    """A local ``model.tar.gz`` for a tarball, a folder holding one, or a folder of model files."""
    uri = str(model_dir_or_tar)
    if storage.is_s3(uri):
        if uri.endswith(".tar.gz"):
            with storage.local_file(uri) as path:
                yield path
            return
        with storage.local_dir(uri) as folder, _local_model(folder) as path:
            yield path
        return
    path = Path(uri)
    if path.is_file():
        yield path
        return
    if not path.is_dir():
        raise FileNotFoundError(f"no model at {uri}")
    if (path / MODEL_FILE).is_file():
        yield path / MODEL_FILE
        return
    files = sorted(p for p in path.rglob("*") if p.is_file())
    if not files:
        raise FileNotFoundError(f"model folder {uri} is empty")
    with tempfile.TemporaryDirectory(prefix="odp-model-") as tmp:
        tar_path = Path(tmp) / MODEL_FILE
        with tarfile.open(tar_path, "w:gz") as tar:
            for file in files:
                tar.add(file, arcname=file.relative_to(path).as_posix())
        yield tar_path


def _extract_side_files(tar_path: Path, dest: Path) -> list[Path]:
    """Copy ``class_map.json``/``hyperparams.json`` out of the tarball (any folder depth)."""
    found: list[Path] = []
    try:
        with tarfile.open(tar_path, "r:*") as tar:
            for member in tar.getmembers():
                name = Path(member.name).name
                if member.isfile() and name in _SIDE_FILES and not (dest / name).exists():
                    fh = tar.extractfile(member)
                    if fh is not None:
                        (dest / name).write_bytes(fh.read())
                        found.append(dest / name)
    except tarfile.TarError as exc:
        raise ValueError(f"{tar_path} is not a readable model.tar.gz: {exc}") from exc
    return found


def _version_info(client: MlflowClient, mv: ModelVersion, created: bool | None = None) -> dict:
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
        except Exception:  # the run may have been deleted; the version still stands
            pass
    if created is not None:
        info["created"] = created
    return info


def _find_version_by_key(client: MlflowClient, name: str, key: str) -> ModelVersion | None:
    from mlflow.exceptions import MlflowException

    try:
        versions = client.search_model_versions(
            f"name = {_quote(name)} and tags.`{IDEMPOTENCY_TAG}` = {_quote(key)}"
        )
    except MlflowException:
        return None  # no such registered model yet
    ready = [v for v in versions if v.status != "FAILED_REGISTRATION"]
    if not ready:
        return None
    first = min(ready, key=lambda v: int(v.version))
    return client.get_model_version(name, first.version)  # search results carry no aliases


def _runs_of_job(client: MlflowClient, experiment_id: str, key: str) -> list:
    """Runs tagged with idempotency key ``key``, newest first."""
    return client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{IDEMPOTENCY_TAG}` = {_quote(key)}",
        order_by=["attributes.start_time DESC"],
    )


def _find_run(client: MlflowClient, experiment_id: str, key: str) -> tuple[str, bool] | None:
    """A run of job ``key`` to finish registering: ``(run_id, True)`` for a finished run that
    holds the model (an attempt died before creating the version), ``(run_id, False)`` for
    the live run :func:`start_run` opened. Runs left by dead attempts are marked KILLED."""
    found: tuple[str, bool] | None = None
    for run in _runs_of_job(client, experiment_id, key):
        if found is not None:
            if run.info.status == "RUNNING":
                client.set_terminated(run.info.run_id, "KILLED")
        elif run.info.status == "FINISHED":
            names = {a.path for a in client.list_artifacts(run.info.run_id, MODEL_ARTIFACT_PATH)}
            if f"{MODEL_ARTIFACT_PATH}/{MODEL_FILE}" in names:
                found = (run.info.run_id, True)
        elif run.info.status == "RUNNING":
            if run.data.tags.get(LIVE_TAG) == "true":
                found = (run.info.run_id, False)
            else:  # a registration attempt that died half-way
                client.set_terminated(run.info.run_id, "KILLED")
    return found


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
    :func:`register_model` with the same key later completes this run with the model."""
    key = _normalize_key(idempotency_key)
    client = get_client(tracking_uri)
    experiment_id = ensure_experiment(client, experiment)
    for run in _runs_of_job(client, experiment_id, key):
        if run.info.status == "RUNNING" and run.data.tags.get(LIVE_TAG) == "true":
            return run.info.run_id
    run_tags = {str(k): str(v) for k, v in (tags or {}).items()}
    run = client.create_run(
        experiment_id, run_name=run_name, tags={**run_tags, IDEMPOTENCY_TAG: key, LIVE_TAG: "true"}
    )
    return run.info.run_id


def _wait_ready(client: MlflowClient, mv: ModelVersion, timeout: float = 300) -> ModelVersion:
    deadline = time.monotonic() + timeout
    while mv.status == "PENDING_REGISTRATION" and time.monotonic() < deadline:
        time.sleep(1)
        mv = client.get_model_version(mv.name, mv.version)
    if mv.status != "READY":
        raise RuntimeError(f"model version {mv.name}/{mv.version} is {mv.status}")
    return mv


def _ensure_registered_model(client: MlflowClient, name: str) -> None:
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


# ------------------------------------------------------------------ registration


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

    Returns:
        ``{"name", "version", "run_id", "aliases", "model_uri", "source", "status",
        "metrics", "tags", "created", "experiment_id"}``; the new version carries the
        ``candidate`` alias.
    """
    tags = {str(k): str(v) for k, v in (tags or {}).items()}
    key = idempotency_key or tags.pop(IDEMPOTENCY_TAG, None)
    key = _normalize_key(key) if key else None
    client = get_client(tracking_uri)
    experiment_id = ensure_experiment(client, experiment)

    if key:
        existing = _find_version_by_key(client, name, key)
        if existing is not None:
            mv = _wait_ready(client, existing)
            if CANDIDATE_ALIAS not in (mv.aliases or []):  # an attempt that died half-way
                newest = _newest_version(client, name)
                if newest is not None and int(newest.version) == int(mv.version):
                    client.set_registered_model_alias(name, CANDIDATE_ALIAS, mv.version)
                    mv = client.get_model_version(name, mv.version)
            # a live run of a re-run that found this version
            for run in _runs_of_job(client, experiment_id, key):
                if run.info.status == "RUNNING" and run.info.run_id != mv.run_id:
                    client.set_terminated(run.info.run_id, "KILLED")
            info = _version_info(client, mv, created=False)
            info["experiment_id"] = experiment_id
            return info

    final_metrics: dict[str, float] = {}
    metrics_file: Path | None = None
    if metrics_path is not None:
        with storage.local_file(metrics_path) as local_metrics:
            text = Path(local_metrics).read_text()
        final_metrics.update(flatten_metrics(json.loads(text)))
        metrics_file = Path(tempfile.mkdtemp(prefix="odp-metrics-")) / "metrics.json"
        metrics_file.write_text(text)
    if metrics:
        final_metrics.update(flatten_metrics(metrics))

    try:
        with _local_model(model_dir_or_tar) as tar_path:
            sha = _sha256(tar_path)
            found = _find_run(client, experiment_id, key) if key else None
            run_id = found[0] if found else None
            if not (found and found[1]):
                run_id = _log_run(
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
                )
    finally:
        if metrics_file is not None:
            shutil.rmtree(metrics_file.parent, ignore_errors=True)

    _ensure_registered_model(client, name)
    run = client.get_run(run_id)
    version_tags = {**tags, MODEL_SHA_TAG: sha}
    if key:
        version_tags[IDEMPOTENCY_TAG] = key
    mv = client.create_model_version(
        name=name,
        source=f"{run.info.artifact_uri.rstrip('/')}/{MODEL_ARTIFACT_PATH}",
        run_id=run_id,
        tags=version_tags,
        description=description,
    )
    mv = _wait_ready(client, mv)
    client.set_registered_model_alias(name, CANDIDATE_ALIAS, mv.version)
    info = _version_info(client, client.get_model_version(name, mv.version), created=True)
    info["experiment_id"] = experiment_id
    return info


def _log_run(
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
) -> str:
    """Fill and finish a run: a new one, or the live run ``run_id`` (whose per-epoch
    metrics arrived during training). Returns its id; the run is marked FAILED on error."""
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
            folder = Path(tmp) / MODEL_ARTIFACT_PATH
            folder.mkdir()
            shutil.copyfile(tar_path, folder / MODEL_FILE)
            _extract_side_files(tar_path, folder)
            if metrics_file is not None:
                shutil.copyfile(metrics_file, folder / "metrics.json")
            client.log_artifacts(run_id, str(folder), MODEL_ARTIFACT_PATH)
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return run_id


def _newest_version(client: MlflowClient, name: str) -> ModelVersion | None:
    versions = client.search_model_versions(f"name = {_quote(name)}")
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
    return _version_info(client, mv)


def get_champion(name: str, tracking_uri: str | None = None) -> dict | None:
    """The version that holds the ``champion`` alias, with its run metrics; ``None`` if none."""
    return get_version_by_alias(name, CHAMPION_ALIAS, tracking_uri)


def get_candidate(name: str, tracking_uri: str | None = None) -> dict | None:
    """The version that holds the ``candidate`` alias (the newest registration), or ``None``."""
    return get_version_by_alias(name, CANDIDATE_ALIAS, tracking_uri)


def promote_if_better(
    name: str,
    version: int | str,
    metric: str = "mAP",
    margin: float = 0.0,
    tracking_uri: str | None = None,
    *,
    greater_is_better: bool = True,
    champion_value: float | None = None,
) -> dict:
    """Move the ``champion`` alias to ``version`` when it beats the current champion.

    ``champion_value``, when given, is the champion's ``metric`` measured on the same data
    as the candidate (like with like); otherwise the value logged with its run is used.

    ``version`` is promoted when there is no champion, when the champion has no value for
    ``metric``, or when ``candidate > champion + margin`` (``<  champion - margin`` with
    ``greater_is_better=False``). A version without the metric is never promoted over an
    existing champion. Calling it again is harmless.

    Returns:
        ``{"promoted", "reason", "name", "version", "metric", "candidate_value",
        "champion_value", "previous_champion", "champion"}`` where ``champion`` is the
        version holding the alias afterwards.
    """
    from mlflow.exceptions import MlflowException

    client = get_client(tracking_uri)
    mv = client.get_model_version(name, str(version))
    value = client.get_run(mv.run_id).data.metrics.get(metric) if mv.run_id else None
    try:
        current = client.get_model_version_by_alias(name, CHAMPION_ALIAS)
    except MlflowException:
        current = None
    result: dict[str, Any] = {
        "name": name,
        "version": int(mv.version),
        "metric": metric,
        "margin": margin,
        "candidate_value": value,
        "champion_value": None,
        "previous_champion": int(current.version) if current else None,
    }
    if current is not None and int(current.version) == int(mv.version):
        promoted, reason = False, f"version {mv.version} is already the champion"
    elif current is None:
        promoted, reason = True, "no champion yet"
    else:
        champ_value = champion_value
        if champ_value is None and current.run_id:
            try:
                champ_value = client.get_run(current.run_id).data.metrics.get(metric)
            except MlflowException:
                champ_value = None
        result["champion_value"] = champ_value
        if value is None:
            promoted, reason = False, f"version {mv.version} has no {metric!r} metric"
        elif champ_value is None:
            promoted, reason = True, f"champion v{current.version} has no {metric!r} metric"
        else:
            better = (
                value > champ_value + margin if greater_is_better else value < champ_value - margin
            )
            cmp = f"{metric} {value:.4f} vs champion v{current.version} {champ_value:.4f}"
            promoted = better
            reason = f"{cmp} ({'beats' if better else 'does not beat'} margin {margin})"
    if promoted:
        client.set_registered_model_alias(name, CHAMPION_ALIAS, mv.version)
    client.set_model_version_tag(name, mv.version, "odp.promotion", reason[:5000])
    result.update(
        promoted=promoted,
        reason=reason,
        champion=int(mv.version) if promoted else result["previous_champion"],
    )
    return result


# ------------------------------------------------------------------ resolution


_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))/?$")


def _cache_dir(tracking_uri: str, name: str, version: str) -> Path:
    tag = hashlib.sha256(tracking_uri.encode()).hexdigest()[:12]
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
    return load_settings().home / "cache" / "models" / tag / safe / str(version)


def _find_model_file(folder: Path) -> Path:
    if folder.is_file():
        return folder
    direct = folder / MODEL_FILE
    if direct.is_file():
        return direct
    found = sorted(folder.rglob(MODEL_FILE))
    if not found:
        raise FileNotFoundError(f"no {MODEL_FILE} in {folder}")
    return found[0]


def resolve_model_uri(
    uri: str | os.PathLike,
    dst: str | os.PathLike | None = None,
    tracking_uri: str | None = None,
) -> Path:
    """Local path of the ``model.tar.gz`` behind ``uri``, downloading when needed.

    ``uri`` may be ``models:/<name>@<alias>``, ``models:/<name>/<version>``, ``runs:/<id>/model``,
    an ``s3://`` URI of a tarball or of a folder holding ``model.tar.gz``, a local tarball, or
    a local folder (holding ``model.tar.gz``, or the model files, which are then tarred into
    ``dst``). Registry downloads are cached per version under ``$ODP_HOME/cache/models`` unless
    ``dst`` is given.
    """
    uri = str(uri)
    if uri.startswith(("models:/", "runs:/")):
        import mlflow.artifacts

        tracking = resolve_tracking_uri(tracking_uri)
        client = get_client(tracking)
        match = _MODELS_URI.match(uri)
        if match:
            name = match["name"]
            mv = (
                client.get_model_version_by_alias(name, match["alias"])
                if match["alias"]
                else client.get_model_version(name, match["version"])
            )
            target = Path(dst) if dst else _cache_dir(tracking, name, mv.version)
            if not dst:
                try:
                    return _find_model_file(target)
                except FileNotFoundError:
                    pass
            download_uri = client.get_model_version_download_uri(name, mv.version)
        else:
            target = Path(dst) if dst else Path(tempfile.mkdtemp(prefix="odp-model-"))
            download_uri = uri
        target.mkdir(parents=True, exist_ok=True)
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=download_uri,
            dst_path=str(target),
            tracking_uri=tracking,
            registry_uri=tracking,
        )
        return _find_model_file(Path(local))
    if storage.is_s3(uri):
        target = Path(dst) if dst else Path(tempfile.mkdtemp(prefix="odp-model-"))
        source = uri if uri.endswith(".tar.gz") else storage.join(uri, MODEL_FILE)
        return storage.download(source, target / MODEL_FILE)
    path = Path(uri)
    if path.is_file():
        return path
    if path.is_dir():
        if (path / MODEL_FILE).is_file():
            return path / MODEL_FILE
        target = Path(dst) if dst else Path(tempfile.mkdtemp(prefix="odp-model-"))
        target.mkdir(parents=True, exist_ok=True)
        with _local_model(path) as tar_path:
            return Path(shutil.copyfile(tar_path, target / MODEL_FILE))
    raise FileNotFoundError(f"no model at {uri}")


__all__ = [
    "CANDIDATE_ALIAS",
    "CHAMPION_ALIAS",
    "IDEMPOTENCY_TAG",
    "ensure_experiment",
    "flatten_metrics",
    "get_candidate",
    "get_champion",
    "get_client",
    "get_version_by_alias",
    "promote_if_better",
    "register_model",
    "resolve_model_uri",
    "resolve_tracking_uri",
]
