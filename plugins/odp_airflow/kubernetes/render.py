"""Every Kubernetes object a run creates, rendered through the provider's own code path.

What the dry run prints and the tests validate: one pod per host, built by the DAG's
operator builder and ``KubernetesPodOperator.build_pod_request_obj()``, serialised with the
Kubernetes client's ``ApiClient().sanitize_for_serialization()``; plus the headless Service.
"""

from __future__ import annotations

from typing import Any

from .pods import PodPlan, build_pod_operator
from .service import service_manifest
from .settings import KubernetesSettings


def render_objects(settings: KubernetesSettings, plan: PodPlan) -> list[dict[str, Any]]:
    """The run's objects as API dicts: the Service (several hosts) first, then each pod."""
    from kubernetes.client import ApiClient

    api = ApiClient()
    objects: list[dict[str, Any]] = []
    service = service_manifest(settings, plan)
    if service is not None:
        objects.append(service)
    for index, host in enumerate(plan.hosts):
        op = build_pod_operator(settings, plan, host)
        pod = op.build_pod_request_obj(_context(plan, index), dry_run=True)
        objects.append(_prune(api.sanitize_for_serialization(pod)))
    return objects


def _prune(obj: Any) -> Any:
    """Drop empty values (the provider fills absent fields with [] and {})."""
    if isinstance(obj, dict):
        out = {k: _prune(v) for k, v in obj.items()}
        return {k: v for k, v in out.items() if v not in ({}, [], None)}
    if isinstance(obj, list):
        return [_prune(v) for v in obj]
    return obj


class _DryRunTI:
    """The task-instance fields the provider reads to label a pod (no database)."""

    def __init__(self, plan: PodPlan, map_index: int):
        self.dag_id, self.task_id, self.map_index, self.try_number = (
            plan.dag_id,
            "train_pod",
            map_index,
            1,
        )


def _context(plan: PodPlan, map_index: int) -> dict[str, Any]:
    return {"ti": _DryRunTI(plan, map_index), "run_id": plan.run_id, "dag": None}
