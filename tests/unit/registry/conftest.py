"""Fixtures of the registry tests: a throw-away SQLite MLflow store per test module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One SQLite store for the module (MLflow's schema set-up costs seconds); cwd elsewhere."""
    home = tmp_path_factory.mktemp("registry-home")
    cwd = tmp_path_factory.mktemp("registry-cwd")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ODP_HOME", str(home))
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow' / 'mlflow.db'}")
        mp.setenv("ODP_MLFLOW_ARTIFACTS", str(home / "mlflow" / "artifacts"))
        mp.delenv("MLFLOW_REGISTRY_URI", raising=False)
        mp.delenv("ODP_MLFLOW_EXPERIMENT", raising=False)
        mp.chdir(cwd)
        yield cwd
