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


@pytest.mark.parametrize(
    ("batch", "cpus", "streams", "threads"),
    [
        (16, 2, 2, 1),  # 2 x 8
        (8, 2, 2, 1),  # 2 x 4: the from-scratch recipe
        (4, 2, 1, 2),  # 2 x 2 is under the 4 images a replica's batch norm needs
        (11, 2, 1, 2),  # no even split
        (32, 16, 8, 2),  # 8 x 4, two threads each
        (12, 8, 3, 2),  # the most replicas that divide 12 with >= 4 each
        (16, 1, 1, 1),
    ],
)
def test_cpu_plan_trains_a_replica_per_core_when_the_batch_splits(batch, cpus, streams, threads):
    plan = cpus_plan(batch, cpus)
    assert (plan.streams, plan.threads, plan.cpus) == (streams, threads, cpus)


def cpus_plan(batch: int, n: int, **env: str) -> cpus.CpuPlan:
    return cpus.plan_cpu_training(batch, n, env=env)


def test_cpu_plan_follows_the_users_thread_count_and_stream_override():
    # OMP_NUM_THREADS=2 on 2 CPUs: one replica of 2 threads, not 2 x 2 oversubscribed
    assert cpus_plan(16, 2, OMP_NUM_THREADS="2") == cpus.CpuPlan(1, 2, 2)
    assert cpus_plan(16, 4, OMP_NUM_THREADS="2") == cpus.CpuPlan(2, 2, 4)
    assert cpus_plan(4, 2, ODP_CPU_STREAMS="2") == cpus.CpuPlan(2, 1, 2)  # explicit: allowed
    assert cpus_plan(16, 2, ODP_CPU_STREAMS="1") == cpus.CpuPlan(1, 2, 2)
    assert cpus_plan(16, 2, ODP_CPU_STREAMS=" ") == cpus.CpuPlan(2, 1, 2)  # blank: automatic


@pytest.mark.parametrize("raw", ["3", "0", "-2", "two", "1.5"])
def test_a_stream_count_that_does_not_divide_the_batch_is_refused(raw):
    with pytest.raises(
        ValueError,
        match=rf"ODP_CPU_STREAMS='{raw}' is invalid: expected a positive divisor of mini_batch_size=8",
    ):
        cpus_plan(8, 2, ODP_CPU_STREAMS=raw)


def test_applying_a_plan_sets_threads_and_scratch_but_keeps_the_users_values():
    env: dict[str, str] = {}
    cpus.apply_cpu_plan(cpus.CpuPlan(2, 1, 2), env)
    assert env == {"OMP_NUM_THREADS": "1", "MXNET_CPU_TEMP_COPY": "1024"}
    env = {"OMP_NUM_THREADS": "3", "MXNET_CPU_TEMP_COPY": "8"}
    cpus.apply_cpu_plan(cpus.CpuPlan(2, 1, 2), env)
    assert env == {"OMP_NUM_THREADS": "3", "MXNET_CPU_TEMP_COPY": "8"}
    env = {}
    cpus.apply_cpu_plan(cpus.CpuPlan(1, 2, 2), env)
    assert env == {"OMP_NUM_THREADS": "2"}  # one replica: MXNet's own scratch pool
