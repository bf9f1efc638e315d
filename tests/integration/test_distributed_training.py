"""Multi-host training: two ``odp train`` processes on 127.0.0.1 over MXNet's parameter server.

Each host has its own ML_ROOT (same data channels) whose resourceconfig.json lists both
hosts, as SageMaker and the Kubernetes pods lay it out.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from servers import free_port, free_scheduler_port
from training_job import channels, hyperparameters

from pipeline_lib.training.contract import prepare_ml_root

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
HOSTS = ("algo-1", "algo-2")
RUN_TIMEOUT = 240  # seconds for one two-host run (it takes ~30 s on 2 cores)
ARTIFACT = {
    "model_algo_1-symbol.json",
    "model_algo_1-0000.params",
    "hyperparams.json",
    "class_map.json",
}


@pytest.fixture
def dataset(training_data):
    return training_data  # 16 train, 4 validation images


def _roots(tmp_path: Path, dataset: Path, **over) -> list[Path]:
    roots = []
    for host in HOSTS:
        paths = prepare_ml_root(
            tmp_path / host,
            channels(dataset),
            hyperparameters(**{"epochs": 1, **over}),
            hosts=HOSTS,
            current_host=host,
        )
        roots.append(paths.root)
    return roots


class _Hosts:
    """The two ``odp train`` processes of one run; always killed when the test ends."""

    def __init__(self, roots: list[Path]):
        self.roots = roots
        self.logs = [root / "odp-train.log" for root in roots]
        self._start()

    def _start(self) -> None:
        self.scratch = self.roots[0].parent / "tmp"  # the hosts' TMPDIR: what they leave
        self.scratch.mkdir(exist_ok=True)
        env = {
            **os.environ,
            "TMPDIR": str(self.scratch),
            "ODP_DIST_HOST_ADDRESSES": "127.0.0.1",
            "DMLC_PS_ROOT_PORT": str(free_scheduler_port()),
            "ODP_DIST_WATCH_PORT": str(free_port()),
            "ODP_DIST_START_TIMEOUT": "120",
            "OMP_NUM_THREADS": "1",
            "MXNET_CPU_WORKER_NTHREADS": "1",
            "PYTHONUNBUFFERED": "1",
        }
        self.procs = []
        for root, log in zip(self.roots, self.logs, strict=True):
            with open(log, "wb") as out:
                self.procs.append(
                    subprocess.Popen(  # noqa: S603  test-built argv, no shell
                        [sys.executable, "-m", "pipeline_lib.cli", "train", "--ml-root", str(root)],
                        cwd=REPO_ROOT,
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )

    def wait(self, timeout: float = RUN_TIMEOUT, retry_bind: bool = True) -> list[int]:
        deadline = time.monotonic() + timeout
        try:
            codes = [p.wait(max(1.0, deadline - time.monotonic())) for p in self.procs]
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"distributed run did not finish within {timeout}s:\n{self.output()}")
        if retry_bind and any(codes) and re.search(r"bind failed|is_scheduler_", self.output()):
            # free_port() only finds a port that was free a moment ago; another process may
            # take it before the scheduler binds it. Not what the test is about: new ports.
            self._start()
            return self.wait(timeout, retry_bind=False)
        return codes

    def wait_for(self, index: int, pattern: str, timeout: float = RUN_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(pattern, self.logs[index].read_text(errors="replace")):
                return
            if any(p.poll() is not None for p in self.procs):
                break
            time.sleep(0.2)
        self.kill()
        pytest.fail(f"{HOSTS[index]} never logged {pattern!r}:\n{self.output()}")

    def text(self, index: int) -> str:
        return self.logs[index].read_text(errors="replace")

    def output(self) -> str:
        return "\n".join(f"----- {h}\n{self.text(i)[-4000:]}" for i, h in enumerate(HOSTS))

    def kill(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()


@pytest.fixture
def hosts():
    started: list[_Hosts] = []

    def start(roots: list[Path]) -> _Hosts:
        run = _Hosts(roots)
        started.append(run)
        return run

    yield start
    for run in started:
        run.kill()


def _samples(log: str) -> list[int]:
    return [int(n) for n in re.findall(r"epoch \d+: (\d+) samples in", log)]


def test_two_hosts_train_one_epoch_each_on_half_the_data(tmp_path, dataset, hosts):
    roots = _roots(tmp_path, dataset)
    run = hosts(roots)
    codes = run.wait()
    assert codes == [0, 0], run.output()
    chief, other = run.text(0), run.text(1)

    # the chief (hosts[0]) writes the SageMaker artifact and metrics; the other host nothing
    assert ARTIFACT <= {p.name for p in (roots[0] / "model").iterdir()}, chief
    metrics = json.loads((roots[0] / "output" / "metrics.json").read_text())
    assert metrics["status"] == "completed" and len(metrics["epochs"]) == 1
    assert not (roots[1] / "output" / "metrics.json").exists()
    assert not (roots[1] / "model").exists() or not any((roots[1] / "model").iterdir())
    assert (roots[0] / "checkpoints" / "state.json").exists()
    assert not (roots[1] / "checkpoints").exists()
    assert not (roots[0] / "output" / "failure").exists()
    assert not (roots[1] / "output" / "failure").exists()

    # sharded data: each worker trains on its half (8 of 16 images), batches of 4 per host
    for log in (chief, other):
        assert "training on a shard of 8 of 16 images per epoch" in log, log
        assert _samples(log) == [8], log
        assert "effective batch 8 over 2 hosts" in log
    ranks = {int(re.search(r"worker rank (\d) of 2", log).group(1)) for log in (chief, other)}
    assert ranks == {0, 1}
    assert "#quality_metric: host=algo-1, epoch=0, batch=" in chief
    assert "#quality_metric: host=algo-2, epoch=0, batch=" in other
    assert "host=algo-2" not in chief and "host=algo-1" not in other
    # every host follows the chief's validation mAP, so early stopping agrees
    maps = [
        re.search(r"validation mAP <score>=\(([^)]*)\)", log).group(1) for log in (chief, other)
    ]
    assert maps[0] == maps[1]


def test_a_failed_host_fails_the_other_instead_of_hanging(tmp_path, dataset, hosts):
    roots = _roots(tmp_path, dataset, epochs=100)
    run = hosts(roots)
    run.wait_for(1, r"#quality_metric: host=algo-2, epoch=0, batch=")
    run.procs[1].send_signal(signal.SIGKILL)
    start = time.monotonic()
    code = run.procs[0].wait(60)
    assert code != 0 and time.monotonic() - start < 60
    failure = (roots[0] / "output" / "failure").read_text()
    assert "algo-2" in failure, failure


def test_a_failed_chief_fails_the_other_which_leaves_no_scratch(tmp_path, dataset, hosts):
    roots = _roots(tmp_path, dataset, epochs=100)
    run = hosts(roots)
    run.wait_for(1, r"#quality_metric: host=algo-2, epoch=0, batch=")
    run.procs[0].send_signal(signal.SIGKILL)
    assert run.procs[1].wait(60) != 0
    failure = (roots[1] / "output" / "failure").read_text()
    assert "algo-1" in failure, failure
    assert list(run.scratch.glob("odp-dist-ckpt-*")) == []  # its copy of the checkpoint


def test_sigterm_on_one_host_stops_both_and_a_rerun_resumes(tmp_path, dataset, hosts):
    roots = _roots(tmp_path, dataset, epochs=100)
    run = hosts(roots)
    run.wait_for(0, r"epoch 0: \d+ samples in")  # a checkpoint of epoch 0 exists
    run.procs[1].send_signal(signal.SIGTERM)
    assert run.wait() == [143, 143], run.output()
    state = json.loads((roots[0] / "checkpoints" / "state.json").read_text())
    stopped_after = state["epoch"]
    assert stopped_after >= 0
    assert "another host received a stop signal" in (roots[0] / "output" / "failure").read_text()

    roots = _roots(tmp_path, dataset, epochs=stopped_after + 2)
    rerun = hosts(roots)
    assert rerun.wait() == [0, 0], rerun.output()
    for i in range(2):
        assert f"resuming from checkpoint after epoch {stopped_after}" in rerun.text(i)
        assert _samples(rerun.text(i)) == [8]
    metrics = json.loads((roots[0] / "output" / "metrics.json").read_text())
    assert metrics["epochs"][-1]["epoch"] == stopped_after + 1


def test_dist_async(tmp_path, dataset, hosts):
    roots = _roots(tmp_path, dataset, kv_store="dist_async", epochs=2, lr_scheduler_step="1")
    run = hosts(roots)
    assert run.wait() == [0, 0], run.output()
    assert ARTIFACT <= {p.name for p in (roots[0] / "model").iterdir()}
    assert (roots[0] / "checkpoints" / "last.states").stat().st_size == 0
    for i in range(2):
        assert "distributed training (dist_async)" in run.text(i)
        assert _samples(run.text(i)) == [8, 8]
