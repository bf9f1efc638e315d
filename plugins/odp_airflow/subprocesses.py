"""Long-running child processes of a task (``odp train``): logged live, never orphaned.

The child runs in a process group of its own, so stopping it reaches its data-loader
workers and parameter-server processes too. However the task ends, the group goes with it:

* the task returns or raises (an ``execution_timeout`` is an exception raised in the task):
  the group gets SIGTERM (training saves a checkpoint and the best model, within
  :data:`STOP_GRACE_S`), then SIGKILL for whatever is left;
* Airflow sends the task SIGTERM (marked failed in the UI, a cleared run): forwarded to
  the group at once, then Airflow's own handling goes on;
* the task process is SIGKILLed: the kernel sends the child SIGTERM (``PR_SET_PDEATHSIG``,
  which the child asks for itself: ``ODP_PARENT_PID``, :func:`pipeline_lib.workers.follow_parent`),
  and the child stops within its grace period whatever it was doing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping

from pipeline_lib.workers import PARENT_PID_ENV

log = logging.getLogger(__name__)

#: SIGTERM -> SIGKILL: the training container contract gives 120 s to save the model.
STOP_GRACE_S = 130.0


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to a process group; False when no process of it is left."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False


def stop_group(proc: subprocess.Popen, grace: float = STOP_GRACE_S) -> None:
    """SIGTERM the child's group, wait up to ``grace`` seconds for the child, then SIGKILL."""
    if proc.poll() is None and signal_group(proc.pid, signal.SIGTERM):
        log.warning("stopping %s (process group %d)", proc.args[0], proc.pid)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    signal_group(proc.pid, signal.SIGKILL)  # stragglers, e.g. workers the child left behind
    proc.wait()


@contextlib.contextmanager
def _forward_sigterm(pgid: int) -> Iterator[None]:
    """While the child runs, a SIGTERM to this process also reaches the child's group."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)

    def forward(signum: int, frame: object) -> None:
        signal_group(pgid, signal.SIGTERM)
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, forward)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_logged(cmd: list[str], env: Mapping[str, str], grace: float = STOP_GRACE_S) -> int:
    """Run ``cmd``, copying each output line into the log as it arrives; returns its exit code."""
    log.info("running: %s", " ".join(cmd))
    started = time.monotonic()
    proc = subprocess.Popen(  # noqa: S603  the task's own odp argv, no shell
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**env, "PYTHONUNBUFFERED": "1", PARENT_PID_ENV: str(os.getpid())},
        start_new_session=True,
    )
    try:
        with _forward_sigterm(proc.pid):
            assert proc.stdout is not None  # noqa: S101  narrows the type: stdout=PIPE above
            for line in proc.stdout:
                log.info("%s", line.rstrip())
            proc.wait()
    finally:
        stop_group(proc, grace)
        if proc.stdout is not None:
            proc.stdout.close()
    log.info("%s exited with %s after %.0f s", cmd[0], proc.returncode, time.monotonic() - started)
    return proc.returncode
