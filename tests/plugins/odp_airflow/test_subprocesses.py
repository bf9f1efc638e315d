"""odp_airflow.subprocesses: a task's child process group never outlives the task."""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest

from odp_airflow.subprocesses import run_logged

# A child that starts a grandchild (like training's data workers), reports both pids, waits.
_FAMILY = (
    "import subprocess, sys, time; "
    "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)']); "
    "print('pids', __import__('os').getpid(), g.pid, flush=True); time.sleep(300)"
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0): read its state
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().split(")")[-1].split()[0] != "Z"


def _pids(caplog) -> list[int]:
    for record in caplog.records:
        text = record.getMessage()
        if text.startswith("pids "):
            return [int(p) for p in text.split()[1:]]
    raise AssertionError("the child never reported its pids")


def test_exit_code_and_output_are_passed_on(caplog) -> None:
    caplog.set_level("INFO")
    code = run_logged([sys.executable, "-c", "print('hello'); raise SystemExit(3)"], os.environ)
    assert code == 3
    assert any(r.getMessage() == "hello" for r in caplog.records)


def test_a_task_timeout_stops_the_whole_process_group(caplog) -> None:
    """An execution_timeout is an exception raised in the task (SIGALRM): child and
    grandchild get SIGTERM, then SIGKILL after the grace period."""
    caplog.set_level("INFO")

    class TaskTimeout(Exception):
        pass

    def on_alarm(signum, frame):
        raise TaskTimeout

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, 3)
    try:
        with pytest.raises(TaskTimeout):
            run_logged([sys.executable, "-c", _FAMILY], os.environ, grace=5)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    child, grandchild = _pids(caplog)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (_alive(child) or _alive(grandchild)):
        time.sleep(0.1)
    assert not _alive(child) and not _alive(grandchild)


def test_sigterm_to_the_task_reaches_the_child(caplog) -> None:
    """Airflow SIGTERMs a task it stops (marked failed in the UI): the child group gets it."""
    caplog.set_level("INFO")
    seen = []
    previous = signal.signal(signal.SIGTERM, lambda s, f: seen.append(s))
    signal.setitimer(signal.ITIMER_REAL, 3)
    alarm = signal.signal(signal.SIGALRM, lambda s, f: os.kill(os.getpid(), signal.SIGTERM))
    try:
        code = run_logged([sys.executable, "-c", _FAMILY], os.environ, grace=5)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, alarm)
        signal.signal(signal.SIGTERM, previous)
    assert code == -signal.SIGTERM
    assert seen == [signal.SIGTERM]  # Airflow's own handler still ran
    child, grandchild = _pids(caplog)
    time.sleep(0.5)
    assert not _alive(child) and not _alive(grandchild)
