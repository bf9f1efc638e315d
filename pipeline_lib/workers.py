"""Helpers for forked worker processes: default signals, and dying with the parent.

A worker must never outlive the process that forked it: a training job killed with SIGKILL
would otherwise leave its data-loader workers (about 0.9 GB each) running on the machine,
and a killed conversion would leave workers writing hidden ``.part`` files. Every forked
worker therefore asks the kernel for ``PR_SET_PDEATHSIG`` (SIGKILL when the parent dies)
right after the fork, then checks that the parent did not die before that.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
from collections.abc import Iterator

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# Resolved here, in the parent: a dlopen/dlsym in a child forked from a threaded process can
# deadlock on the loader lock that another thread held at the fork.
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def reset_child_signals() -> None:
    """Give a forked worker the default SIGTERM/SIGINT behaviour.

    A fork inherits the parent's Python signal handlers. Inside an Airflow task the parent
    has one for SIGTERM, so ``Pool.terminate()`` would leave such workers running forever.
    """
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def die_with_parent(parent_pid: int, sig: int = signal.SIGKILL) -> None:
    """In a forked worker: have the kernel send ``sig`` when the parent dies
    (``PR_SET_PDEATHSIG``), and exit at once if ``parent_pid`` is already gone.

    The kernel tracks the *thread* that forked: fork workers from a thread that lives as
    long as they should (the main thread, or a pool's own handler thread).
    """
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)


#: Set by odp's own supervisors (the DAG's task, ``odp tune``) for the ``odp`` command they
#: start: that command dies with them (:func:`follow_parent`).
PARENT_PID_ENV = "ODP_PARENT_PID"


def follow_parent(sig: int = signal.SIGTERM) -> None:
    """In a command started with :data:`PARENT_PID_ENV`: have the kernel send ``sig`` (a
    graceful stop, handled by the command) when that parent dies, and send it now if the
    parent is gone already. Asked by the child itself, after ``exec``: no code runs between
    ``fork`` and ``exec`` in the (threaded) parent."""
    raw = os.environ.get(PARENT_PID_ENV, "")
    if not raw.isdigit():
        return
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    if os.getppid() != int(raw):  # the parent died before the request took effect
        os.kill(os.getpid(), sig)


def init_worker(parent_pid: int) -> None:
    """Everything a forked worker does first: default signals, die with ``parent_pid``."""
    reset_child_signals()
    die_with_parent(parent_pid)


# Pools that take no initializer (MXNet's DataLoader) are covered by an at-fork hook that is
# armed only while :func:`default_signals_for_forks` is active in the forking process.
_armed_parent: int | None = None


def _after_fork_in_child() -> None:
    global _armed_parent
    parent, _armed_parent = _armed_parent, None  # a worker's own forks are not armed
    if parent is not None:
        die_with_parent(parent)


os.register_at_fork(after_in_child=_after_fork_in_child)


@contextlib.contextmanager
def default_signals_for_forks() -> Iterator[None]:
    """Fork worker pools (e.g. MXNet's DataLoader, which forks in its constructor) with the
    default SIGTERM/SIGINT handlers, then restore this process's own handlers; every process
    forked inside the block dies with this one (:func:`die_with_parent`).

    Pools that offer no initializer hook would otherwise inherit a handler that only sets
    a flag, and their workers would ignore ``Pool.terminate()`` forever.
    """
    global _armed_parent
    previous, _armed_parent = _armed_parent, os.getpid()
    try:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            for sig in saved:
                signal.signal(sig, signal.SIG_DFL)
            yield
        finally:
            for sig, handler in saved.items():
                signal.signal(sig, handler)
    finally:
        _armed_parent = previous
