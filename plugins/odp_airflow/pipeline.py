"""The pipeline's tasks, defined once and shared by every DAG that trains.

Each task is a thin TaskFlow wrapper over a stage in :mod:`odp_airflow.tasks` with the one
failure policy (:func:`~odp_airflow.failure.stage`) and its own ``execution_timeout``.
Calling them inside a DAG (``training_chain(inputs)``) builds the tasks there, so the
training DAG, the retraining DAG and the tuning DAG run the same code, not copies.
Nothing heavy is imported here: the stages import their libraries when they run.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import get_current_context, task

from .assets import CHAMPION_ALIAS, champion_asset
from .failure import TIMEOUTS, stage
from .kubernetes.operator import TrainingPodOperator
from .links import publish_mlflow_url


@task(execution_timeout=TIMEOUTS["resolve_inputs"])
def resolve_inputs(overrides: dict | None = None) -> dict:
    """The run's Params (with ``overrides`` from an upstream task, e.g. the retraining
    plan), checked and normalised into the inputs every later task reads."""
    from odp_airflow import tasks

    ctx = get_current_context()
    params, dag_id = {**ctx["params"], **(overrides or {})}, ctx["dag"].dag_id
    inputs = stage(tasks.resolve_inputs)(params, dag_id, ctx["run_id"])
    if inputs["compute"] == "kubernetes":  # the cluster settings now, not after conversion
        from odp_airflow.kubernetes import stages

        stage(stages.check_settings)()
    return inputs


@task.short_circuit(execution_timeout=TIMEOUTS["plan_retraining"])
def plan_retraining() -> dict:
    """What this retraining run trains on: the newest triggering asset event's data, or
    the configured data when its content hash changed since the champion was trained.
    Returns ``{}`` (and the run ends early, every later task skipped) when nothing changed."""
    from odp_airflow.retraining import plan
    from pipeline_lib.registry import get_champion

    ctx = get_current_context()
    events = [
        {"id": getattr(e, "id", None), "extra": e.extra, "timestamp": str(e.timestamp)}
        for asset_events in ctx["triggering_asset_events"].values()
        for e in asset_events
    ]
    params = dict(ctx["params"])
    return stage(plan)(params, events, stage(get_champion)(params["model_name"]))


@task(execution_timeout=TIMEOUTS["validate"])
def validate(inputs: dict) -> dict:
    """Every image and annotation checked; the run fails here on an invalid dataset."""
    from odp_airflow import tasks

    return stage(tasks.validate_dataset)(inputs)


@task(execution_timeout=TIMEOUTS["convert"])
def convert(inputs: dict, validation: dict) -> dict:
    """The validated dataset as RecordIO (cached by content)."""
    from odp_airflow import tasks

    return stage(tasks.convert_dataset)(inputs, validation)


@task(execution_timeout=TIMEOUTS["resolve_inputs"])
def train_plan(inputs: dict, validation: dict, converted: dict) -> list[dict]:
    """compute=kubernetes: the job file under the run root and every host's pod; local: none."""
    from odp_airflow.kubernetes import stages

    return stage(stages.plan_training)(inputs, validation, converted)


# Setup and teardown by ``as_teardown(setups=...)`` in training_chain, not by the @setup and
# @teardown decorators: those keep state in the module-level task and fail a second parse.
@task(execution_timeout=TIMEOUTS["register"])
def train_service(inputs: dict) -> str | None:
    """The headless Service that gives the pods of a multi-host run their DNS names."""
    from odp_airflow.kubernetes import stages

    return stage(stages.setup_service)(inputs)


@task(execution_timeout=TIMEOUTS["register"])
def train_service_delete(inputs: dict) -> bool:
    """Deletes the run's headless Service, also when training failed."""
    from odp_airflow.kubernetes import stages

    return stage(stages.teardown_service)(inputs)


# none_failed: with compute=local the pods' mapped task is skipped (mapped over no host).
@task(execution_timeout=TIMEOUTS["train"], trigger_rule="none_failed")
def train(inputs: dict, validation: dict, converted: dict) -> dict:
    """The SSD training job on the run's compute: local runs it here; kubernetes checks the
    completion manifest its pods wrote."""
    from odp_airflow import tasks

    if inputs.get("compute") == "kubernetes":
        from odp_airflow.kubernetes import stages

        return stage(stages.kubernetes_result)(inputs)
    return publish_mlflow_url(stage(tasks.train_local)(inputs, validation, converted))


@task(execution_timeout=TIMEOUTS["evaluate"])
def evaluate(inputs: dict, trained: dict, converted: dict | None = None) -> dict:
    """VOC07 mAP of the trained model on the validation channel."""
    from odp_airflow import tasks

    return publish_mlflow_url(stage(tasks.evaluate_trained)(inputs, trained, converted))


@task(execution_timeout=TIMEOUTS["register"], outlets=[CHAMPION_ALIAS])
def register(inputs: dict, trained: dict, evaluated: dict) -> dict:
    """A model version in MLflow (``candidate``; ``champion`` when it wins). When the
    champion moves, an event for the model's champion Asset (a deployment DAG's trigger)."""
    from odp_airflow import tasks

    result = publish_mlflow_url(stage(tasks.register_trained)(inputs, trained, evaluated))
    promotion = result.get("promotion") or {}
    if promotion.get("champion") == result["version"] != promotion.get("previous_champion"):
        get_current_context()["outlet_events"][CHAMPION_ALIAS].add(
            champion_asset(result["name"]),
            extra={"version": result["version"], "mAP": result.get("mAP")},
        )
    return result


def training_chain(inputs: Any) -> Any:
    """validate -> convert -> train (pods on Kubernetes) -> evaluate -> register, from a
    ``resolve_inputs`` result (an XComArg); returns the ``register`` task's result."""
    validation = validate(inputs)
    converted = convert(inputs, validation)
    plan = train_plan(inputs, validation, converted)
    service = train_service(inputs)
    pods = TrainingPodOperator.partial(
        task_id="train_pod",
        execution_timeout=TIMEOUTS["train"],
        doc_md="compute=kubernetes: one training pod per host (`algo-1..N`), mapped over "
        "`train_plan`; skipped on local compute. The pod reads its channels from the run "
        "root and writes the model, metrics and the completion manifest there.",
    ).expand_kwargs(plan)
    service >> pods >> train_service_delete(inputs).as_teardown(setups=service)
    trained = train(inputs, validation, converted)
    pods >> trained
    evaluated = evaluate(inputs, trained, converted)
    return register(inputs, trained, evaluated)
