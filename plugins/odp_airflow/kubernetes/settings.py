"""Cluster settings of the Kubernetes compute: one typed object, read at run time.

Where the cluster is (kubeconfig or in-cluster, context) lives in an Airflow connection of
type ``kubernetes`` (``conn_id``, default ``kubernetes_default``); everything else about the
pods is the JSON object of the Airflow Variable ``odp_kubernetes`` (also settable as the
environment variable ``AIRFLOW_VAR_ODP_KUBERNETES``). Nothing of it is in the DAG files or
its Params: a team points the DAG at its cluster without editing code.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, fields
from typing import Any

VARIABLE = "odp_kubernetes"

_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_PULL_POLICIES = ("Always", "IfNotPresent", "Never")


class SettingsError(ValueError):
    """A setting has the wrong type or value (one line naming it)."""


@dataclass(frozen=True)
class KubernetesSettings:
    """How training pods are built (values a cluster admin sets once per deployment)."""

    conn_id: str = "kubernetes_default"
    namespace: str = "odp"
    image: str = "odp-train:latest"
    image_pull_policy: str = "IfNotPresent"
    image_pull_secrets: tuple[str, ...] = ()
    service_account: str = "odp-training"
    gpus: int = 1
    cpu_request: str = "4"
    cpu_limit: str = "8"
    memory_request: str = "16Gi"
    memory_limit: str = "32Gi"
    shm_size: str = "8Gi"
    ml_volume_size: str = "100Gi"
    tmp_volume_size: str = "10Gi"
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[dict[str, Any], ...] = ()
    priority_class: str | None = None
    run_as_user: int = 1000
    env_from_secret: str | None = "odp-s3"  # noqa: S105  a Secret name, not a secret
    startup_timeout_seconds: int = 600
    schedule_timeout_seconds: int = 900
    termination_grace_seconds: int = 150
    deadline_margin_seconds: int = 3600
    default_deadline_seconds: int = 3 * 86400
    keep_failed_pods: bool = False
    deferrable: bool = False
    cluster_domain: str = "cluster.local"
    dist_start_timeout_seconds: int = 900

    def __post_init__(self) -> None:
        for name in ("cpu_request", "cpu_limit", "memory_request", "memory_limit"):
            _check_quantity(name, getattr(self, name))
        for name in ("shm_size", "ml_volume_size", "tmp_volume_size"):
            _check_quantity(name, getattr(self, name))
        if not _DNS_LABEL.match(self.namespace):
            raise SettingsError(f"{VARIABLE}.namespace {self.namespace!r} is not a DNS label")
        if self.image_pull_policy not in _PULL_POLICIES:
            raise SettingsError(
                f"{VARIABLE}.image_pull_policy must be one of {', '.join(_PULL_POLICIES)}"
            )
        if not self.image:
            raise SettingsError(f"{VARIABLE}.image is empty")
        if self.gpus < 0:
            raise SettingsError(f"{VARIABLE}.gpus must be >= 0, got {self.gpus}")
        if self.run_as_user < 1:
            raise SettingsError(f"{VARIABLE}.run_as_user must be a non-root uid (>= 1)")
        if self.termination_grace_seconds < 120:
            raise SettingsError(
                f"{VARIABLE}.termination_grace_seconds must be >= 120 (odp train needs up to "
                f"120 s after SIGTERM to save), got {self.termination_grace_seconds}"
            )
        for name in ("startup_timeout_seconds", "schedule_timeout_seconds"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{VARIABLE}.{name} must be >= 1")

    @property
    def on_finish_action(self) -> str:
        """Never one that leaves a running pod: ``delete_active_pod`` keeps only finished
        (failed) pods for debugging, and still deletes Pending and Running ones."""
        return "delete_active_pod" if self.keep_failed_pods else "delete_pod"


def parse_settings(data: dict[str, Any] | None) -> KubernetesSettings:
    """Settings from a JSON object; an unknown key or a wrong type is a :class:`SettingsError`."""
    data = dict(data or {})
    known = {f.name: f for f in fields(KubernetesSettings)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise SettingsError(
            f"{VARIABLE}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(known)}"
        )
    values: dict[str, Any] = {}
    for name, value in data.items():
        default = getattr(KubernetesSettings(), name)
        values[name] = _coerce(name, value, default)
    return KubernetesSettings(**values)


def load_settings() -> KubernetesSettings:
    """The settings of this deployment, from the Airflow Variable (or its environment
    variable); defaults when it is not set."""
    from airflow.sdk import Variable

    raw = Variable.get(VARIABLE, default=None)
    if raw is None:
        return KubernetesSettings()
    try:
        data = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError as exc:
        raise SettingsError(f"Variable {VARIABLE} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"Variable {VARIABLE} must hold a JSON object")
    return parse_settings(data)


def _coerce(name: str, value: Any, default: Any) -> Any:
    where = f"{VARIABLE}.{name}"
    if name == "priority_class" or name == "env_from_secret":
        if value is None or isinstance(value, str):
            return value or None
        raise SettingsError(f"{where} must be a string or null")
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise SettingsError(f"{where} must be true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise SettingsError(f"{where} must be an integer, got {value!r}")
        return value
    if isinstance(default, str):
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise SettingsError(f"{where} must be a string, got {value!r}")
        return value
    if isinstance(default, dict):
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise SettingsError(f"{where} must be an object of string -> string")
        return dict(value)
    if name == "image_pull_secrets":
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise SettingsError(f"{where} must be a list of secret names")
        return tuple(value)
    if name == "tolerations":
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise SettingsError(f"{where} must be a list of toleration objects")
        return tuple(value)
    raise SettingsError(f"{where}: unsupported value {value!r}")  # pragma: no cover


def _check_quantity(name: str, value: str) -> None:
    if not isinstance(value, str) or not _QUANTITY.match(value):
        raise SettingsError(
            f"{VARIABLE}.{name} {value!r} is not a Kubernetes quantity (e.g. 4, 500m, 16Gi)"
        )
