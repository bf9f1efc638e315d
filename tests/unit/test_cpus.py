"""Usable CPUs from the affinity mask and the cgroup quota (files written as the kernel
writes them), and the OpenMP thread count given to MXNet."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pipeline_lib import cpus


def test_cgroup_v2_quota(tmp_path):
    (tmp_path / "cpu.max").write_text("250000 100000\n")
    assert cpus.cgroup_cpu_limit(tmp_path) == 2.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cpus.cgroup_cpu_limit(tmp_path) is None


def test_cgroup_v1_quota(tmp_path):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("150000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cpus.cgroup_cpu_limit(tmp_path) == 1.5
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cpus.cgroup_cpu_limit(tmp_path) is None


def test_no_cgroup_files(tmp_path):
    assert cpus.cgroup_cpu_limit(tmp_path) is None


def test_the_quota_caps_the_affinity_mask(monkeypatch):
    monkeypatch.setattr(cpus.os, "sched_getaffinity", lambda _pid: set(range(64)))
    monkeypatch.setattr(cpus, "cgroup_cpu_limit", lambda: 3.2)
    assert cpus.available_cpus() == 4  # rounded up: 3.2 CPUs of quota keep 4 threads busy
    monkeypatch.setattr(cpus, "cgroup_cpu_limit", lambda: None)
    assert cpus.available_cpus() == 64
    monkeypatch.setattr(cpus, "cgroup_cpu_limit", lambda: 0.2)
    assert cpus.available_cpus() == 1


@pytest.mark.skipif(
    len(os.sched_getaffinity(0)) < 2 or not os.path.exists("/usr/bin/taskset"),
    reason="needs two CPUs and taskset",
)
def test_compute_threads_follow_the_affinity_mask():
    """A process pinned to one CPU gets one OpenMP thread; unpinned, every usable CPU; a
    user's own OMP_NUM_THREADS wins."""
    code = (
        "import os; from pipeline_lib.cpus import size_compute_threads; "
        "print(size_compute_threads(), os.environ['OMP_NUM_THREADS'])"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}

    def run(*prefix: str, **extra: str) -> list[str]:
        argv = [*prefix, sys.executable, "-c", code]
        out = subprocess.run(argv, env={**env, **extra}, capture_output=True, text=True)  # noqa: S603
        return out.stdout.split()

    assert run("/usr/bin/taskset", "-c", "0") == ["1", "1"]
    n = str(cpus.available_cpus())
    assert run() == [n, n]
    assert run(OMP_NUM_THREADS="7") == ["7", "7"]
