"""A run's pod plan from its Params: hosts, the job file under the run root, the deadline."""

from __future__ import annotations

from typing import Any

from ..runs import MAX_HOSTS, check_instance_count
from .pods import PodPlan

__all__ = ["MAX_HOSTS", "hosts_for", "make_plan"]


def hosts_for(instance_count: Any) -> tuple[str, ...]:
    """``algo-1`` .. ``algo-N`` (SageMaker's host names) for ``instance_count``."""
    return tuple(f"algo-{i}" for i in range(1, check_instance_count(instance_count) + 1))


def make_plan(
    run_root: str,
    dag_id: str,
    run_id: str,
    instance_count: Any,
    hyperparameters: dict[str, Any],
) -> PodPlan:
    """The plan of one run: pods write under ``{run_root}/train``."""
    from pipeline_lib import storage
    from pipeline_lib.hyperparameters import parse_value

    raw = hyperparameters.get("max_runtime_seconds")
    runtime = int(parse_value("max_runtime_seconds", raw)) if raw is not None else 0
    return PodPlan(
        dag_id=dag_id,
        run_id=run_id,
        output_uri=storage.join(run_root, "train"),
        hosts=hosts_for(instance_count),
        max_runtime_seconds=runtime,
    )
