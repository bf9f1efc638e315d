"""A real local Airflow (API server, DAG processor, scheduler) for the browser and REST
tests (tests/e2e/): its own AIRFLOW_HOME, ODP_HOME, MLflow store and free port, started once
per module and stopped (each process group it started, by id) afterwards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from servers import free_port, wait_for_http

from pipeline_lib.synthetic import SynthConfig, generate

REPO_ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
ARTIFACTS = REPO_ROOT / "tests" / "e2e" / "artifacts"  # screenshots, server logs (git-ignored)


@dataclass
class AirflowStack:
    """A running local Airflow and where its state lives."""

    url: str
    user: str
    password: str
    home: Path
    env: dict[str, str]
    dataset: Path
    logs: Path
    procs: list[subprocess.Popen] = field(default_factory=list)

    def token(self) -> str:
        """A JWT from ``POST /auth/token``, as a REST client gets one."""
        body = json.dumps({"username": self.user, "password": self.password}).encode()
        req = urllib.request.Request(  # noqa: S310  (the local test server)
            f"{self.url}/auth/token",
            data=body,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310
            return json.load(resp)["access_token"]

    def api(self, method: str, path: str, body: object = None, token: str | None = None):
        """Call the REST API (``/api/v2/...``); returns the decoded JSON answer."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(  # noqa: S310  (the local test server)
            f"{self.url}{path}",
            data=data,
            method=method,
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {token or self.token()}",
            },
        )
        with urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310
            text = resp.read().decode()
        return json.loads(text) if text else None

    def wait_for_dag(self, dag_id: str, timeout: float = 240) -> dict:
        """Until the DAG processor has parsed ``dag_id`` into the API."""
        token = self.token()
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.api("GET", f"/api/v2/dags/{dag_id}", token=token)
            except urllib.error.HTTPError as exc:
                if exc.code != 404 or time.monotonic() > deadline:
                    raise
            time.sleep(2)


def _stack_env(home: Path, port: int, dataset: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "ODP_"))}
    env.update(
        ODP_HOME=str(home),
        AIRFLOW_HOME=str(home / "airflow"),
        ODP_AIRFLOW_PORT=str(port),
        ODP_ARTIFACT_ROOT=str(home / "artifacts"),
        ODP_MLFLOW_ARTIFACTS=str(home / "mlflow" / "artifacts"),
        MLFLOW_TRACKING_URI=f"sqlite:///{home / 'mlflow' / 'mlflow.db'}",
        ODP_DEFAULT_DATASET=str(dataset),
        ODP_TRAINING_DATA_URI=str(dataset),
        PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        PYTHONPATH=f"{REPO_ROOT}{os.pathsep}{REPO_ROOT / 'plugins'}",
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="5",
        AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL="5",
        AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC="2",
        AIRFLOW__CORE__PARALLELISM="2",
    )
    env.pop("MLFLOW_REGISTRY_URI", None)
    return env


def start_airflow_stack(home: Path) -> Iterator[AirflowStack]:
    """API server + DAG processor + scheduler (LocalExecutor) on a free port (a generator
    for a fixture: yields the running stack, stops it when resumed)."""
    dataset = home / "dataset"
    generate(dataset, SynthConfig(images=16, classes=2, seed=21, min_size=96, max_size=128))
    port = free_port()
    env = _stack_env(home, port, dataset)
    logs = ARTIFACTS / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    run = {"env": env, "cwd": REPO_ROOT, "capture_output": True, "check": True}
    subprocess.run([sys.executable, "-m", "odp_airflow.local", "render-config"], **run)  # noqa: S603
    subprocess.run([str(VENV_BIN / "airflow"), "db", "migrate"], **run)  # noqa: S603
    stack = AirflowStack(
        url=f"http://127.0.0.1:{port}",
        user="admin",
        password="admin",  # noqa: S106  (the local stack's fixed login, see odp_airflow.local.env)
        home=home,
        env=env,
        dataset=dataset,
        logs=logs,
    )
    try:
        for component in ("api-server", "dag-processor", "scheduler"):
            out = (logs / f"{component}.log").open("wb")
            stack.procs.append(
                subprocess.Popen(  # noqa: S603  (fixed argv)
                    [str(VENV_BIN / "airflow"), component],
                    env=env,
                    cwd=REPO_ROOT,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        assert wait_for_http(f"{stack.url}/api/v2/monitor/health", 180, stack.procs[0]), (
            logs / "api-server.log"
        ).read_text()[-3000:]
        yield stack
    finally:
        for proc in stack.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in stack.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
