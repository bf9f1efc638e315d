"""The training pods: one function turns cluster settings and a run's plan into the
KubernetesPodOperator arguments of every host.

:func:`pod_operator_kwargs` is the single place a training pod is described. The DAG maps
the operator over its result (``TrainingPodOperator.partial(...).expand_kwargs(...)``), the
dry run and the tests build the operator from it with :func:`build_pod_operator` and render
it through the provider's own ``build_pod_request_obj``. Everything is JSON (it travels as
XCom); what the operator only takes as Kubernetes model objects (resources, security
contexts, volumes, tolerations) goes into its ``pod_template_dict``.

The pod follows the restricted Pod Security Standard: non-root, no privilege escalation, all
capabilities dropped, seccomp ``RuntimeDefault``, read-only root filesystem with writable
``emptyDir`` volumes for ``/opt/ml`` and ``/tmp`` and a memory-backed ``/dev/shm``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from .settings import CREDENTIALS_DIR, KubernetesSettings

ML_ROOT = "/opt/ml"
CONTAINER = "base"  # the operator's base container name
PS_PORT = 9091  # ps-lite scheduler (DMLC_PS_ROOT_PORT); the peer watch listens on +1
APP_LABEL = "odp-train"
RUN_LABEL = "odp.run"
HOST_LABEL = "odp.host"


@dataclass(frozen=True)
class PodPlan:
    """What one run's training pods need besides the cluster settings."""

    dag_id: str
    run_id: str
    output_uri: str  # the train task's folder under the run root (job.json, results)
    hosts: tuple[str, ...]
    max_runtime_seconds: int = 0  # the job's stopping condition (0: none)

    @property
    def job_uri(self) -> str:
        from pipeline_lib import storage
        from pipeline_lib.training.job import JOB_FILE

        return storage.join(self.output_uri, JOB_FILE)

    @property
    def run_label(self) -> str:
        """A label value and DNS label unique to the run (names may be long or odd)."""
        digest = hashlib.sha256(f"{self.dag_id}/{self.run_id}".encode()).hexdigest()[:10]
        stem = re.sub(r"[^a-z0-9-]+", "-", self.dag_id.lower()).strip("-")[:40].strip("-")
        return f"{stem or 'odp'}-{digest}"

    @property
    def service_name(self) -> str | None:
        """The headless Service of a multi-host run (its DNS subdomain); None for one host."""
        return f"odp-{self.run_label}"[:63].rstrip("-") if len(self.hosts) > 1 else None


def active_deadline_seconds(settings: KubernetesSettings, plan: PodPlan) -> int:
    """Always set: the job's ``max_runtime_seconds`` plus a margin for staging data and
    saving results (the job stops itself first); the settings' default without one."""
    if plan.max_runtime_seconds > 0:
        return plan.max_runtime_seconds + settings.deadline_margin_seconds
    return settings.default_deadline_seconds


def pod_operator_kwargs(settings: KubernetesSettings, plan: PodPlan, host: str) -> dict[str, Any]:
    """The KubernetesPodOperator arguments of ``host``'s training pod (JSON-able)."""
    if host not in plan.hosts:
        raise ValueError(f"host {host!r} is not among {list(plan.hosts)}")
    service = plan.service_name
    env = {
        "ML_ROOT": ML_ROOT,
        "PYTHONUNBUFFERED": "1",
        "ODP_DIST_START_TIMEOUT": str(settings.dist_start_timeout_seconds),
    }
    if service:
        env["DMLC_PS_ROOT_PORT"] = str(PS_PORT)
    if settings.credentials_secret:  # the Secret's file (pod_template mounts it)
        env["AWS_SHARED_CREDENTIALS_FILE"] = f"{CREDENTIALS_DIR}/credentials"
    return {
        "kubernetes_conn_id": settings.conn_id,
        "namespace": settings.namespace,
        "image": settings.image,
        "image_pull_policy": settings.image_pull_policy,
        "name": f"odp-train-{host}-{plan.run_label}"[:53].rstrip("-"),
        # No command: the image's ENTRYPOINT (tini -> odp train) stays PID 1 and forwards
        # SIGTERM, so training saves within the grace period.
        "arguments": ["--job", plan.job_uri, "--host", host],
        "env_vars": env,
        "labels": {
            "app.kubernetes.io/name": APP_LABEL,
            "app.kubernetes.io/part-of": "odp",
            RUN_LABEL: plan.run_label,
            HOST_LABEL: host,
        },
        "hostname": host,
        "subdomain": service,
        "service_account_name": settings.service_account,
        "priority_class_name": settings.priority_class,
        "node_selector": dict(settings.node_selector) or None,
        "active_deadline_seconds": active_deadline_seconds(settings, plan),
        "termination_grace_period": settings.termination_grace_seconds,
        "startup_timeout_seconds": settings.startup_timeout_seconds,
        "schedule_timeout_seconds": settings.schedule_timeout_seconds,
        "on_finish_action": settings.on_finish_action,
        "on_kill_action": "delete_pod",
        # Reattach to this try's pod when the worker restarts (labels carry the try number;
        # a pod of an earlier try is never adopted). ``durable`` is its name on Airflow 3.3+.
        "durable": True,
        "deferrable": settings.deferrable,
        "get_logs": True,
        "log_events_on_failure": True,
        # Results go through storage and the completion manifest, never the XCom sidecar.
        "do_xcom_push": False,
        "termination_message_policy": "FallbackToLogsOnError",
        "pod_template_dict": pod_template(settings, plan, host),
        "host": host,
        "chief": host == plan.hosts[0],
        "job_output_uri": plan.output_uri,
    }


