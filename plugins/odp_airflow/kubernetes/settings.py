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

from pipeline_lib import bounds

VARIABLE = "odp_kubernetes"

_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$")
# Kubernetes' own name rules (apimachinery validation), checked when a run starts.
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")  # RFC 1123 label, <= 63
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$")  # qualified name
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")
# The distribution reference grammar (docker/distribution reference.go): [host[:port]/]path
# [:tag][@digest]; no shell characters, spaces or upper case in the path.
_IMAGE = re.compile(
    r"^(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
    r"(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*(?::[0-9]+)?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*)*"
    r"(?::[\w][\w.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$"
)
_PULL_POLICIES = ("Always", "IfNotPresent", "Never")
_TOLERATION_KEYS = {"key", "operator", "value", "effect", "tolerationSeconds"}
_OPERATORS = ("Exists", "Equal")
_EFFECTS = ("", "NoSchedule", "PreferNoSchedule", "NoExecute")
_WHY = {
    "termination_grace_seconds": " (odp train needs 120 s after SIGTERM to save)",
    "run_as_user": " (a non-root uid; >= 10000 keeps clear of host users)",
}
#: Where the S3 credentials Secret is mounted (a file, not environment variables).
CREDENTIALS_DIR = "/var/run/secrets/odp/s3"
# Upper bounds of the numeric settings (the one bounded parser, pipeline_lib.bounds).
_INT_BOUNDS = {
    "gpus": (0, 16),
    "run_as_user": (1, 2**31 - 1),
    "startup_timeout_seconds": (1, 86_400),
    "schedule_timeout_seconds": (1, 86_400),
    "termination_grace_seconds": (120, 3_600),
    "deadline_margin_seconds": (0, 86_400),
    "default_deadline_seconds": (60, 28 * 86_400),
    "dist_start_timeout_seconds": (1, 86_400),
}


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
    run_as_user: int = 10001  # >= 10000: no overlap with host users (image scanners ask it)
    # S3 credentials: a Secret holding an AWS shared credentials file, mounted read-only
    # (AWS_SHARED_CREDENTIALS_FILE); null for workload identity (IRSA, the service account).
    credentials_secret: str | None = "odp-s3"  # noqa: S105  a Secret name, not a secret
    credentials_key: str = "credentials"  # the Secret's key holding the file
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
        _name(self.namespace, "namespace", _DNS_LABEL, "a DNS-1123 label (lower case, <= 63)")
        _name(self.service_account, "service_account", _DNS_SUBDOMAIN, "a DNS-1123 subdomain")
        for name in ("credentials_secret", "priority_class"):
            if getattr(self, name) is not None:
                _name(getattr(self, name), name, _DNS_SUBDOMAIN, "a DNS-1123 subdomain")
        for secret in self.image_pull_secrets:
            _name(secret, "image_pull_secrets", _DNS_SUBDOMAIN, "a DNS-1123 subdomain")
        if not re.fullmatch(r"[-._a-zA-Z0-9]{1,253}", self.credentials_key):
            raise SettingsError(f"{VARIABLE}.credentials_key {self.credentials_key!r} is not a "
                                "Secret key ([-._a-zA-Z0-9])")  # fmt: skip
        if len(self.image) > 512 or not _IMAGE.match(self.image):
            raise SettingsError(
                f"{VARIABLE}.image {self.image[:80]!r} is not an image reference "
                "([registry[:port]/]name[:tag][@digest], lower-case name)"
            )
        for key, value in self.node_selector.items():
            _label_key(key, "node_selector")
            if not _LABEL_VALUE.match(value):
                raise SettingsError(
                    f"{VARIABLE}.node_selector[{key!r}] {value[:80]!r} is not a label value"
                )
        for i, toleration in enumerate(self.tolerations):
            _check_toleration(i, toleration)
        _name(self.cluster_domain, "cluster_domain", _DNS_SUBDOMAIN, "a DNS-1123 subdomain")
        if self.image_pull_policy not in _PULL_POLICIES:
            raise SettingsError(
                f"{VARIABLE}.image_pull_policy must be one of {', '.join(_PULL_POLICIES)}"
            )
        for name, (lo, hi) in _INT_BOUNDS.items():  # the one bounded parser
            try:
                bounds.parse_int(getattr(self, name), f"{VARIABLE}.{name}", minimum=lo, maximum=hi)
            except bounds.NumberError as exc:
                raise SettingsError(f"{exc}{_WHY.get(name, '')}") from None

    @property
    def on_finish_action(self) -> str:
        """Never one that leaves a running pod: ``delete_active_pod`` keeps only finished
        (failed) pods for debugging, and still deletes Pending and Running ones."""
        return "delete_active_pod" if self.keep_failed_pods else "delete_pod"


