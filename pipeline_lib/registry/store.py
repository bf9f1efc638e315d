"""MLflow store set-up: the tracking URI, the client, the experiment.

The tracking URI defaults to :mod:`pipeline_lib.settings` (a local SQLite store whose
experiments keep their artifacts in ``$ODP_HOME/mlflow/artifacts``, never ``./mlruns`` in the
current directory); ``MLFLOW_TRACKING_URI`` or the ``tracking_uri`` argument point it at a
real MLflow server instead.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from ..settings import load_settings

if TYPE_CHECKING:  # mlflow costs seconds to import; only the functions below import it
    from mlflow import MlflowClient

DEFAULT_EXPERIMENT = "object-detection"
EXPERIMENT_ENV = "ODP_MLFLOW_EXPERIMENT"


def resolve_tracking_uri(tracking_uri: str | None = None) -> str:
    """The tracking URI to use: the argument, else ``MLFLOW_TRACKING_URI``, else local SQLite."""
    return tracking_uri or load_settings().mlflow_tracking_uri


def ui_url(tracking_uri: str | None = None) -> str:
    """Where people open the MLflow UI: the tracking server itself when there is one, else
    ``ODP_MLFLOW_UI_URL``, else the local UI that ``make ui`` starts (``ODP_MLFLOW_PORT``)."""
    uri = resolve_tracking_uri(tracking_uri)
    if uri.startswith(("http://", "https://")):
        return uri.rstrip("/")
    if explicit := os.environ.get("ODP_MLFLOW_UI_URL"):
        return explicit.rstrip("/")
    return f"http://127.0.0.1:{os.environ.get('ODP_MLFLOW_PORT', '5000')}"


def run_url(run_id: str, experiment_id: str | None = None) -> str:
    """The MLflow UI page of a run."""
    if experiment_id:
        return f"{ui_url()}/#/experiments/{experiment_id}/runs/{run_id}"
    return f"{ui_url()}/#/runs/{run_id}"


def version_url(name: str, version: int | str) -> str:
    """The MLflow UI page of a registered model version."""
    return f"{ui_url()}/#/models/{name}/versions/{version}"


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


def quote(value: str) -> str:
    """A value safe inside a single-quoted MLflow filter string."""
    if "'" in value or "\\" in value:
        raise ValueError(f"quotes are not allowed in registry filter values: {value!r}")
    return f"'{value}'"
