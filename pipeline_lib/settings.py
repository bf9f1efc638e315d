"""Where local state lives. One git-ignored folder, each location overridable by env vars.

| variable              | default                                   |
|-----------------------|-------------------------------------------|
| ODP_HOME              | <checkout>/.local                         |
| ODP_ARTIFACT_ROOT     | $ODP_HOME/artifacts (or s3://bucket/pfx)  |
| MLFLOW_TRACKING_URI   | sqlite:///$ODP_HOME/mlflow/mlflow.db      |
| ODP_MLFLOW_ARTIFACTS  | $ODP_HOME/mlflow/artifacts                |
| AIRFLOW_HOME          | $ODP_HOME/airflow                         |
| MXNET_HOME            | $ODP_HOME/mxnet (pretrained weight cache) |
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

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
