"""Helpers for forked worker processes."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


def reset_child_signals() -> None:
    """Give a forked worker the default SIGTERM/SIGINT behaviour.

    A fork inherits the parent's Python signal handlers. Inside an Airflow task the parent
    has one for SIGTERM, so ``Pool.terminate()`` would leave such workers running forever.
    """
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextlib.contextmanager
def default_signals_for_forks() -> Iterator[None]:
    """Fork worker pools (e.g. MXNet's DataLoader, which forks in its constructor) with the
    default SIGTERM/SIGINT handlers, then restore this process's own handlers.

    Pools that offer no initializer hook would otherwise inherit a handler that only sets
    a flag, and their workers would ignore ``Pool.terminate()`` forever.
    """
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
