"""The time budget of a training job: how many epochs fit, re-estimated from measured ones.

With ``time_budget_seconds`` (or SageMaker's ``max_runtime_seconds``, when that is set) the
learning-rate schedule is laid out over the time the job has rather than over ``epochs``,
which becomes an upper bound: after every epoch the epochs still to come are what is left of
the budget (minus a reserve for the final export and packaging) over the time an epoch
takes (training, validation and checkpoint: the mean of the last three), and the schedule's
end moves to that epoch. The job stops when the next epoch no longer fits, with its best
model saved. The time spent is kept in the checkpoint's loop state, so a resumed job
continues the schedule instead of restarting it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

#: the last epochs whose mean duration predicts the next ones
RECENT_EPOCHS = 3
#: seconds kept back for the export and packaging after the last epoch, at least
MIN_RESERVE_SECONDS = 10.0
#: and at least this share of the budget
RESERVE_FRACTION = 0.02


@dataclass
class TimeBudget:
    """``seconds`` of training for a job that may train at most ``max_epochs`` epochs;
    ``spent_before`` seconds went to earlier attempts (a resumed job), this one started at
    ``started`` on ``clock``."""

    seconds: float
    max_epochs: int
    started: float
    spent_before: float = 0.0
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)

    @property
    def reserve(self) -> float:
        """Seconds kept back after the last epoch (the final export and packaging)."""
        return max(MIN_RESERVE_SECONDS, RESERVE_FRACTION * self.seconds)

    def spent(self) -> float:
        """Seconds of the budget used so far, earlier attempts included."""
        return self.spent_before + self.clock() - self.started

    def planned_epochs(self, done: int, epoch_seconds: list[float]) -> int:
        """How many epochs the job trains in all, now that ``done`` are complete and took
        ``epoch_seconds``: those plus as many more as fit in what is left (never more than
        ``max_epochs``). Before the first epoch is measured, ``max_epochs``."""
        if not epoch_seconds:
            return self.max_epochs
        recent = epoch_seconds[-RECENT_EPOCHS:]
        per_epoch = max(sum(recent) / len(recent), 1e-3)
        left = self.seconds - self.reserve - self.spent()
        return min(self.max_epochs, done + max(0, math.floor(left / per_epoch)))


__all__ = ["TimeBudget"]
