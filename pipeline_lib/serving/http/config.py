"""How ``odp serve`` runs: address, runtime, workers and their threads, limits.

Workers are processes, one request at a time each, so the usable CPUs
(:func:`pipeline_lib.cpus.available_cpus`: affinity mask and cgroup quota) decide the
layout: by default one worker per CPU with one compute thread (MXNet's OpenMP, onnxruntime's
intra-op pool and OpenCV), as SSD's many small operators gain little from more threads and
``workers x threads`` never exceeds the CPUs. SageMaker's container variables are honoured:
``SAGEMAKER_MODEL_SERVER_WORKERS`` (workers), ``SAGEMAKER_MODEL_SERVER_TIMEOUT`` (seconds a
request may take), ``SAGEMAKER_MAX_PAYLOAD_IN_MB`` (Batch Transform's payload limit) and
``SAGEMAKER_BIND_TO_PORT``; a user's ``OMP_NUM_THREADS`` sets the threads per worker (and
then the workers default to the CPUs divided by it), never beyond the CPUs divided by the
workers (oversubscribed OpenMP threads spin against each other). Flags win over the
environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from .contract import DEFAULT_MAX_PAYLOAD_MB, MIB

RUNTIMES = ("mxnet", "onnx")
DEFAULT_PORT = 8080  # SageMaker's
DEFAULT_TIMEOUT = 60  # seconds: SageMaker's limit on one invocation
BACKLOG = 128  # connections the kernel queues for the workers; beyond it clients are refused
GRACEFUL_TIMEOUT = 30  # seconds in-flight requests get to finish after SIGTERM

WORKERS_ENV = "SAGEMAKER_MODEL_SERVER_WORKERS"
TIMEOUT_ENV = "SAGEMAKER_MODEL_SERVER_TIMEOUT"
PAYLOAD_ENV = "SAGEMAKER_MAX_PAYLOAD_IN_MB"
PORT_ENV = "SAGEMAKER_BIND_TO_PORT"


@dataclass(frozen=True)
class ServeConfig:
    """Everything the server needs besides the model."""

    host: str = "0.0.0.0"  # noqa: S104  a container's server listens on every interface
    port: int = DEFAULT_PORT
    runtime: str = "mxnet"
    workers: int = 1
    threads: int = 1  # compute threads per worker
    cpus: int = 1  # usable CPUs the layout was planned for
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_MB * MIB
    timeout: int = DEFAULT_TIMEOUT
    backlog: int = BACKLOG
    graceful_timeout: int = GRACEFUL_TIMEOUT

    def describe(self) -> str:
        """One log line: the layout and the limits."""
        return (
            f"runtime {self.runtime}, {self.workers} worker(s) x {self.threads} compute "
            f"thread(s) ({self.cpus} usable CPUs), payload limit "
            f"{self.max_payload_bytes / MIB:g} MB, {self.timeout} s per request"
        )


# Upper bounds of the variables (the one bounded parser, pipeline_lib.bounds).
_MAXIMA = {
    "OMP_NUM_THREADS": 1024,
    WORKERS_ENV: 256,
    PAYLOAD_ENV: 1024,  # MB
    PORT_ENV: 65535,
    TIMEOUT_ENV: 3600,
}


def _positive(env: Mapping[str, str], name: str) -> int | None:
    """A positive integer variable within its bound (:data:`_MAXIMA`), or None when unset;
    a bad value is a ``ValueError`` naming it."""
    from ... import bounds

    raw = env.get(name, "").strip()
    if not raw:
        return None
    return bounds.parse_int(raw, name, minimum=1, maximum=_MAXIMA[name])


def plan_config(
    *,
    host: str = "0.0.0.0",  # noqa: S104  see ServeConfig.host
    port: int | None = None,
    runtime: str = "mxnet",
    workers: int | None = None,
    max_payload_mb: int | None = None,
    cpus: int | None = None,
    env: Mapping[str, str] | None = None,
) -> ServeConfig:
    """The configuration for these flags (``None``: from the environment, else the default).

    Raises:
        ValueError: a value, flag or variable, that cannot be used (named in the message).
    """
    from ...cpus import available_cpus

    env = os.environ if env is None else env
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime {runtime!r}: expected one of {', '.join(RUNTIMES)}")
    cpus = cpus or available_cpus()
    user_threads = _positive(env, "OMP_NUM_THREADS")
    workers = workers or _positive(env, WORKERS_ENV)
    if workers is None:
        workers = max(1, cpus // user_threads) if user_threads else cpus
    threads = max(1, cpus // workers)
    if user_threads:  # the user's count, within the CPUs' share of each worker
        threads = min(user_threads, threads)
    payload = max_payload_mb or _positive(env, PAYLOAD_ENV) or DEFAULT_MAX_PAYLOAD_MB
    port = port or _positive(env, PORT_ENV) or DEFAULT_PORT
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port}: expected 1 to 65535")
    return ServeConfig(
        host=host,
        port=port,
        runtime=runtime,
        workers=workers,
        threads=threads,
        cpus=cpus,
        max_payload_bytes=payload * MIB,
        timeout=_positive(env, TIMEOUT_ENV) or DEFAULT_TIMEOUT,
    )


def thread_environment(config: ServeConfig) -> dict[str, str]:
    """The variables that size a worker's compute threads, set before the workers start
    (MXNet reads them when a worker imports it): the planned count, which already took a
    user's ``OMP_NUM_THREADS`` into account."""
    return {"OMP_NUM_THREADS": str(config.threads), "MXNET_CPU_WORKER_NTHREADS": "1"}


__all__ = ["RUNTIMES", "ServeConfig", "plan_config", "thread_environment"]
