"""`odp train` sends its metrics live to an MLflow run (a real ``mlflow server``)."""

from __future__ import annotations

import json

import pytest
from mlflow.tracking import MlflowClient
from training_job import layout

from pipeline_lib.training.entrypoint import run_training

pytestmark = pytest.mark.integration


def _layout(tmp_path, dataset):
    return layout(tmp_path / "ml", dataset)


def test_metrics_reach_the_given_mlflow_run_per_epoch_and_step(
    mlflow_server, training_data, tmp_path, monkeypatch
):
    client = MlflowClient(tracking_uri=mlflow_server.url)
    experiment = client.create_experiment(f"live-{tmp_path.name}")
    run_id = client.create_run(experiment).info.run_id
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    monkeypatch.setenv("ODP_MLFLOW_RUN_ID", run_id)
    paths = _layout(tmp_path, training_data)
    assert run_training(str(paths.root)) == 0, (paths.output / "failure").read_text()

    epochs = json.loads((paths.output / "metrics.json").read_text())["epochs"]
    for key in ("validation_mAP", "train_cross_entropy", "train_smooth_l1", "learning_rate"):
        history = client.get_metric_history(run_id, key)
        assert [m.step for m in history] == [0, 1], key
        assert [m.value for m in history] == pytest.approx([e[key] for e in epochs]), key
    # 16 images / batch 4 = 4 iterations per epoch, logged every 2: global steps 1, 3, 5, 7;
    # at the last iteration of an epoch the running mean is the epoch's loss
    batch_ce = {m.step: m.value for m in client.get_metric_history(run_id, "batch_cross_entropy")}
    assert sorted(batch_ce) == [1, 3, 5, 7]
    assert [batch_ce[3], batch_ce[7]] == pytest.approx([e["train_cross_entropy"] for e in epochs])


def test_an_unreachable_tracking_server_does_not_stop_training(
    training_data, tmp_path, monkeypatch, capsys
):
    """Metrics still land in metrics.json; the log says MLflow logging stopped, once."""
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    monkeypatch.setenv("ODP_MLFLOW_RUN_ID", "0123456789abcdef")
    paths = _layout(tmp_path, training_data)
    assert run_training(str(paths.root)) == 0
    out = capsys.readouterr().out
    assert out.count("MLflow logging to run 0123456789abcdef stopped") == 1
    assert len(json.loads((paths.output / "metrics.json").read_text())["epochs"]) == 2
