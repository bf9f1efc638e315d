"""The headless Service of a multi-host run: stable DNS names ``algo-N.<service>`` for the
pods (``hostname`` + ``subdomain``), published before the pods are ready because ps-lite
connects while they start. Created by the DAG's setup task, deleted by its teardown task
(which runs even when training fails); both are idempotent.
"""

from __future__ import annotations

import logging
from typing import Any

from .pods import APP_LABEL, PS_PORT, RUN_LABEL, PodPlan
from .settings import KubernetesSettings

log = logging.getLogger(__name__)


def service_manifest(settings: KubernetesSettings, plan: PodPlan) -> dict[str, Any] | None:
    """The Service object of ``plan`` (None for a one-host run, which needs none)."""
    name = plan.service_name
    if name is None:
        return None
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": settings.namespace,
            "labels": {
                "app.kubernetes.io/name": APP_LABEL,
                "app.kubernetes.io/part-of": "odp",
                RUN_LABEL: plan.run_label,
            },
        },
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {RUN_LABEL: plan.run_label},
            "ports": [
                {"name": "ps-scheduler", "port": PS_PORT, "protocol": "TCP"},
                {"name": "peer-watch", "port": PS_PORT + 1, "protocol": "TCP"},
            ],
        },
    }


def create_service(client: Any, settings: KubernetesSettings, plan: PodPlan) -> str | None:
    """Create the run's Service through ``client`` (a ``CoreV1Api``); an existing one (a
    retried setup task) is kept. Returns its name."""
    from kubernetes.client.exceptions import ApiException

    body = service_manifest(settings, plan)
    if body is None:
        return None
    try:
        client.create_namespaced_service(namespace=settings.namespace, body=body)
        log.info("created headless Service %s/%s", settings.namespace, plan.service_name)
    except ApiException as exc:
        if exc.status != 409:
            raise
        log.info("headless Service %s/%s exists already", settings.namespace, plan.service_name)
    return plan.service_name


def delete_service(client: Any, settings: KubernetesSettings, plan: PodPlan) -> bool:
    """Delete the run's Service; False when there was none (already deleted, one host)."""
    from kubernetes.client.exceptions import ApiException

    name = plan.service_name
    if name is None:
        return False
    try:
        client.delete_namespaced_service(name=name, namespace=settings.namespace)
    except ApiException as exc:
        if exc.status != 404:
            raise
        return False
    log.info("deleted headless Service %s/%s", settings.namespace, name)
    return True
