"""A real fault: the MLflow server stops between training and registration. The register
stage fails with one clear, retryable error; once the server is back, the retry completes
into the run training opened, with one version, and a further retry changes nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from servers import free_port, wait_for_http

from odp_airflow import tasks
from odp_airflow.failure import is_permanent
from pipeline_lib.registry.store import TrackingServerUnavailable, get_client

pytestmark = pytest.mark.integration
MLFLOW = Path(sys.executable).parent / "mlflow"


class Server:
    """``mlflow server`` on a fixed port and store, stoppable and restartable."""

    def __init__(self, root: Path):
        self.root, self.port = root, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
        cmd = [
            str(MLFLOW),
            "server",
            "--backend-store-uri",
            f"sqlite:///{self.root / 'db.sqlite'}",
            "--artifacts-destination",
            str(self.root / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]
        with open(self.root / "server.log", "ab") as log:
            self.proc = subprocess.Popen(  # noqa: S603  test-built argv
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.root,
                start_new_session=True,
            )
        assert wait_for_http(f"{self.url}/health", 180, self.proc), (
            self.root / "server.log"
        ).read_text()[-3000:]

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        except ProcessLookupError:
            pass
        self.proc = None


@pytest.fixture
def server(tmp_path: Path):
    srv = Server(tmp_path)
    srv.start()
    yield srv
    srv.stop()


def test_register_fails_clearly_while_the_server_is_down_and_the_retry_completes(
    server, odp_home, training_data: Path, tiny_model: Path, monkeypatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
    params = {
        "dataset_uri": str(training_data),
        "model_name": "outage",
        "base_network": "mobilenet-0.25",
    }
    inputs = tasks.resolve_inputs(params, "object_detection_training", "manual__outage")
    live = tasks._live_mlflow_env(inputs)  # what the train task does first
    assert live["ODP_MLFLOW_RUN_ID"]
    # What the train task publishes: the model, its metrics, the completion manifest last.
    import json
    import shutil

    from pipeline_lib.training.completion import write_completion

    task_dir = Path(inputs["run_root"], "train")
    task_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tiny_model, task_dir / "model.tar.gz")
    (task_dir / "metrics.json").write_text(json.dumps({"validation:mAP": 0.1}))
    write_completion(str(task_dir))
    trained = {
        "model_uri": str(task_dir / "model.tar.gz"),
        "hyperparameters": {"base_network": "mobilenet-0.25", "num_classes": "2"},
        "training_metrics": {"epochs": [{"epoch": 0, "validation_mAP": 0.1}]},
        "dataset_digest": "0123456789abcdef" * 4,
    }
    evaluated = {
        "metrics": {"mAP": 0.1},
        "output_uri": str(odp_home.home / "no-eval"),
        "champion": None,
    }

    server.stop()
    with pytest.raises(TrackingServerUnavailable, match=server.url.replace(".", r"\.")) as info:
        tasks.register_trained(inputs, trained, evaluated)
    assert not is_permanent(info.value)  # the task is retried, not failed for good

    server.start()
    first = tasks.register_trained(inputs, trained, evaluated)
    again = tasks.register_trained(inputs, trained, evaluated)
    assert (first["version"], first["created"]) == (1, True)
    assert (again["version"], again["created"]) == (1, False)
    assert first["run_id"] == live["ODP_MLFLOW_RUN_ID"]  # the run training opened

    client = get_client(server.url)
    assert len(client.search_model_versions("name = 'outage'")) == 1
    experiment = client.get_experiment(first["experiment_id"])
    runs = client.search_runs([experiment.experiment_id])
    assert [r.info.run_id for r in runs] == [first["run_id"]]
    assert runs[0].info.status == "FINISHED"
