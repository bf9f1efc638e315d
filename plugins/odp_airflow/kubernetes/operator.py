"""The KubernetesPodOperator of a training pod: the provider's operator, trusting only the
completion manifest and naming why a pod never started.

* A pod that ends "successfully" without a complete manifest (SIGTERM, lost node, a
  container runtime reporting success early) fails the task, so Airflow retries it and the
  new pod resumes from the checkpoints under the run root.
* A pod that stays Pending past the schedule/startup timeout fails with the reason from its
  status and events (no GPU node, image pull error), not only "took too long to start".
"""

from __future__ import annotations

from typing import Any

from airflow.providers.cncf.kubernetes.kubernetes_helper_functions import (
    PodLaunchFailedException,
)
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.cncf.kubernetes.utils.pod_manager import PodLaunchTimeoutException
from airflow.sdk.exceptions import AirflowException, AirflowFailException


class TrainingPodOperator(KubernetesPodOperator):
    """A training pod (built by :func:`odp_airflow.kubernetes.pods.pod_operator_kwargs`)."""

    def __init__(self, *, job_output_uri: str, host: str, chief: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.job_output_uri = job_output_uri
        self.host = host
        self.chief = chief

    def execute(self, context: Any) -> Any:
        try:
            result = super().execute(context)
        except AirflowException as exc:
            self._raise_job_failure(exc)
        if not self.deferrable:
            self._check_completion()
        return result

    def _raise_job_failure(self, exc: AirflowException) -> None:
        """The pod failed: the task's error is the job's own reason (``output/failure``,
        published under the run root); SageMaker's ``ClientError`` is not retried."""
        if isinstance(exc, PodLaunchFailedException | PodLaunchTimeoutException):
            raise exc
        from pipeline_lib import storage

        uri = storage.join(self.job_output_uri, "failure", self.host)
        try:
            reason = storage.read_bytes(uri).decode(errors="replace").strip()
        except (OSError, ValueError):
            reason = ""
        if not reason:
            raise exc
        if reason.startswith("ClientError"):
            raise AirflowFailException(f"odp train failed on {self.host}: {reason}") from None
        raise AirflowException(f"odp train failed on {self.host}: {reason}") from None

    def trigger_reentry(self, context: Any, event: dict[str, Any]) -> Any:
        try:
            result = super().trigger_reentry(context, event)
        except AirflowException as exc:
            self._raise_job_failure(exc)
        self._check_completion()
        return result

    def _check_completion(self) -> None:
        """The chief's pod succeeded: its completion manifest must be there and match."""
        if not self.chief:
            return  # only the chief host publishes the model and the manifest
        from pipeline_lib.training.completion import CompletionError, verify_completion

        try:
            done = verify_completion(self.job_output_uri)
        except CompletionError as exc:
            raise AirflowException(f"training pod ended without a complete result: {exc}") from None
        self.log.info("completion manifest verified: %s", done["model_uri"])

    def await_pod_start(self, pod: Any) -> None:
        try:
            super().await_pod_start(pod)
        except (PodLaunchFailedException, PodLaunchTimeoutException) as exc:
            reason = pending_reason(self.pod_manager, pod)
            raise type(exc)(f"{exc} Reason: {reason}") from None


def pending_reason(pod_manager: Any, pod: Any) -> str:
    """Why ``pod`` has not started: its containers' waiting reasons, its unmet conditions
    and its Warning events, in one line."""
    parts: list[str] = []
    try:
        remote = pod_manager.read_pod(pod)
        status = remote.status
        for cs in (status.container_statuses or []) if status else []:
            waiting = cs.state.waiting if cs.state else None
            if waiting and waiting.reason:
                parts.append(f"container {cs.name}: {waiting.reason}: {waiting.message or ''}")
        for cond in (status.conditions or []) if status else []:
            if cond.status == "False" and (cond.reason or cond.message):
                parts.append(f"{cond.type}: {cond.reason or ''}: {cond.message or ''}")
    except Exception as exc:  # noqa: BLE001  the reason is best effort, the failure is not
        parts.append(f"(pod status unavailable: {exc})")
    try:
        for event in pod_manager.read_pod_events(pod).items or []:
            if event.type == "Warning":
                parts.append(f"event {event.reason}: {event.message}")
    except Exception as exc:  # noqa: BLE001
        parts.append(f"(pod events unavailable: {exc})")
    seen: list[str] = []
    for part in parts:
        text = part.strip().rstrip(":").strip()
        if text not in seen:
            seen.append(text)
    return "; ".join(seen) or "no reason reported by the cluster"
