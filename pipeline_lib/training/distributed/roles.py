"""Role planning: which ps-lite roles a host runs, their ``DMLC_*`` variables, the kvstore type.

Pure functions of resourceconfig.json and the environment (plus a DNS lookup of the chief),
so the plan is tested without starting anything.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..errors import DistributedError, TrainingError

ENV_ADDRESSES = "ODP_DIST_HOST_ADDRESSES"
ENV_WATCH_PORT = "ODP_DIST_WATCH_PORT"
ENV_START_TIMEOUT = "ODP_DIST_START_TIMEOUT"
DEFAULT_PORT = 9091
DEFAULT_START_TIMEOUT = 900.0


def kv_store_type(kv_store: str, num_hosts: int, num_devices: int) -> str:
    """The kvstore to create for a ``kv_store`` hyperparameter on this cluster.

    Several hosts: ``device`` (the default) means ``dist_sync``, as in SageMaker; ``local``
    cannot span hosts. One host: ``device`` with several GPUs, ``local`` otherwise (a ``dist_*``
    value on one host needs no parameter server).
    """
    if num_hosts > 1:
        if kv_store == "device":
            return "dist_sync"
        if kv_store.startswith("dist"):
            return kv_store
        raise TrainingError(
            f"kv_store={kv_store} cannot train across {num_hosts} hosts; use dist_sync or "
            "dist_async (or leave kv_store unset)"
        )
    if kv_store == "local":
        return "local"
    return "device" if num_devices > 1 else "local"


def is_sync(kv_type: str) -> bool:
    """True for the synchronous dist kvstores (``dist_sync``, ``dist_device_sync``)."""
    return kv_type.startswith("dist") and "async" not in kv_type


@dataclass(frozen=True)
class RolePlan:
    """Which ps-lite roles this host runs and the ``DMLC_*`` variables each gets."""

    hosts: tuple[str, ...]
    current_host: str
    root_uri: str
    root_port: int
    watch_port: int
    node_host: str | None = None
    interface: str | None = None

    @property
    def num_hosts(self) -> int:
        return len(self.hosts)

    @property
    def host_index(self) -> int:
        return self.hosts.index(self.current_host)

    @property
    def is_chief(self) -> bool:
        """``hosts[0]``: runs the scheduler and writes checkpoints, model and metrics."""
        return self.host_index == 0

    @property
    def child_roles(self) -> tuple[str, ...]:
        """Roles started as child processes (the worker is the training process itself)."""
        return ("scheduler", "server") if self.is_chief else ("server",)

    def env(self, role: str) -> dict[str, str]:
        """The ``DMLC_*`` variables of ``role`` (scheduler, server or worker) on this host."""
        if role not in ("scheduler", "server", "worker"):
            raise ValueError(f"unknown ps-lite role {role!r}")
        env = {
            "DMLC_ROLE": role,
            "DMLC_PS_ROOT_URI": self.root_uri,
            "DMLC_PS_ROOT_PORT": str(self.root_port),
            "DMLC_NUM_SERVER": str(self.num_hosts),
            "DMLC_NUM_WORKER": str(self.num_hosts),
        }
        if role != "scheduler" and self.node_host:
            env["DMLC_NODE_HOST"] = self.node_host
        if self.interface:
            env["DMLC_INTERFACE"] = self.interface
        return env


def parse_addresses(value: str | None, hosts: tuple[str, ...]) -> dict[str, str]:
    """``ODP_DIST_HOST_ADDRESSES``: ``name=addr,...`` or one address shared by every host."""
    if not value or not value.strip():
        return {}
    value = value.strip()
    if "=" not in value:
        return dict.fromkeys(hosts, value)
    out = {}
    for part in value.split(","):
        name, sep, addr = part.strip().partition("=")
        if not sep or not name or not addr:
            raise ValueError(f"{ENV_ADDRESSES}: expected name=address pairs, got {part!r}")
        out[name.strip()] = addr.strip()
    return out


def plan_roles(
    resource: Mapping,
    env: Mapping[str, str] | None = None,
    resolve: Callable[[str], str] | None = None,
) -> RolePlan:
    """The role plan for this host from resourceconfig.json and the environment.

    ``resolve`` turns a host name into an address (default: DNS, retried until the start
    timeout, as pods of a headless Service appear one by one).
    """
    env = os.environ if env is None else env
    hosts = tuple(resource.get("hosts") or ("algo-1",))
    current = resource.get("current_host", hosts[0])
    if current not in hosts:
        raise DistributedError(f"current_host {current!r} is not among hosts {list(hosts)}")
    if len(set(hosts)) != len(hosts):
        raise DistributedError(f"resourceconfig.json lists a host twice: {list(hosts)}")
    addresses = parse_addresses(env.get(ENV_ADDRESSES), hosts)
    if resolve is None:
        timeout = configured_start_timeout(env)
        resolve = lambda name: _resolve(name, timeout)  # noqa: E731
    root_uri = env.get("DMLC_PS_ROOT_URI") or addresses.get(hosts[0]) or resolve(hosts[0])
    root_port = int(env.get("DMLC_PS_ROOT_PORT") or DEFAULT_PORT)
    watch_port = int(env.get(ENV_WATCH_PORT) or root_port + 1)
    return RolePlan(
        hosts=hosts,
        current_host=current,
        root_uri=root_uri,
        root_port=root_port,
        watch_port=watch_port,
        node_host=env.get("DMLC_NODE_HOST") or addresses.get(current),
        interface=env.get("DMLC_INTERFACE") or resource.get("network_interface_name"),
    )


def configured_start_timeout(env: Mapping[str, str] | None = None) -> float:
    """Seconds every host has to join (``ODP_DIST_START_TIMEOUT``, default 900)."""
    env = os.environ if env is None else env
    return float(env.get(ENV_START_TIMEOUT, DEFAULT_START_TIMEOUT))


def _resolve(name: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return socket.gethostbyname(name)
        except OSError as exc:
            if time.monotonic() >= deadline:
                raise DistributedError(
                    f"cannot resolve host {name!r} within {timeout:.0f}s: {exc}"
                ) from None
            time.sleep(2)
