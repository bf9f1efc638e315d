"""Stopping between batches: SIGTERM turned into a flag, and the run-time limit.

Light on purpose (no MXNet): ``odp train`` installs the handler before anything heavy loads.

A SIGTERM never goes unanswered: before training proper starts (configuration, data, model)
there is nothing to save, so it stops the job at once (:class:`StopRequested` raised where
the job is); once ``fit`` runs it is a flag checked between batches (a checkpoint and the
best model are saved). Either way the process is gone :data:`STOP_GRACE_S` seconds after the
signal, whatever it was doing (a batch stuck in native code, a hung save).

SIGHUP is the same stop for a job whose parent is gone (the terminal closed, or the task
that started it died: ``odp train`` asks the kernel for SIGHUP then,
:func:`pipeline_lib.workers.follow_parent`). Nobody reads its output any more, so it goes to
``/dev/null`` first: the checkpoint is saved instead of the job dying of a broken pipe.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

#: Seconds from SIGTERM to a forced exit: the container contract's 120 s to save the model.
STOP_GRACE_S = 120.0
EXIT_SIGTERM = 143


class StopRequested(Exception):
    """A stop (signal or run-time limit) arrived between batches."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Stopper:
    """Turns SIGTERM into a flag checked between batches, plus the run-time limit."""

    def __init__(self, grace: float = STOP_GRACE_S) -> None:
        self.signal_reason: str | None = None
        self.deadline: float | None = None
        self.saving = False  # fit has started: a signal asks for a checkpoint first
        self._grace = grace
        self._timer: threading.Timer | None = None

    def install(self) -> None:
        self._previous = signal.signal(signal.SIGTERM, self._on_signal)
        self._previous_hup = signal.signal(signal.SIGHUP, self._on_hangup)

    def uninstall(self) -> None:
        """Put back the handlers that were there before (training may run in-process)."""
        signal.signal(signal.SIGTERM, self._previous)
        signal.signal(signal.SIGHUP, self._previous_hup)
        if self._timer is not None:
            self._timer.cancel()

    def start_saving(self) -> None:
        """From now on a signal is a flag: the loop saves a checkpoint, then stops."""
        self.saving = True

    def limit_runtime(self, seconds: float, started: float) -> None:
        """Stop ``seconds`` after the monotonic time ``started`` (0: no limit)."""
        if seconds:
            self.deadline = started + seconds

    def _on_signal(self, signum, _frame) -> None:
        self.signal_reason = f"received {signal.Signals(signum).name}"
        if self._timer is None:
            self._timer = threading.Timer(self._grace, self._give_up)
            self._timer.daemon = True
            self._timer.start()
        if not self.saving:
            raise StopRequested(self.signal_reason)

    def _on_hangup(self, signum, frame) -> None:
        """The parent is gone: output to ``/dev/null`` (its reader went with it), then stop."""
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            for fd in (1, 2):
                os.dup2(devnull, fd)
        finally:
            os.close(devnull)
        self._on_signal(signum, frame)

    def _give_up(self) -> None:
        """Still running ``grace`` seconds after the signal: exit now (workers and
        parameter-server roles die with this process, ``PR_SET_PDEATHSIG``)."""
        print(
            f"training: still running {self._grace:.0f} s after {self.signal_reason}; exiting",
            file=sys.stderr,
            flush=True,
        )
        os._exit(EXIT_SIGTERM)

    def __call__(self) -> str | None:
        if self.signal_reason:
            return self.signal_reason
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return "max_runtime_seconds reached"
        return None
