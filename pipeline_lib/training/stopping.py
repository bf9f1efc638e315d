"""Stopping between batches: SIGTERM turned into a flag, and the run-time limit.

Light on purpose (no MXNet): ``odp train`` installs the handler before anything heavy loads.
"""

from __future__ import annotations

import signal
import time


class StopRequested(Exception):
    """A stop (signal or run-time limit) arrived between batches."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Stopper:
    """Turns SIGTERM into a flag checked between batches, plus the run-time limit."""

    def __init__(self) -> None:
        self.signal_reason: str | None = None
        self.deadline: float | None = None

    def install(self) -> None:
        self._previous = signal.signal(signal.SIGTERM, self._on_signal)

    def uninstall(self) -> None:
        """Put back the handler that was there before (training may run in-process)."""
        signal.signal(signal.SIGTERM, self._previous)

    def limit_runtime(self, seconds: float, started: float) -> None:
        """Stop ``seconds`` after the monotonic time ``started`` (0: no limit)."""
        if seconds:
            self.deadline = started + seconds

    def _on_signal(self, signum, _frame) -> None:
        self.signal_reason = f"received {signal.Signals(signum).name}"

    def __call__(self) -> str | None:
        if self.signal_reason:
            return self.signal_reason
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return "max_runtime_seconds reached"
        return None