def _name(value: str, name: str, rule: re.Pattern, what: str) -> None:
    if not isinstance(value, str) or len(value) > 253 or not rule.match(value):
        raise SettingsError(f"{VARIABLE}.{name} {str(value)[:80]!r} is not {what}")


def _label_key(key: str, where: str) -> None:
    """A qualified name: ``[prefix/]name``, the prefix a DNS-1123 subdomain."""
    prefix, _, name = key.rpartition("/")
    if (prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix))) or not (
        len(name) <= 63 and _LABEL_NAME.match(name)
    ):
        raise SettingsError(f"{VARIABLE}.{where} key {key[:80]!r} is not a Kubernetes label key")


def _check_toleration(i: int, toleration: dict[str, Any]) -> None:
    where = f"{VARIABLE}.tolerations[{i}]"
    unknown = set(toleration) - _TOLERATION_KEYS
    if unknown:
        raise SettingsError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    operator = toleration.get("operator", "Equal")
    if operator not in _OPERATORS:
        raise SettingsError(f"{where}.operator must be one of {', '.join(_OPERATORS)}")
    if toleration.get("effect", "") not in _EFFECTS:
        raise SettingsError(f"{where}.effect must be one of {', '.join(e for e in _EFFECTS if e)}")
    key = toleration.get("key", "")
    if not isinstance(key, str):
        raise SettingsError(f"{where}.key must be a label key")
    if key:
        _label_key(key, f"tolerations[{i}]")
    if not key and operator != "Exists":
        raise SettingsError(f"{where}: an empty key needs operator Exists")
    value = toleration.get("value", "")
    if (
        not isinstance(value, str)
        or not _LABEL_VALUE.match(value)
        or (value and operator == "Exists")
    ):
        raise SettingsError(f"{where}.value must be a label value (none with operator Exists)")
    if "tolerationSeconds" in toleration:
        try:
            bounds.parse_int(toleration["tolerationSeconds"], f"{where}.tolerationSeconds",
                             minimum=0, maximum=28 * 86_400)  # fmt: skip
        except bounds.NumberError as exc:
            raise SettingsError(str(exc)) from None


def parse_settings(data: dict[str, Any] | None) -> KubernetesSettings:
    """Settings from a JSON object; an unknown key or a wrong type is a :class:`SettingsError`."""
    data = dict(data or {})
    if "env_from_secret" in data:  # before issue 27: credentials as environment variables
        raise SettingsError(
            f"{VARIABLE}.env_from_secret was replaced by credentials_secret: the Secret (key "
            f"'credentials': an AWS shared credentials file) is mounted as a file at "
            f"{CREDENTIALS_DIR}; null for workload identity"
        )
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
    if name == "priority_class" or name == "credentials_secret":
        if value is None or isinstance(value, str):
            return value or None
        raise SettingsError(f"{where} must be a string or null")
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise SettingsError(f"{where} must be true or false, got {value!r}")
        return value
    if isinstance(default, int):
        lo, hi = _INT_BOUNDS.get(name, (None, None))
        try:
            return bounds.parse_int(value, where, minimum=lo, maximum=hi)
        except bounds.NumberError as exc:
            raise SettingsError(f"{exc}{_WHY.get(name, '')}") from None
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
