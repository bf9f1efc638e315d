"""MLflow store set-up: the tracking URI, the client, the experiment.

The tracking URI defaults to :mod:`pipeline_lib.settings` (a local SQLite store whose
experiments keep their artifacts in ``$ODP_HOME/mlflow/artifacts``, never ``./mlruns`` in the
current directory); ``MLFLOW_TRACKING_URI`` or the ``tracking_uri`` argument point it at a
real MLflow server instead.

Requests to a server are bounded: MLflow's own client settings get defaults here when the
user has not set them (:data:`HTTP_DEFAULTS`: each request waits at most 6 s and is retried
twice with a 1 s, 2 s backoff, so a dead or silent server fails a call in under 30 s), and
a server that cannot be reached is one :class:`TrackingServerUnavailable` line naming it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from ..settings import load_settings

if TYPE_CHECKING:  # mlflow costs seconds to import; only the functions below import it
    from mlflow import MlflowClient

DEFAULT_EXPERIMENT = "object-detection"
EXPERIMENT_ENV = "ODP_MLFLOW_EXPERIMENT"
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"  # read by the MLflow 3 UI
EXPERIMENT_KIND = "custom_model_development"  # a model-training experiment (not GenAI)

#: MLflow's HTTP client settings (read by MLflow at every request), set when the user has not.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "6",  # seconds, connect and each read
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",  # seconds, doubled per retry
}


class TrackingServerUnavailable(ConnectionError):
    """The MLflow tracking server did not answer (refused, timed out, kept failing): a
    transient failure, reported as one line naming the server."""


def bound_http_requests() -> None:
    """Give MLflow's HTTP client a timeout and a bounded retry (:data:`HTTP_DEFAULTS`),
    keeping any value the user set."""
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)


def _request_failure(exc: BaseException) -> BaseException | None:
    """The ``requests`` exception behind an MLflow client error, if it is one."""
    import requests

    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        if isinstance(link, requests.exceptions.RequestException):
            return link
        seen.add(id(link))
        link = link.__cause__ or link.__context__
    return None


def _reason(failure: BaseException) -> str:
    text = str(failure).lower()
    if "refused" in text:
        return "connection refused"
    if "timed out" in text or "timeout" in text:
        return "no answer within the timeout"
    if "name or service not known" in text or "resolve" in text:
        return "host name not found"
    return type(failure).__name__


@contextlib.contextmanager
def tracking_errors(uri: str) -> Iterator[None]:
    """Turn a tracking server that cannot be reached into :class:`TrackingServerUnavailable`."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except (MlflowException, OSError) as exc:
        failure = _request_failure(exc)
        if failure is None:
            raise
        settings = ", ".join(f"{k}={os.environ.get(k, v)}" for k, v in HTTP_DEFAULTS.items())
        raise TrackingServerUnavailable(
            f"MLflow tracking server {uri} is unreachable ({_reason(failure)}; {settings}); "
            "check MLFLOW_TRACKING_URI and that the server is up"
        ) from None


class _BoundedClient:
    """An ``MlflowClient`` whose calls report an unreachable server as one clear error."""

    def __init__(self, client: MlflowClient, uri: str):
        self._client, self._uri = client, uri

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        def call(*args: Any, **kwargs: Any) -> Any:
            with tracking_errors(self._uri):
                return attr(*args, **kwargs)

        return call


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
    """An ``MlflowClient`` for the tracking and registry store (created if it is local); with
    a server, every call is bounded in time and an unreachable server is one clear
    :class:`TrackingServerUnavailable`."""
    from mlflow import MlflowClient

    uri = resolve_tracking_uri(tracking_uri)
    if uri.startswith("sqlite:"):
        _init_sqlite_store(uri)
        return MlflowClient(tracking_uri=uri, registry_uri=uri)
    bound_http_requests()
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    return _BoundedClient(client, uri)  # type: ignore[return-value]  # same interface


def ensure_experiment(client: MlflowClient, name: str | None = None) -> str:
    """Id of experiment ``name`` (default ``$ODP_MLFLOW_EXPERIMENT`` or ``object-detection``),
    tagged as a model-training experiment (the MLflow 3 UI then opens it on its runs, not on
    the GenAI traces overview).

    With a database store used directly (no server), a new experiment gets its artifact
    location under the local artifact folder; with a server, the server decides.
    """
    name = name or os.environ.get(EXPERIMENT_ENV) or DEFAULT_EXPERIMENT
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        if EXPERIMENT_KIND_TAG not in (exp.tags or {}):  # made before the tag was set
            client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return exp.experiment_id
    location = None
    if _is_db_uri(client.tracking_uri):
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "experiment"
        location = f"{_artifact_root_uri()}/{safe}"
    from mlflow.exceptions import MlflowException

    try:
        return client.create_experiment(
            name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
        )
    except MlflowException:  # created concurrently by another task
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


@contextlib.contextmanager
def fluent_store(uri: str) -> Iterator[None]:
    """MLflow's fluent API (``mlflow.start_run``, ``log_model``) against ``uri`` for the
    block; afterwards the process is as before: ``mlflow.set_tracking_uri`` also writes the
    environment variables, and this process resolves its store from them per call."""
    import mlflow
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    names = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    saved_env = {name: os.environ.get(name) for name in names}
    saved = (tracking_utils._tracking_uri, registry_utils._registry_uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        tracking_utils._tracking_uri, registry_utils._registry_uri = saved
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def quote(value: str) -> str:
    """A value safe inside a single-quoted MLflow filter string."""
    if "'" in value or "\\" in value:
        raise ValueError(f"quotes are not allowed in registry filter values: {value!r}")
    return f"'{value}'"
