"""The tuning DAG's stages as plain functions (no Airflow objects inside), over
:mod:`pipeline_lib.tuning`: open the study, run one trial, pick the best.

A trial is one mapped task. It asks the study for its hyperparameters when it starts (so it
learns from every trial finished before), trains with ``odp train`` on the run's compute,
and tells the study how it ended. A retry of the same map index finds its trial again and
resumes it; a trial that fails on its hyperparameters is recorded as failed and its task
succeeds, so the search goes on.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .failure import StageFailed

log = logging.getLogger(__name__)

TUNING_PARAMS = (
    "search_space",
    "max_trials",
    "sampler",
    "pruner",
    "prune_startup_trials",
    "prune_warmup_epochs",
    "epoch_budget",
    "max_trial_epochs",
    "study_name",
    "tuning_seed",
    "max_parallel_trials",
)


def start_study(inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Check the space, create (or resume) the study and its MLflow parent run; the slots
    (map indexes) of the trials still to run."""
    from pipeline_lib.tuning import tracking
    from pipeline_lib.tuning.config import parse_config
    from pipeline_lib.tuning.job import finished_trials
    from pipeline_lib.tuning.study import default_storage, plan_search

    from .runs import safe_segment

    config = parse_config(params.get("search_space"), "Param 'search_space'")
    hyper = {**inputs["hyperparameters"], **config.static}
    n_trials = int(params.get("max_trials") or config.max_trials or 0)
    if n_trials < 1:
        raise StageFailed("Param 'max_trials' must be >= 1")
    pruner, budget = plan_search(
        params.get("pruner") or config.pruner or "median",
        int(hyper.get("epochs", 30)),
        n_trials,
        epoch_budget=params.get("epoch_budget") or config.epoch_budget,
        max_trial_epochs=params.get("max_trial_epochs") or config.max_trial_epochs,
        startup_trials=params.get("prune_startup_trials"),
        warmup_epochs=params.get("prune_warmup_epochs"),
    )
    parallel = _parallel_trials(params.get("max_parallel_trials"), config.max_parallel)
    name = str(params.get("study_name") or "").strip() or safe_segment(
        f"{inputs['dag_id']}.{inputs['run_id']}"
    )
    info = {
        "study": name,
        "storage": default_storage(),
        "sampler": params.get("sampler") or config.sampler or "tpe",
        "pruner": asdict(pruner),
        "budget": budget and asdict(budget),  # None: the study's own, if it has one
        "n_trials": n_trials,
        "seed": params.get("tuning_seed"),
        "max_parallel": parallel,
        "slots_run": f"{inputs['dag_id']}/{inputs['run_id']}",  # whose trial slots
        "space": config.space.to_json(),
        "static": config.static,
        # what select_best needs of the run's inputs (it depends on this task and the
        # trials only, so that it runs when they are done and not after a failed start)
        "run_id": inputs["run_id"],
        "run_root": inputs["run_root"],
        "hyperparameters": inputs["hyperparameters"],
    }
    study = _open(info)
    done = finished_trials(study)
    info["parent_run_id"] = tracking.parent_run(
        name, {"sampler": info["sampler"], "pruner": pruner.kind, "max_trials": str(n_trials)}
    )
    info["slots"] = list(range(max(0, n_trials - done)))
    log.info(
        "study %s: %d trials finished, %d to run, %d at once",
        name,
        done,
        len(info["slots"]),
        parallel,
    )
    return info


