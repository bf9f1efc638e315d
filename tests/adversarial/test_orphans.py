"""Children die with the parent on every path: the DAG task that runs ``odp train`` is
SIGKILLed (``airflow dags test`` killed, a worker OOM-killed), and the training process and
its group must be gone within the grace period, whatever the job was doing.

Real processes: a parent script runs ``odp_airflow.subprocesses.run_logged`` (the DAG's own
path) over the tiny training job; the test SIGKILLs that parent at a chosen moment.
"""

from __future__ import annotations

import os
import select
import signal
import time
from pathlib import Path

import pytest
from process_tree import alive, start, wait_children, wait_gone
from training_job import layout, make_dataset

_PARENT = """
import logging, os, sys
from odp_airflow.subprocesses import run_logged
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
run_logged([sys.executable, "-m", "pipeline_lib.cli", "train", "--ml-root", sys.argv[1]], env)
"""


def _wait_line(proc, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 1)
        if ready:
            line = proc.stdout.readline()
            if not line:
                break
            if text in line:
                return
    raise AssertionError(f"the job never printed {text!r}")


def _group(pgid: int) -> list[int]:
    """Live processes of process group ``pgid``."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(fields[3]) == pgid and fields[0] != "Z":
                out.append(int(entry.name))
    return out


@pytest.mark.parametrize(
    ("moment", "line", "bound"),
    [
        ("starting", "running:", 20),  # importing, reading the config, the data gate
        ("training", "#quality_metric", 150),  # in fit: a checkpoint first, then gone
    ],
)
def test_odp_train_dies_with_the_task_that_started_it(
    tmp_path: Path, moment: str, line: str, bound: float
) -> None:
    ml = tmp_path / "ml"
    layout(ml, make_dataset(tmp_path / "data"), epochs=200)
    parent = start(_PARENT, str(ml))
    try:
        (child,) = wait_children(parent.pid, 1, timeout=30)
        _wait_line(parent, line, timeout=120)
        if moment == "starting":
            time.sleep(1.0)
        family = _group(child)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        left = wait_gone(family, timeout=bound)
        assert not left, f"{moment}: still running {bound} s after the task was killed: {left}"
    finally:
        for pid in alive(_group(child) if "child" in locals() else []):
            os.kill(pid, signal.SIGKILL)
        if parent.poll() is None:
            parent.kill()
        parent.stdout.close()
    failure = ml / "output" / "failure"
    assert failure.is_file() and "stopped" in failure.read_text(), moment
