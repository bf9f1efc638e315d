"""Live metrics to an MLflow server that is down or silent: a warning, bounded time, then
training goes on without further calls (real sockets)."""

from __future__ import annotations

import io

import pytest
from servers_unreachable import closed_port, silent_port

from pipeline_lib.registry.store import HTTP_DEFAULTS
from pipeline_lib.training.metrics_log import MetricLogger


@pytest.fixture(autouse=True)
def _no_user_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in HTTP_DEFAULTS:
        monkeypatch.delenv(key, raising=False)


def _two_epochs(log: MetricLogger) -> None:
    log.epoch_end({"epoch": 0, "validation_mAP": 0.1})
    log.epoch_end({"epoch": 1, "validation_mAP": 0.2})


def test_refused_server_costs_one_warning(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{closed_port()}")
    stream = io.StringIO()
    log = MetricLogger(stream=stream, mlflow_run_id="0123abcd")
    _two_epochs(log)
    log.close(timeout=60)
    out = stream.getvalue()
    assert out.count("warning: MLflow logging to run 0123abcd stopped") == 1
    assert [r["epoch"] for r in log.history] == [0, 1]  # metrics.json keeps every value
    log.epoch_end({"epoch": 2, "validation_mAP": 0.3})  # no further call, no second warning
    log.close(timeout=60)
    assert stream.getvalue().count("stopped") == 1


def test_silent_server_never_holds_up_training(monkeypatch):
    """The calls return while the server has not answered (the sender thread waits for
    it, not training); the bounded client timeout then ends the sending with one warning."""
    with silent_port() as port:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
        stream = io.StringIO()
        log = MetricLogger(stream=stream, mlflow_run_id="0123abcd")
        _two_epochs(log)
        assert "stopped" not in stream.getvalue()  # returned before any answer could come
        assert [r["epoch"] for r in log.history] == [0, 1]
        log.close(timeout=120)
    assert stream.getvalue().count("warning: MLflow logging to run 0123abcd stopped") == 1


def test_a_full_queue_drops_batches_with_one_warning(monkeypatch):
    monkeypatch.setattr("pipeline_lib.training.metrics_log.MLFLOW_QUEUE_LIMIT", 2)
    with silent_port() as port:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
        stream = io.StringIO()
        log = MetricLogger(stream=stream, mlflow_run_id="0123abcd")
        for epoch in range(6):
            log.epoch_end({"epoch": epoch, "validation_mAP": 0.1})
        assert stream.getvalue().count("more than 2 batches waiting") == 1
        assert len(log.history) == 6
        log.close(timeout=120)
