"""Helpers for forked worker processes."""

from __future__ import annotations

import signal


def reset_child_signals() -> None:
    """Give a forked worker the default SIGTERM/SIGINT behaviour.

    A fork inherits the parent's Python signal handlers. Inside an Airflow task the parent
    has one for SIGTERM, so ``Pool.terminate()`` would leave such workers running forever.
    """
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
