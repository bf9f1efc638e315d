"""How many CPUs this process may really use, and MXNet's thread pools sized to match.

``os.cpu_count()`` is the machine's count: in a Kubernetes pod with ``limits.cpu: 4`` on a
64-core node it says 64, and sizing data workers or OpenMP threads from it oversubscribes
the pod sixteen-fold (throttling, and 0.9 GB per data worker). The usable count is the
smallest of the CPU affinity mask (``taskset``, cpusets) and the cgroup CPU quota
(``cpu.max`` in cgroup v2, ``cpu.cfs_quota_us``/``cpu.cfs_period_us`` in v1), rounded up.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path

from . import bounds

_CGROUP = Path("/sys/fs/cgroup")


def cgroup_cpu_limit(root: Path = _CGROUP) -> float | None:
    """The cgroup CPU quota in CPUs (e.g. 2.5), or None when there is no limit."""
    try:  # cgroup v2: "max 100000" or "250000 100000"
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 or period <= 0 else quota / period
    except (OSError, ValueError):
        return None


def available_cpus() -> int:
    """CPUs this process can use: affinity mask and cgroup quota, at least 1."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    if limit is not None:
        n = min(n, max(1, math.ceil(limit)))
    return max(1, n)


#: Environment variables that size MXNet's compute threads (read when MXNet is imported).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MXNET_CPU_WORKER_NTHREADS")


def size_compute_threads(cpus: int | None = None) -> int:
    """Give MXNet's operators every usable CPU (OpenMP threads), unless the user set them.

    Must run before ``mxnet`` is imported; returns the OpenMP thread count in effect.
    MXNet's own default here is one OpenMP thread per operator, leaving cores idle.
    """
    cpus = cpus or available_cpus()
    os.environ.setdefault("OMP_NUM_THREADS", str(cpus))
    try:
        return int(os.environ["OMP_NUM_THREADS"])
    except ValueError:
        return cpus


def single_thread_operators() -> None:
    """In a forked data worker: one OpenMP thread for MXNet's operators, so N workers beside
    the main process's operator threads do not oversubscribe the CPUs."""
    import ctypes

    import mxnet as mx

    mx.base._LIB.MXSetNumOMPThreads(ctypes.c_int(1))


#: Set to a number of CPU training streams (a divisor of ``mini_batch_size``) to override
#: the automatic choice; ``1`` is one replica whose operators use every CPU.
STREAMS_VARIABLE = "ODP_CPU_STREAMS"
#: The smallest share of the batch a CPU stream trains on (its batch norm sees only that).
MIN_STREAM_BATCH = 4
#: Scratch buffers per stream in MXNet's CPU temp-space pool. The pool is shared by every CPU
#: context, an operator is bound to one buffer round-robin and holds it exclusively, so with
#: MXNet's default of 4 the streams' operators (the optimizer updates too) queue behind each
#: other's scratch and the streams run one at a time (CPU time / wall 1.1-1.3 of 2). With a
#: buffer per operator they do not; a buffer is allocated when first used, as large as its
#: operators ask, so unused ones cost nothing (measured: 64 -> 1024 buffers, +0.1 GB).
TEMP_COPIES_PER_STREAM = 512


@dataclass(frozen=True)
class CpuPlan:
    """How CPU training uses the cores: ``streams`` data-parallel replicas of the network
    (MXNet contexts ``cpu(0)`` .. ``cpu(streams - 1)``, each run by its own engine worker
    on its share of the batch, gradients summed as over GPUs) of ``threads`` OpenMP
    threads each; ``cpus`` is the usable count they share."""

    streams: int
    threads: int
    cpus: int

    def describe(self, batch: int) -> str:
        """One log line: the layout and why."""
        if self.streams == 1:
            return f"CPU: one training stream, {self.threads} operator threads ({self.cpus} usable CPUs)"
        return (
            f"CPU: {self.streams} training streams of {batch // self.streams} images "
            f"(mini_batch_size {batch}), {self.threads} operator thread(s) each "
            f"({self.cpus} usable CPUs)"
        )


def plan_cpu_training(
    batch: int, cpus: int | None = None, env: Mapping[str, str] | None = None
) -> CpuPlan:
    """The CPU layout for training at ``batch`` images per step.

    Small SSD operators do not spread over OpenMP threads (one core idles while they run),
    so when the batch allows, each core trains its own replica on a share of the batch:
    the most streams that divide the batch with at least :data:`MIN_STREAM_BATCH` images
    each, one per core (or per ``OMP_NUM_THREADS`` cores when the user set it).
    ``ODP_CPU_STREAMS`` overrides the count.

    Raises:
        ValueError: ``ODP_CPU_STREAMS`` is not a positive divisor of ``batch``.
    """
    env = os.environ if env is None else env
    cpus = cpus or available_cpus()
    user_threads = _positive(env.get("OMP_NUM_THREADS"))
    raw = env.get(STREAMS_VARIABLE, "").strip()
    if raw:
        expected = f"a positive divisor of mini_batch_size={batch}"
        try:
            streams = bounds.parse_int(raw, STREAMS_VARIABLE, minimum=1, maximum=batch)
        except bounds.NumberError:
            raise bounds.NumberError(STREAMS_VARIABLE, raw, expected) from None
        if batch % streams:
            raise bounds.NumberError(STREAMS_VARIABLE, raw, expected)
    else:
        budget = max(1, cpus // user_threads) if user_threads else cpus
        streams = max(
            s
            for s in range(1, min(budget, batch) + 1)
            if batch % s == 0 and (s == 1 or batch // s >= MIN_STREAM_BATCH)
        )
    threads = user_threads or max(1, cpus // streams)
    return CpuPlan(streams, threads, cpus)


def apply_cpu_plan(plan: CpuPlan, env: MutableMapping[str, str] | None = None) -> None:
    """Give MXNet the plan's thread counts in ``env`` (this process's environment: then
    before ``mxnet`` is imported, as its OpenMP and engine read them once; or a child's).
    A user's own values win."""
    env = os.environ if env is None else env
    env.setdefault("OMP_NUM_THREADS", str(plan.threads))
    if plan.streams > 1:
        env.setdefault("MXNET_CPU_TEMP_COPY", str(TEMP_COPIES_PER_STREAM * plan.streams))


def _positive(raw: str | None) -> int | None:
    try:
        value = int(str(raw).strip())
    except ValueError:
        return None
    return value if value > 0 else None
