"""A tuning job's total budget of training epochs, shared by its trials through the study.

With a budget, trials are not all trained the same number of epochs: each trial may run up
to a per-trial maximum, larger than an even share, and the epochs that pruned trials did not
spend fund longer runs of the trials that survive the pruner. A trial's epochs are fixed
when it starts (its ``epochs`` hyperparameter, so its learning-rate schedule spans exactly
what it trains):

    min(per-trial maximum, budget left - minimum reserved for each trial still to come)

where the budget left is the total minus what finished trials trained and what running
trials were given. The first trials (the sampler's random startup, before TPE models
anything) explore on an even share. The budget is kept in the study (a user attribute), so
every process that starts a trial (``odp tune``, a mapped Airflow task, a resumed job)
draws from the same one; a resumed study keeps it.

Trials starting at the same moment (parallel Airflow trials) might both count the same
epochs as left: each re-reads the study after writing its own share and gives back any
excess, so the total is never exceeded (at worst a few epochs stay unused).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from .space import SpaceError

if TYPE_CHECKING:
    import optuna

BUDGET_ATTR = "odp.epoch_budget"
TRIAL_EPOCHS_ATTR = "odp.trial_epochs"  # the epochs a trial was given when it started


class BudgetSpent(RuntimeError):
    """No epoch of the tuning job's budget is left for another trial."""


@dataclass(frozen=True)
class EpochBudget:
    """``total_epochs`` over all trials; one trial trains at most ``max_trial_epochs``;
    ``min_trial_epochs`` are kept for every trial still to come (e.g. enough epochs for the
    pruner to judge it)."""

    total_epochs: int
    max_trial_epochs: int
    min_trial_epochs: int = 1

    def __post_init__(self) -> None:
        for name in ("total_epochs", "max_trial_epochs", "min_trial_epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SpaceError(f"epoch budget: {name}", f"{value!r}: expected an integer >= 1")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> EpochBudget:
        return cls(**json.loads(text))

    def check(self, planned_trials: int) -> None:
        """Refuse a budget that cannot give each planned trial one epoch."""
        if self.total_epochs < planned_trials:
            raise SpaceError(
                "epoch budget",
                f"{self.total_epochs} epochs for {planned_trials} trials: give every trial "
                "one epoch at least (raise the budget or lower the trials)",
            )

    def trial_epochs(self, others: list[optuna.trial.FrozenTrial], planned_trials: int) -> int:
        """The epochs the next trial may train, given the study's ``others`` trials (this
        one excluded) and the trials planned in all; 0 when nothing is left."""
        left = self.total_epochs - sum(epochs_committed(t) for t in others)
        to_come = max(0, planned_trials - len(others) - 1)
        even = max(1, self.total_epochs // max(1, planned_trials))
        reserve = min(self.min_trial_epochs, even) * to_come
        cap = self.max_trial_epochs
        if len(others) < exploring_trials(planned_trials):
            cap = min(cap, even)  # random startup trials: an even share, no more
        return max(0, min(cap, left - reserve))


def exploring_trials(planned_trials: int | None) -> int:
    """How many first trials the sampler draws at random before modelling: about a quarter
    of the planned trials (2 to 10; 3 when the count is not known)."""
    if not planned_trials:
        return 3
    return max(2, min(10, -(-planned_trials // 4)))


def epochs_committed(trial: optuna.trial.FrozenTrial) -> int:
    """Epochs a trial took from the budget: what it trained when it is over, what it was
    given while it runs."""
    trained = len(trial.intermediate_values)
    if trial.state.name == "RUNNING":
        return max(trained, int(trial.user_attrs.get(TRIAL_EPOCHS_ATTR, 0)))
    return trained


def study_budget(study: optuna.Study) -> EpochBudget | None:
    """The budget the study was created with, if any."""
    text = study.user_attrs.get(BUDGET_ATTR)
    return EpochBudget.from_json(text) if text else None


def claim_epochs(
    study: optuna.Study, trial: optuna.Trial, budget: EpochBudget, planned_trials: int
) -> int:
    """Give the just-asked ``trial`` its epochs from the budget and record them on it;
    :class:`BudgetSpent` (the trial told failed) when none is left."""
    from optuna.trial import TrialState

    others = [t for t in study.get_trials(deepcopy=False) if t.number != trial.number]
    epochs = budget.trial_epochs(others, planned_trials)
    trial.set_user_attr(TRIAL_EPOCHS_ATTR, epochs)
    # A trial started meanwhile may have counted the same epochs: give the excess back.
    excess = sum(epochs_committed(t) for t in study.get_trials(deepcopy=False))
    excess -= budget.total_epochs
    if excess > 0:
        epochs = max(0, epochs - excess)
        trial.set_user_attr(TRIAL_EPOCHS_ATTR, epochs)
    if epochs < 1:
        study.tell(trial.number, state=TrialState.FAIL)
        raise BudgetSpent(
            f"study {study.study_name!r}: its budget of {budget.total_epochs} epochs is spent"
        )
    return epochs
