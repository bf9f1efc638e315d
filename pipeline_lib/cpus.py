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
from pathlib import Path

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
