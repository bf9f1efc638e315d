"""Live metrics to an MLflow server that is down or silent: a warning, bounded time, then
training goes on without further calls (real sockets)."""

from __future__ import annotations

import io
import time

import pytest
from servers_unreachable import closed_port, silent_port

from pipeline_lib.registry.store import HTTP_DEFAULTS
from pipeline_lib.training.metrics_log import MetricLogger


@pytest.fixture(autouse=True)
def _no_user_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in HTTP_DEFAULTS:
        monkeypatch.delenv(key, raising=False)


def _two_epochs(log: MetricLogger) -> tuple[float, float]:
    start = time.monotonic()
    log.epoch_end({"epoch": 0, "validation_mAP": 0.1})
    first = time.monotonic() - start
    start = time.monotonic()
    log.epoch_end({"epoch": 1, "validation_mAP": 0.2})
    return first, time.monotonic() - start


def test_refused_server_costs_one_warning(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{closed_port()}")
    stream = io.StringIO()
    log = MetricLogger(stream=stream, mlflow_run_id="0123abcd")
    first, second = _two_epochs(log)
    assert first < 15 and second < 0.5
    out = stream.getvalue()
    assert out.count("warning: MLflow logging to run 0123abcd stopped") == 1
    assert [r["epoch"] for r in log.history] == [0, 1]  # metrics.json keeps every value


def test_silent_server_gives_up_within_the_bound(monkeypatch):
    with silent_port() as port:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
        stream = io.StringIO()
        first, second = _two_epochs(MetricLogger(stream=stream, mlflow_run_id="0123abcd"))
    assert first < 30 and second < 0.5
    assert "warning: MLflow logging to run 0123abcd stopped" in stream.getvalue()
