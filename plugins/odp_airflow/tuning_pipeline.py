"""The tuning DAG's own tasks (TaskFlow wrappers over :mod:`odp_airflow.tuning`), under the
one failure policy; the shared ones (validate, convert, evaluate, register) come from
:mod:`odp_airflow.pipeline`.

How many trials train at once is the run's ``max_parallel_trials`` Param. Airflow fixes a
task's concurrency when the DAG is parsed, so ``trial`` gets a generous cap there
(:data:`~pipeline_lib.tuning.slots.MAX_PARALLEL_TRIALS`, also the Param's maximum) and each
trial takes one of its run's P slots in the study's database when it starts
(:mod:`pipeline_lib.tuning.slots`); a trial beyond P waits in its worker slot, asleep.
"""

from __future__ import annotations

from airflow.sdk import get_current_context, task
from airflow.task.trigger_rule import TriggerRule

from pipeline_lib.tuning.slots import MAX_PARALLEL_TRIALS

from .failure import TIMEOUTS, stage
from .links import publish_mlflow_url


@task(execution_timeout=TIMEOUTS["resolve_inputs"])
def start_study(inputs: dict) -> dict:
    """The space checked (before any data work), the study created or resumed, the MLflow
    parent run opened; ``slots``: one per trial still to run."""
    from odp_airflow import tuning

    params = dict(get_current_context()["params"])
    return stage(tuning.start_study)(inputs, params)


@task(execution_timeout=TIMEOUTS["resolve_inputs"])
def trial_slots(study: dict) -> list[int]:
    """What the trials are mapped over (Airflow maps over a task's whole result only)."""
    return list(study["slots"])


@task(execution_timeout=TIMEOUTS["train"], max_active_tis_per_dagrun=MAX_PARALLEL_TRIALS)
def trial(inputs: dict, validation: dict, converted: dict, study: dict, slot: int) -> dict:
    """One trial: a slot of the run's P, hyperparameters from the study, ``odp train``, the
    result told back."""
    from odp_airflow import tuning

    return publish_mlflow_url(stage(tuning.run_trial)(inputs, validation, converted, study, slot))


@task(execution_timeout=TIMEOUTS["register"], trigger_rule=TriggerRule.ALL_DONE_MIN_ONE_SUCCESS)
def select_best(study: dict) -> dict:
    """The best completed trial (its model, as ``train`` hands it on), summary and plots.
    Runs once every trial is done and one at least succeeded (a trial whose retries are
    spent does not stop the others' best from being registered)."""
    from odp_airflow import tuning

    return stage(tuning.select_best)(study)
