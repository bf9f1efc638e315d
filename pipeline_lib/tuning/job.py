"""A tuning job: trials until the study holds N finished ones, the best of them, a summary.

:func:`run_sequential` is ``odp tune`` (one trial after another on this machine); the tuning
DAG runs the same steps (:func:`~.trials.start_trial`, training, :func:`~.trials.finish_trial`)
as parallel tasks and calls :func:`summarize` at the end.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .budget import BudgetSpent, EpochBudget
from .config import TuningConfig
from .study import PrunerSpec, open_study
from .trials import HYPER_ATTR, JobOutcome, TrialPlan, fail_trial, finish_trial, start_trial

if TYPE_CHECKING:
    import optuna

FINISHED = ("COMPLETE", "PRUNED", "FAIL")
EXIT_INTERRUPTED = 143  # odp train stopped by SIGTERM: resume the trial later


class NoCompletedTrial(ValueError):
    """No trial of the study completed: there is no best model to pick."""


class TuningInterrupted(RuntimeError):
    """A trial's training was stopped by a signal; running the job again resumes it."""


@dataclass(frozen=True)
class TuneSettings:
    """How to run a tuning job; the study's name and database make it resumable."""

    study: str
    storage_url: str
    n_trials: int
    sampler: str = "tpe"
    pruner: PrunerSpec = field(default_factory=PrunerSpec)
    seed: int | None = None
    budget: EpochBudget | None = None  # None: the study's own, if it has one
    slot: str = "cli"  # the runner's name: its interrupted trial is resumed, not replaced
    mlflow: bool = True


#: Runs one trial's training job: ``launch(plan, env)`` with ``env`` added to the plan's.
Launch = Callable[[TrialPlan, dict[str, str]], JobOutcome]


def finished_trials(study: optuna.Study) -> int:
    """Trials that are over: complete, pruned or failed."""
    return sum(1 for t in study.get_trials(deepcopy=False) if t.state.name in FINISHED)


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial:
    """The completed trial with the highest validation mAP (the earliest among equals)."""
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if not complete:
        raise NoCompletedTrial(
            f"study {study.study_name!r}: no trial completed (pruned or failed trials "
            "have no final model); see the trials' failures, widen the space or add trials"
        )
    return max(complete, key=lambda t: (t.value, -t.number))


def summarize(study: optuna.Study) -> dict[str, Any]:
    """Counts by state, epochs spent, the best trial and every trial, as JSON."""
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    counts = {s.lower(): 0 for s in (*FINISHED, "RUNNING")}
    for t in trials:
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    rows = [
        {
            "number": t.number,
            "state": t.state.name,
            "value": t.value,
            "epochs": len(t.intermediate_values),
            "hyperparameters": t.user_attrs.get(HYPER_ATTR, {}),
        }
        for t in trials
    ]
    try:
        best = best_trial(study)
        best_row: dict[str, Any] | None = rows[best.number]
    except NoCompletedTrial:
        best_row = None
    return {
        "study": study.study_name,
        "counts": counts,
        "epochs": sum(r["epochs"] for r in rows),
        "best": best_row,
        "trials": rows,
    }


def run_sequential(
    config: TuningConfig,
    settings: TuneSettings,
    launch: Launch,
    plots_dir: Path,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Trials one after another until ``settings.n_trials`` are finished; the summary.

    A trial failing on its hyperparameters is recorded as failed and the search goes on; a
    trial stopped by a signal (or Ctrl-C) stays running in the study, and the next call with
    the same study resumes it from its checkpoint. With an epoch budget the job ends when
    the budget is spent, maybe before ``settings.n_trials``.
    """
    from . import tracking
    from .plots import write_plots

    if settings.budget is not None:
        settings.budget.check(settings.n_trials)
    study = open_study(
        settings.study,
        config.space,
        config.static,
        storage_url=settings.storage_url,
        sampler=settings.sampler,
        pruner=settings.pruner,
        seed=settings.seed,
        n_trials=settings.n_trials,
        budget=settings.budget,
    )
    parent = None
    if settings.mlflow:
        parent = tracking.parent_run(
            settings.study, {"sampler": settings.sampler, "pruner": settings.pruner.kind}
        )
    done = finished_trials(study)
    if done:
        log(f"study {settings.study!r}: resuming with {done} of {settings.n_trials} trials done")
    while finished_trials(study) < settings.n_trials:
        try:
            plan = start_trial(
                study,
                config.space,
                config.static,
                settings.storage_url,
                settings.slot,
                planned_trials=settings.n_trials,
            )
        except BudgetSpent as exc:
            log(f"{exc}: no more trials")
            break
        verb = "resuming" if plan.resumed else "starting"
        log(f"{verb} trial {plan.number}: {_short(plan.hyperparameters, config)}")
        env = {}
        run_id = None
        if parent:
            run_id = tracking.trial_run(parent, settings.study, plan.number, plan.hyperparameters)
            env = tracking.trial_env(run_id)
        outcome = launch(plan, env)
        if outcome.exit_code == EXIT_INTERRUPTED:
            raise TuningInterrupted(
                f"trial {plan.number} was stopped; run the same command again to resume it"
            )
        result = finish_trial(study, plan, outcome)
        if result.state == "RUNNING":  # not the trial's input: still, one machine goes on
            fail_trial(study, plan.number)
            result = finish_trial(study, plan, outcome)
        if run_id:
            epochs = (outcome.metrics or {}).get("epochs", [])
            tracking.end_trial_run(run_id, result.state, result.value, epochs)
        value = "-" if result.value is None else f"{result.value:.4f}"
        reason = (
            f" ({outcome.failure.strip()[:200]})"
            if result.state == "FAIL" and outcome.failure
            else ""
        )
        log(f"trial {plan.number}: {result.state.lower()}, validation mAP {value}{reason}")
    summary = summarize(study)
    plots = write_plots(study, plots_dir)
    summary["plots"] = [str(p) for p in plots]
    if parent:
        tracking.finish_parent(parent, summary, plots)
        summary["mlflow_run_id"] = parent
    return summary


def _short(hyper: dict[str, str], config: TuningConfig) -> str:
    return ", ".join(f"{k}={hyper[k]}" for k in config.space.names)
