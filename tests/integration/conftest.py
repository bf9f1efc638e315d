"""Fixtures for tests that run the real DAG in this process."""

from __future__ import annotations

import signal

import pytest


@pytest.fixture
def dag_env(odp_home, airflow_db, monkeypatch):
    """Pipeline state in tmp (ODP_HOME, MLflow, artifacts) and the session's migrated Airflow DB.

    dag.test() runs tasks in this process and leaves Airflow's SIGTERM handler behind; forked
    workers of later tests would inherit it and ignore Pool.terminate(): restored afterwards.
    """
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    monkeypatch.setenv("AIRFLOW_HOME", str(airflow_db))
    yield odp_home
    for sig, handler in saved.items():
        signal.signal(sig, handler)
