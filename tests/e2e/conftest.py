"""Fixtures of the end-to-end tests: a real local Airflow per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from airflow_stack import AirflowStack, start_airflow_stack


@pytest.fixture(scope="module")
def airflow_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowStack]:
    """API server + DAG processor + scheduler (LocalExecutor) on a free port."""
    yield from start_airflow_stack(tmp_path_factory.mktemp("airflow-stack"))
