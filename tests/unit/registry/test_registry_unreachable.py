"""An MLflow tracking server that is down or silent fails ``odp register`` in bounded time
with one line naming it (real sockets: a closed port, a listener that never answers)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from servers_unreachable import closed_port, silent_port

from pipeline_lib.cli import main
from pipeline_lib.registry.store import HTTP_DEFAULTS, TrackingServerUnavailable, get_client


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model_algo_1-symbol.json").write_text("{}")
    (folder / "class_map.json").write_text('{"0": "a"}')
    return folder


@pytest.fixture
def no_user_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in HTTP_DEFAULTS:  # the defaults apply; monkeypatch removes them afterwards
        monkeypatch.delenv(key, raising=False)


def _register(uri: str, model_dir: Path, monkeypatch, capsys) -> tuple[int, str, float]:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    start = time.monotonic()
    code = main(["register", str(model_dir), "--name", "m"])
    return code, capsys.readouterr().err, time.monotonic() - start


def test_refused_connection_fails_register_in_seconds(
    model_dir, monkeypatch, capsys, no_user_settings
):
    uri = f"http://127.0.0.1:{closed_port()}"
    code, err, seconds = _register(uri, model_dir, monkeypatch, capsys)
    assert code == 1 and seconds < 15
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"odp register: error: MLflow tracking server {uri} is unreachable")
    assert "connection refused" in err


def test_silent_server_fails_register_within_the_bound(
    model_dir, monkeypatch, capsys, no_user_settings
):
    with silent_port() as port:
        uri = f"http://127.0.0.1:{port}"
        code, err, seconds = _register(uri, model_dir, monkeypatch, capsys)
    assert code == 1 and seconds < 30
    assert err.count("\n") == 1 and f"MLflow tracking server {uri} is unreachable" in err
    assert "no answer within the timeout" in err


def test_user_settings_are_kept_and_the_error_is_transient(monkeypatch, no_user_settings):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    client = get_client(f"http://127.0.0.1:{closed_port()}")
    start = time.monotonic()
    with pytest.raises(TrackingServerUnavailable, match="MLFLOW_HTTP_REQUEST_MAX_RETRIES=0"):
        client.get_experiment_by_name("x")
    assert time.monotonic() - start < 5
    assert issubclass(TrackingServerUnavailable, ConnectionError)  # retried by the DAG policy
