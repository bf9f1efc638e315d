"""The Kubernetes compute's stages as plain functions the DAG's tasks call.

``plan_training`` writes the job file under the run root and returns the pod arguments of
every host (none for local compute); ``setup_service``/``teardown_service`` manage the
headless Service of a multi-host run; ``kubernetes_result`` reads what the pods published,
trusting only the completion manifest.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

COMPUTES = ("local", "kubernetes")


def check_settings() -> None:
    """Load the cluster settings (Kubernetes' own name rules, bounded numbers): in the run's
    first task, so that a bad namespace or image fails before validation and conversion."""
    from .settings import load_settings

    load_settings()


def plan_training(
    inputs: dict[str, Any], validation: dict[str, Any], converted: dict[str, Any]
) -> dict[str, Any]:
    """The operator arguments of every host's pod (none for local compute)."""
    from pipeline_lib import storage
    from pipeline_lib.training.job import JobSpec, write_job

    from ..failure import StageFailed
    from ..tasks import training_hyperparameters
    from .plan import make_plan
    from .pods import pod_operator_kwargs
    from .settings import load_settings

    compute = inputs.get("compute", "local")
    count = inputs.get("instance_count", 1)
    if compute not in COMPUTES:
        raise StageFailed(f"Param 'compute' must be one of {', '.join(COMPUTES)}, got {compute!r}")
    if compute == "local":
        if count != 1:
            raise StageFailed(
                f"Param 'instance_count'={count} needs compute=kubernetes (local trains on one host)"
            )
        return []
    settings = load_settings()
    hyper = training_hyperparameters(inputs, validation, converted)
    try:
        plan = make_plan(inputs["run_root"], inputs["dag_id"], inputs["run_id"], count, hyper)
    except ValueError as exc:
        raise StageFailed(str(exc)) from None
    if not storage.is_s3(plan.output_uri):
        log.warning(
            "run root %s is a local folder: the pods must see it at the same path (use an "
            "s3:// artifact_root on a real cluster)",
            inputs["run_root"],
        )
    spec = JobSpec(
        channels=dict(converted["channels"]),
        input_format="recordio",
        hyperparameters=hyper,
        hosts=list(plan.hosts),
        output_uri=plan.output_uri,
    )
    log.info(
        "training job: %s (%d host(s), image %s)", write_job(spec), len(plan.hosts), settings.image
    )
    return [pod_operator_kwargs(settings, plan, host) for host in plan.hosts]


def setup_service(inputs: dict[str, Any]) -> str | None:
    """Create the headless Service of a multi-host run; None when there is nothing to do."""
    from .service import create_service
    from .settings import load_settings

    plan = _service_plan(inputs)
    if plan is None:
        return None
    settings = load_settings()
    return create_service(_client(settings.conn_id), settings, plan)


def teardown_service(inputs: dict[str, Any]) -> bool:
    """Delete the run's headless Service (also after a failed training)."""
    from .service import delete_service
    from .settings import load_settings

    plan = _service_plan(inputs)
    if plan is None:
        return False
    settings = load_settings()
    return delete_service(_client(settings.conn_id), settings, plan)


def _service_plan(inputs: dict[str, Any]):
    """The run's plan when it needs a Service (kubernetes, several hosts), else None."""
    from .plan import make_plan

    if inputs.get("compute") != "kubernetes" or inputs.get("instance_count", 1) < 2:
        return None
    return make_plan(
        inputs["run_root"], inputs["dag_id"], inputs["run_id"], inputs["instance_count"], {}
    )


def kubernetes_result(inputs: dict[str, Any]) -> dict[str, Any]:
    """The trained model the pods published, once the completion manifest checks out."""
    from pipeline_lib import storage
    from pipeline_lib.training.completion import verify_completion
    from pipeline_lib.training.job import JOB_FILE, read_job

    task_uri = storage.join(inputs["run_root"], "train")
    done = verify_completion(task_uri)
    job = read_job(storage.join(task_uri, JOB_FILE))
    return {
        "model_uri": done["model_uri"],
        "hyperparameters": job.hyperparameters,
        "training_metrics": done["metrics"],
    }


def _client(conn_id: str) -> Any:
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

    return KubernetesHook(conn_id=conn_id).core_v1_client
