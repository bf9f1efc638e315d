"""Two training hosts as the DAG would create them: the pods rendered through the provider's
``build_pod_request_obj`` are created through the Kubernetes client in the localhost fake,
whose kubelet runs each pod's command and environment as a local process (scheduler on
host 1, server and worker on each, over 127.0.0.1).

The fake stands in for the cluster network: the pods' DNS names (``algo-N`` in the run's
headless Service) resolve to 127.0.0.1 and the ps-lite ports are free local ports.

Group failure: ranks are separate mapped tasks (no gang scheduling), so the peer watch of
``pipeline_lib.training.distributed`` fails the surviving ranks when one dies, within a
bound; each failed rank's task then retries on the same backoff, and a rank that comes
back alone waits at most ``ODP_DIST_START_TIMEOUT`` for its peers before failing again.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest
from k8s_fake import FakeKubernetes
from kubernetes import client as k8s
from kubernetes.config.kube_config import KubeConfigLoader
from servers import free_port, free_scheduler_port
from training_job import CHANNELS, hyperparameters

from odp_airflow.kubernetes.pods import PodPlan
from odp_airflow.kubernetes.render import render_objects
from odp_airflow.kubernetes.settings import KubernetesSettings
from pipeline_lib.training.job import JobSpec, write_job

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
IMAGE = "odp-train:test"
BOUND_S = 60  # a dead rank fails the others within this many seconds


@pytest.fixture
def pods(tmp_path, training_data):
    """Start both hosts' pods of a run with ``epochs``; yields (fake, pods, output folder)."""
    fakes: list[FakeKubernetes] = []

    def start(epochs: int):
        output = tmp_path / "runs" / "train"
        hosts = ("algo-1", "algo-2")
        write_job(
            JobSpec(
                channels={c: str(training_data / c) for c in CHANNELS},
                input_format="image+json",
                hyperparameters={k: str(v) for k, v in hyperparameters(epochs=epochs).items()},
                hosts=list(hosts),
                output_uri=str(output),
            )
        )
        plan = PodPlan("d", "r", str(output), hosts)
        settings = KubernetesSettings(namespace="odp-test", image=IMAGE, gpus=0)
        objects = render_objects(settings, plan)
        base_env = {
            "PATH": os.environ["PATH"],
            "HOME": str(tmp_path),
            "TMPDIR": str(tmp_path),  # a pod's /tmp (a killed host cannot clean its own)
            "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "plugins")]),
            "OMP_NUM_THREADS": "1",
            "MXNET_CPU_WORKER_NTHREADS": "1",
        }
        network = {  # the cluster's DNS and ports, on one machine
            "ODP_DIST_HOST_ADDRESSES": "127.0.0.1",
            "DMLC_PS_ROOT_PORT": str(free_scheduler_port()),
            "ODP_DIST_WATCH_PORT": str(free_port()),
        }
        entry = {IMAGE: [sys.executable, "-m", "pipeline_lib.cli", "train"]}
        fake = FakeKubernetes(tmp_path / "pods", entry, base_env, extra_env=network)
        fakes.append(fake)
        config = k8s.Configuration()
        KubeConfigLoader(fake.kubeconfig()).load_and_set(config)
        api = k8s.CoreV1Api(k8s.ApiClient(config))
        for obj in objects:
            if obj["kind"] == "Service":
                api.create_namespaced_service("odp-test", obj)
            else:
                api.create_namespaced_pod("odp-test", obj)
        started = [
            fake.pods[("odp-test", o["metadata"]["name"])] for o in objects if o["kind"] == "Pod"
        ]
        return fake, started, output

    yield start
    for fake in fakes:
        fake.close()


def _wait(pod, timeout: float) -> int | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pod.proc is not None and pod.proc.poll() is not None:
            time.sleep(0.3)  # the kubelet thread records the termination
            return pod.proc.returncode
        time.sleep(0.2)
    return None


def _log(pod) -> str:
    return pod.log.read_text(errors="replace") if pod.log.exists() else ""


def test_two_pods_train_one_epoch_and_the_chief_publishes(pods):
    fake, (chief, other), output = pods(epochs=1)
    assert [p.body["spec"]["hostname"] for p in (chief, other)] == ["algo-1", "algo-2"]
    codes = [_wait(p, 300) for p in (chief, other)]
    assert codes == [0, 0], _log(chief)[-3000:] + _log(other)[-3000:]
    assert "training on a shard of 8 of 16 images per epoch" in _log(other)
    assert chief.body["status"]["phase"] == other.body["status"]["phase"] == "Succeeded"
    manifest = json.loads((output / "completion.json").read_text())
    assert manifest["hosts"] == ["algo-1", "algo-2"]
    assert "completion manifest" not in _log(other)  # only the chief publishes
    assert fake.services  # the headless Service the pods' subdomain names


def test_a_dead_rank_fails_the_other_within_the_bound(pods):
    fake, (chief, other), output = pods(epochs=100)
    deadline = time.monotonic() + 300
    while "#quality_metric: host=algo-2, epoch=0, batch=" not in _log(other):
        alive = chief.proc is None or chief.proc.poll() is None
        assert time.monotonic() < deadline and alive, _log(chief)[-3000:]
        time.sleep(0.2)
    fake.kill_pod_process(other, signal.SIGKILL)  # the node under algo-2 is lost
    start = time.monotonic()
    code = _wait(chief, BOUND_S)
    assert code is not None and code != 0, "the surviving rank hung"
    assert time.monotonic() - start < BOUND_S
    terminated = chief.body["status"]["containerStatuses"][0]["state"]["terminated"]
    assert "algo-2" in terminated["message"]  # the pod's termination message: output/failure
    # (the peer watch ends the process at once: the operator's error carries this message)
    assert not (output / "completion.json").exists()