def _parallel_trials(param: Any, from_config: int | None) -> int:
    """P: the Param, else the config's ResourceLimits.MaxParallelTrainingJobs, else the
    default; at most the DAG's parse-time cap."""
    from pipeline_lib.tuning.slots import DEFAULT_PARALLEL_TRIALS, MAX_PARALLEL_TRIALS

    if param is not None:
        if isinstance(param, bool) or not isinstance(param, int) or param < 1:
            raise StageFailed(f"Param 'max_parallel_trials': {param!r}: expected an integer >= 1")
        if param > MAX_PARALLEL_TRIALS:
            raise StageFailed(
                f"Param 'max_parallel_trials': {param}: at most {MAX_PARALLEL_TRIALS}"
            )
        return param
    if from_config is not None and from_config > MAX_PARALLEL_TRIALS:
        log.warning(
            "ResourceLimits.MaxParallelTrainingJobs %d: running %d at once (the DAG's cap)",
            from_config,
            MAX_PARALLEL_TRIALS,
        )
    return min(from_config or DEFAULT_PARALLEL_TRIALS, MAX_PARALLEL_TRIALS)


def _open(info: dict[str, Any], slot: int = 0):
    """The study; trials running side by side draw from differently seeded samplers."""
    from pipeline_lib.tuning.budget import EpochBudget
    from pipeline_lib.tuning.space import parse_ranges
    from pipeline_lib.tuning.study import PrunerSpec, open_study

    seed = info["seed"]
    budget = info.get("budget")
    return open_study(
        info["study"],
        parse_ranges(info["space"]),
        info["static"],
        storage_url=info["storage"],
        sampler=info["sampler"],
        pruner=PrunerSpec(**info["pruner"]),
        seed=None if seed is None else seed + 7919 * slot,
        n_trials=info.get("n_trials"),
        budget=EpochBudget(**budget) if budget else None,
    )


def run_trial(
    inputs: dict[str, Any],
    validation: dict[str, Any],
    converted: dict[str, Any],
    info: dict[str, Any],
    slot: int,
) -> dict[str, Any]:
    """One trial, trained locally (``odp train`` subprocess). Transient failures raise (the
    task retries and resumes the same trial); others are recorded in the study. Waits for
    one of the run's ``max_parallel`` slots first."""
    from pipeline_lib.tuning.slots import TrialSlots, hold_slot

    from .failure import TIMEOUTS

    slot_key = f"{inputs['run_id']}/{slot}"
    # At most P trials of this run train at once (P is per run; Airflow's own cap on the
    # task is fixed at parse time). Hyperparameters are asked once the slot is held, so a
    # trial learns from every trial finished while it waited.
    slots = TrialSlots(info["storage"], info["slots_run"], info["max_parallel"])
    try:
        with hold_slot(slots, slot_key, TIMEOUTS["train"].total_seconds()):
            return _run_trial(inputs, validation, converted, info, slot, slot_key)
    finally:
        slots.close()


def _run_trial(
    inputs: dict[str, Any],
    validation: dict[str, Any],
    converted: dict[str, Any],
    info: dict[str, Any],
    slot: int,
    slot_key: str,
) -> dict[str, Any]:
    from pipeline_lib import storage
    from pipeline_lib.artifact import package
    from pipeline_lib.registry import run_url
    from pipeline_lib.training.completion import write_completion
    from pipeline_lib.tuning import tracking
    from pipeline_lib.tuning.budget import BudgetSpent
    from pipeline_lib.tuning.space import parse_ranges
    from pipeline_lib.tuning.trials import JobOutcome, finish_trial, start_trial

    from .tasks import run_odp_train, training_hyperparameters

    study = _open(info, slot)
    try:
        plan = start_trial(
            study,
            parse_ranges(info["space"]),
            info["static"],
            info["storage"],
            slot_key,
            planned_trials=info.get("n_trials"),
        )
    except BudgetSpent as exc:  # the trials before it trained every epoch of the budget
        log.info("%s: trial slot %d does not train", exc, slot)
        return {"number": None, "state": "BUDGET_SPENT", "value": None, "mlflow_url": None}
    log.info(
        "%s trial %d: %s",
        "resuming" if plan.resumed else "starting",
        plan.number,
        plan.hyperparameters,
    )
    run_id = tracking.trial_run(
        info["parent_run_id"], info["study"], plan.number, plan.hyperparameters
    )
    trial_inputs = {
        **inputs,
        "hyperparameters": {**inputs["hyperparameters"], **plan.hyperparameters},
    }
    hyper = training_hyperparameters(trial_inputs, validation, converted)
    outputs = storage.join(inputs["run_root"], "trials", f"trial-{plan.number}")
    ml_root = Path(_local_ml_root(outputs, inputs))
    env = {**plan.env, **tracking.trial_env(run_id)}
    code, paths = run_odp_train(ml_root, hyper, converted, env)
    metrics_file, failure_file = paths.output / "metrics.json", paths.output / "failure"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else None
    failure = failure_file.read_text(errors="replace") if failure_file.is_file() else None
    outputs_uri = None
    if code == 0 and metrics is not None:
        package(paths.model, storage.join(outputs, "model.tar.gz"))
        with storage.atomic_write(storage.join(outputs, "metrics.json")) as tmp:
            tmp.write_text(json.dumps(metrics))
        write_completion(outputs)  # last: what evaluate and register trust
        outputs_uri = outputs
    result = finish_trial(study, plan, JobOutcome(code, metrics, failure, outputs_uri))
    if result.state == "RUNNING":  # transient: the retry resumes this trial
        raise RuntimeError(f"trial {plan.number}: odp train exited with {code}: {result.failure}")
    tracking.end_trial_run(run_id, result.state, result.value, (metrics or {}).get("epochs", []))
    log.info("trial %d: %s, validation mAP %s", plan.number, result.state.lower(), result.value)
    return {**result.to_json(), "failure": failure, "mlflow_url": run_url(run_id)}


