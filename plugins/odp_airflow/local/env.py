"""Ports and login of the local services, read from the environment.

| variable                  | default  |
|---------------------------|----------|
| ODP_AIRFLOW_PORT          | 8080     |
| ODP_MLFLOW_PORT           | 5000     |
| ODP_AIRFLOW_USER          | admin    |
| ODP_AIRFLOW_PASSWORD      | admin    |
| ODP_AIRFLOW_PARALLELISM   | number of CPU cores, at least 2, at most 8 |
"""

from __future__ import annotations

import os
from dataclasses import dataclass

#: The DAG the demo runs and the summary points at.
DAG_ID = "object_detection_training"


@dataclass(frozen=True)
class LocalEnv:
    """Ports and login of the local services."""

    airflow_port: int
    mlflow_port: int
    user: str
    password: str

    @property
    def airflow_url(self) -> str:
        """Airflow UI / REST API."""
        return f"http://localhost:{self.airflow_port}"

    @property
    def mlflow_url(self) -> str:
        """MLflow UI started by ``make ui`` (or the configured tracking server)."""
        from pipeline_lib.registry import ui_url

        return ui_url()


def local_env() -> LocalEnv:
    """Read ports and login from the environment (see the module docstring)."""
    return LocalEnv(
        airflow_port=int(os.environ.get("ODP_AIRFLOW_PORT", "8080")),
        mlflow_port=int(os.environ.get("ODP_MLFLOW_PORT", "5000")),
        user=os.environ.get("ODP_AIRFLOW_USER", "admin"),
        password=os.environ.get("ODP_AIRFLOW_PASSWORD", "admin"),
    )


def default_parallelism() -> int:
    """Task slots: one per core, at least 2, at most 8 (or ``ODP_AIRFLOW_PARALLELISM``)."""
    if value := os.environ.get("ODP_AIRFLOW_PARALLELISM"):
        return max(1, int(value))
    return min(8, max(2, os.cpu_count() or 2))
