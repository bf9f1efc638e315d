"""``make ui``: Airflow (standalone) and an MLflow server side by side, under honcho.

honcho (a Python Foreman) starts each command in its own process group, prefixes every
output line with the service's name, and stops them all, group by group, when one exits or
on Ctrl-C / SIGTERM. A third process waits until both services answer and prints the URLs.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from pipeline_lib.settings import load_settings

from .env import LocalEnv, local_env


def http_up(url: str) -> bool:
    """Whether anything answers HTTP at ``url`` (an error status counts: it is up)."""
    try:
        with urllib.request.urlopen(url, timeout=2):  # noqa: S310  (local health URLs)
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def mlflow_server_command(env: LocalEnv) -> list[str] | None:
    """The ``mlflow server`` for the local store, or None when a tracking server is set."""
    s = load_settings()
    if s.mlflow_tracking_uri.startswith(("http://", "https://")):
        return None
    artifacts = s.mlflow_artifacts
    if "://" not in artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        artifacts = Path(artifacts).resolve().as_uri()
    return [
        str(Path(sys.executable).parent / "mlflow"),
        "server",
        "--backend-store-uri",
        s.mlflow_tracking_uri,
        "--default-artifact-root",
        artifacts,
        "--host",
        "127.0.0.1",
        "--port",
        str(env.mlflow_port),
        "--workers",
        "1",
    ]


def health_urls(env: LocalEnv, with_mlflow: bool) -> list[str]:
    """What must answer before the URLs are printed."""
    urls = [f"http://127.0.0.1:{env.airflow_port}/api/v2/monitor/health"]
    if with_mlflow:
        urls.append(f"http://127.0.0.1:{env.mlflow_port}/health")
    return urls


def wait_then_print(urls: list[str]) -> int:
    """Poll until every URL answers, print the banner, then stay up until stopped."""
    from .summary import urls_text

    while not all(http_up(u) for u in urls):
        time.sleep(2)
    line = "=" * 72
    print(f"\n{line}\n{urls_text()}\n  Ctrl-C stops both.\n{line}", flush=True)
    signal.pause()  # honcho stops every service when one of its processes exits
    return 0


def run_ui() -> int:
    """Run the services until Ctrl-C; returns the first non-zero exit code."""
    from honcho.manager import Manager

    env = local_env()
    bin_dir = Path(sys.executable).parent
    proc_env = dict(os.environ)
    proc_env["PATH"] = f"{bin_dir}{os.pathsep}{proc_env.get('PATH', '')}"
    # MLflow's background job runner (GenAI features) is not used here: fewer processes.
    proc_env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    mlflow_cmd = mlflow_server_command(env)
    if mlflow_cmd is not None and load_settings().mlflow_tracking_uri.startswith("sqlite:"):
        from pipeline_lib.registry import get_client

        get_client()  # create the local store with the right artifact root before the server
    commands = {"airflow": [str(bin_dir / "airflow"), "standalone"]}
    if mlflow_cmd is not None:
        commands["mlflow"] = mlflow_cmd
    urls = health_urls(env, with_mlflow=mlflow_cmd is not None)
    commands["ready"] = [sys.executable, "-m", "odp_airflow.local", "wait-ready", *urls]
    manager = Manager()
    for name, cmd in commands.items():
        manager.add_process(name, "exec " + shlex.join(cmd), env=proc_env)
    manager.loop()
    return manager.returncode or 0