def pod_template(settings: KubernetesSettings, plan: PodPlan, host: str) -> dict[str, Any]:
    """The parts of the pod the operator takes only as a template: security, resources,
    volumes, tolerations, pull secrets, DNS search for the peers' short host names."""
    resources: dict[str, dict[str, str]] = {
        "requests": {"cpu": settings.cpu_request, "memory": settings.memory_request},
        "limits": {"cpu": settings.cpu_limit, "memory": settings.memory_limit},
    }
    if settings.gpus:
        resources["limits"]["nvidia.com/gpu"] = str(settings.gpus)
        resources["requests"]["nvidia.com/gpu"] = str(settings.gpus)
    container: dict[str, Any] = {
        "name": CONTAINER,
        "resources": resources,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": settings.run_as_user,
            "runAsGroup": settings.run_as_user,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "privileged": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        # The job's failure reason (SageMaker's output/failure) becomes the container's
        # termination message, which the operator puts in the task's error.
        "terminationMessagePath": f"{ML_ROOT}/output/failure",
        "volumeMounts": [
            {"name": "dshm", "mountPath": "/dev/shm"},  # noqa: S108  a pod volume
            {"name": "ml", "mountPath": ML_ROOT},
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108  a pod volume, not a host path
        ],
    }
    volumes = [
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": settings.shm_size}},
        {"name": "ml", "emptyDir": {"sizeLimit": settings.ml_volume_size}},
        {"name": "tmp", "emptyDir": {"sizeLimit": settings.tmp_volume_size}},
    ]
    if settings.credentials_secret:  # S3 credentials as a read-only file, never as env vars
        volumes.append(
            {
                "name": "s3-credentials",
                "secret": {
                    "secretName": settings.credentials_secret,
                    "items": [{"key": settings.credentials_key, "path": "credentials"}],
                    "defaultMode": 0o440,
                    "optional": True,
                },
            }
        )
        container["volumeMounts"].append(
            {"name": "s3-credentials", "mountPath": CREDENTIALS_DIR, "readOnly": True}
        )

    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": settings.run_as_user,
            "runAsGroup": settings.run_as_user,
            "fsGroup": settings.run_as_user,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
    }
    if settings.tolerations:
        spec["tolerations"] = [dict(t) for t in settings.tolerations]
    if settings.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": n} for n in settings.image_pull_secrets]
    service = plan.service_name
    if service:  # resourceconfig.json names peers algo-N: resolve them in the subdomain
        domain = f"{service}.{settings.namespace}.svc.{settings.cluster_domain}"
        spec["dnsConfig"] = {"searches": [domain]}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {}, "spec": spec}


def build_pod_operator(
    settings: KubernetesSettings, plan: PodPlan, host: str, task_id: str = "train_pod"
):
    """The operator of ``host``'s pod, as the DAG's mapped task builds it."""
    from .operator import TrainingPodOperator

    return TrainingPodOperator(task_id=task_id, **pod_operator_kwargs(settings, plan, host))
