"""Where local state lives. One git-ignored folder, each location overridable by env vars.

| variable              | default                                   |
|-----------------------|-------------------------------------------|
| ODP_HOME              | <checkout>/.local                         |
| ODP_ARTIFACT_ROOT     | $ODP_HOME/artifacts (or s3://bucket/pfx)  |
| MLFLOW_TRACKING_URI   | sqlite:///$ODP_HOME/mlflow/mlflow.db      |
| ODP_MLFLOW_ARTIFACTS  | $ODP_HOME/mlflow/artifacts                |
| AIRFLOW_HOME          | $ODP_HOME/airflow                         |
| MXNET_HOME            | $ODP_HOME/mxnet (pretrained weight cache) |
| ODP_ALLOWED_ROOTS     | $ODP_HOME and $ODP_ARTIFACT_ROOT          |

``ODP_ALLOWED_ROOTS`` (local folders and ``s3://bucket[/prefix]`` roots, separated by ``,``)
is where a DAG run's ``artifact_root`` may point: whoever triggers a run chooses it, and the
worker writes there (:func:`confine_artifact_root`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .storage import check_uri, within

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Settings:
    """Resolved locations of all local state."""

    home: Path
    artifact_root: str
    mlflow_tracking_uri: str
    mlflow_artifacts: str
    airflow_home: Path
    mxnet_home: Path


ALLOWED_ROOTS_ENV = "ODP_ALLOWED_ROOTS"


def allowed_roots() -> list[str]:
    """The roots an ``artifact_root`` may lie in: ``$ODP_ALLOWED_ROOTS``, else the local state
    folder and the configured artifact root (its bucket and prefix on S3)."""
    raw = os.environ.get(ALLOWED_ROOTS_ENV, "").strip()
    settings = load_settings()
    given = [r.strip() for r in raw.split(",") if r.strip()] if raw else [
        str(settings.home), settings.artifact_root,
    ]  # fmt: skip
    return [check_uri(r, ALLOWED_ROOTS_ENV) for r in given]


def confine_artifact_root(uri: object, what: str = "artifact_root") -> str:
    """``uri`` checked strictly (:func:`storage.check_uri`) and inside one of
    :func:`allowed_roots`; a ``ValueError`` naming it and the roots otherwise."""
    checked = check_uri(uri, what)
    roots = allowed_roots()
    if not any(within(checked, root) for root in roots):
        raise ValueError(
            f"{what} {checked!r} is outside the allowed roots ({', '.join(roots)}): expected a "
            f"folder below one of them ({ALLOWED_ROOTS_ENV} sets them)"
        )
    return checked


def load_settings() -> Settings:
    """Read the environment each call, so tests can point everything at a temp folder."""
    home = Path(os.environ.get("ODP_HOME", REPO_ROOT / ".local")).resolve()
    mlflow_dir = home / "mlflow"
    return Settings(
        home=home,
        artifact_root=os.environ.get("ODP_ARTIFACT_ROOT", str(home / "artifacts")),
        mlflow_tracking_uri=os.environ.get(
            "MLFLOW_TRACKING_URI", f"sqlite:///{mlflow_dir / 'mlflow.db'}"
        ),
        mlflow_artifacts=os.environ.get("ODP_MLFLOW_ARTIFACTS", str(mlflow_dir / "artifacts")),
        airflow_home=Path(os.environ.get("AIRFLOW_HOME", home / "airflow")),
        mxnet_home=Path(os.environ.get("MXNET_HOME", home / "mxnet")),
    )
