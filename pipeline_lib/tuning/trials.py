"""One trial: ask the study for its hyperparameters, and tell it how the training job ended.

Training itself runs elsewhere (a local subprocess, an Airflow task, a pod): the caller runs
``odp train`` with :attr:`TrialPlan.env` and hands the job's exit code and
``output/metrics.json`` back to :func:`finish_trial`, which records the trial as

* ``COMPLETE`` with the job's best validation mAP,
* ``PRUNED`` when the pruner stopped it (training ended cleanly, the best model kept),
* ``FAIL`` when the job failed on its input (``ClientError``: e.g. a learning rate that
  diverges); the study goes on without it.

Any other failure is transient: :func:`finish_trial` leaves the trial running, so a retry of
the same slot (:func:`start_trial` with the same ``slot``) trains it again with the same
hyperparameters and resumes from its checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .budget import TRIAL_EPOCHS_ATTR, BudgetSpent, claim_epochs, study_budget
from .report import trial_env
from .space import SearchSpace

if TYPE_CHECKING:
    import optuna

SLOT_ATTR = "odp.slot"  # which runner slot holds a trial (a retry finds its trial again)
HYPER_ATTR = "odp.hyperparameters"
OUTPUTS_ATTR = "odp.outputs_uri"  # where the trial's model.tar.gz and metrics.json are


@dataclass(frozen=True)
class TrialPlan:
    """What a trial's training job needs: its number, hyperparameters and environment."""

    number: int
    hyperparameters: dict[str, str]
    env: dict[str, str]
    resumed: bool = False  # an earlier attempt of the same slot started it


@dataclass(frozen=True)
class JobOutcome:
    """How a trial's training job ended."""

    exit_code: int
    metrics: Mapping[str, Any] | None = None  # output/metrics.json when written
    failure: str | None = None  # output/failure when written
    outputs_uri: str | None = None  # the trial's outputs (its model), kept in the study


@dataclass(frozen=True)
class TrialResult:
    """What the study recorded: ``state`` is COMPLETE, PRUNED, FAIL or RUNNING (transient)."""

    number: int
    state: str
    value: float | None
    hyperparameters: dict[str, str]
    epochs: int = 0
    failure: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "state": self.state,
            "value": self.value,
            "hyperparameters": self.hyperparameters,
            "epochs": self.epochs,
            "failure": self.failure,
            **self.extra,
        }


def start_trial(
    study: optuna.Study,
    space: SearchSpace,
    static: Mapping[str, str],
    storage_url: str,
    slot: str | None = None,
    planned_trials: int | None = None,
) -> TrialPlan:
    """A new trial with hyperparameters from the sampler (static ones beside them), or the
    trial that ``slot`` already started (a retry, a resumed job) with the same values.

    When the study has an epoch budget (:mod:`.budget`), the new trial's ``epochs`` is its
    share of it (``planned_trials``: the trials of the job in all); :class:`BudgetSpent`
    when nothing is left."""
    import optuna

    if slot is not None:
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            if trial.user_attrs.get(SLOT_ATTR) == slot:
                hyper = dict(trial.user_attrs[HYPER_ATTR])
                return TrialPlan(trial.number, hyper, _env(study, storage_url, trial.number), True)
    budget = study_budget(study)
    planned = planned_trials or len(study.get_trials(deepcopy=False)) + 1
    if budget is not None and budget.trial_epochs(study.get_trials(deepcopy=False), planned) < 1:
        raise BudgetSpent(
            f"study {study.study_name!r}: its budget of {budget.total_epochs} epochs is spent"
        )
    trial = study.ask()
    hyper = {**static, **space.suggest(trial)}
    if budget is not None:
        epochs = claim_epochs(study, trial, budget, planned)
        if "epochs" in space.names and int(hyper["epochs"]) < epochs:  # tuned, and shorter
            epochs = int(hyper["epochs"])
            trial.set_user_attr(TRIAL_EPOCHS_ATTR, epochs)
        hyper["epochs"] = str(epochs)
    if slot is not None:
        trial.set_user_attr(SLOT_ATTR, slot)
    trial.set_user_attr(HYPER_ATTR, hyper)
    return TrialPlan(trial.number, hyper, _env(study, storage_url, trial.number))


def _env(study: optuna.Study, storage_url: str, number: int) -> dict[str, str]:
    return trial_env(storage_url, study.study_name, number)


def finish_trial(study: optuna.Study, plan: TrialPlan, outcome: JobOutcome) -> TrialResult:
    """Record the job's end in the study (see the module docstring)."""
    from optuna.trial import TrialState

    metrics = dict(outcome.metrics or {})
    epochs = int(metrics.get("epochs_completed") or 0)
    trial = _trial(study, plan.number)
    if trial.state != TrialState.RUNNING:  # told already (a retried task that had finished)
        return _result(trial, epochs)
    if outcome.outputs_uri:
        _set_attr(study, plan, OUTPUTS_ATTR, outcome.outputs_uri)
    if outcome.exit_code == 0 and metrics.get("validation:mAP") is not None:
        value = float(metrics["validation:mAP"])
        if metrics.get("status") == "pruned":
            study.tell(plan.number, state=TrialState.PRUNED)
        else:
            study.tell(plan.number, value)
        return _result(_trial(study, plan.number), epochs, best=value)
    failure = (outcome.failure or f"exited with {outcome.exit_code}").strip()
    if failure.startswith("ClientError"):  # the trial's own input: record it, go on
        study.tell(plan.number, state=TrialState.FAIL)
        return _result(_trial(study, plan.number), epochs, failure=failure)
    return TrialResult(plan.number, "RUNNING", None, plan.hyperparameters, epochs, failure)


def _set_attr(study: optuna.Study, plan: TrialPlan, key: str, value: Any) -> None:
    """A user attribute on a running trial known by number (a trial object of another
    process, e.g. an earlier attempt, is not at hand)."""
    from .report import ENV_STORAGE
    from .study import storage

    rdb = storage(plan.env[ENV_STORAGE])
    study_id = rdb.get_study_id_from_name(study.study_name)
    rdb.set_trial_user_attr(
        rdb.get_trial_id_from_study_id_trial_number(study_id, plan.number), key, value
    )


def fail_trial(study: optuna.Study, number: int) -> None:
    """Give up on a running trial (its retries are spent, or its runner is gone)."""
    from optuna.trial import TrialState

    if _trial(study, number).state == TrialState.RUNNING:
        study.tell(number, state=TrialState.FAIL)


def _trial(study: optuna.Study, number: int) -> optuna.trial.FrozenTrial:
    return study.get_trials(deepcopy=False)[number]


def _result(
    trial: optuna.trial.FrozenTrial,
    epochs: int,
    best: float | None = None,
    failure: str | None = None,
) -> TrialResult:
    value = trial.value if trial.value is not None else best
    hyper = dict(trial.user_attrs.get(HYPER_ATTR, {}))
    return TrialResult(trial.number, trial.state.name, value, hyper, epochs, failure)