def _local_ml_root(outputs: str, inputs: dict[str, Any]) -> str:
    """The trial's container layout: beside its outputs for a local run root (a retry
    resumes from its checkpoints), else a folder of its own in the local artifact root."""
    from pipeline_lib import storage
    from pipeline_lib.settings import load_settings

    if not storage.is_s3(outputs):
        return str(Path(outputs, "ml"))
    return str(load_settings().home / "tuning" / "ml" / Path(outputs).name)


def select_best(info: dict[str, Any]) -> dict[str, Any]:
    """The best completed trial as the ``train`` task's result (for evaluate and register);
    the study's summary and plots on the parent MLflow run."""
    import optuna

    from pipeline_lib import storage
    from pipeline_lib.tuning import tracking
    from pipeline_lib.tuning.job import best_trial, summarize
    from pipeline_lib.tuning.plots import write_plots
    from pipeline_lib.tuning.slots import TrialSlots
    from pipeline_lib.tuning.trials import HYPER_ATTR, OUTPUTS_ATTR, SLOT_ATTR, fail_trial

    slots = TrialSlots(info["storage"], info["slots_run"], info["max_parallel"])
    try:  # every trial is done: leases a crashed trial left behind go too
        slots.clear()
    finally:
        slots.close()
    study = _open(info)
    prefix = f"{info['run_id']}/"
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if str(trial.user_attrs.get(SLOT_ATTR, "")).startswith(prefix):  # its retries are spent
            fail_trial(study, trial.number)
    summary = summarize(study)
    plots_uri = storage.join(info["run_root"], "select_best")
    with storage.atomic_dir(plots_uri, overwrite=True, writer="odp_airflow select_best") as folder:
        plots = write_plots(study, Path(folder))
        tracking.finish_parent(info["parent_run_id"], summary, plots)
    best = best_trial(study)  # NoCompletedTrial (a ValueError) fails the run: nothing to register
    outputs = best.user_attrs[OUTPUTS_ATTR]
    metrics = json.loads(storage.read_bytes(storage.join(outputs, "metrics.json")))
    log.info("best trial %d: validation mAP %.4f", best.number, best.value)
    return {
        "model_uri": storage.join(outputs, "model.tar.gz"),
        "job_uri": outputs,  # its completion manifest
        "hyperparameters": {**info["hyperparameters"], **best.user_attrs[HYPER_ATTR]},
        "training_metrics": metrics,
        "best_trial": best.number,
        "tuning": {k: summary[k] for k in ("study", "counts", "epochs", "best")},
    }
