"""compute=kubernetes through the real DAG (``dag.test()``) and the provider's real
KubernetesPodOperator code, against a Kubernetes API fake on localhost whose pods run the
pod's command and environment as local processes (tests/k8s_fake.py).

Fault cases: a pod that exits 1 (the reason from ``output/failure``, no retry for a
ClientError), a pod "succeeding" without a completion manifest, a pod deleted mid-training
(SIGTERM: checkpoint, failed try, resumed retry), a pod that stays Pending (its reason).
Every pod is deleted at the end in every case.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from dag_runs import load_dag, small_conf, task_states, tries
from k8s_fake import FakeKubernetes

from pipeline_lib.synthetic import SynthConfig, generate

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
IMAGE = "odp-train:test"
# What the training image's ENTRYPOINT runs (tini -> train-entrypoint.sh -> odp train), as a
# local command; the pod's args follow it.
ENTRYPOINTS = {
    IMAGE: [sys.executable, "-m", "pipeline_lib.cli", "train"],
    "odp-train:exits-zero": [sys.executable, "-c", "import sys; sys.exit(0)"],
}
PENDING = {
    "odp-train:no-gpu-node": (
        "Unschedulable",
        "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
    ),
    "odp-train:missing": ("ErrImagePull", 'failed to pull image "odp-train:missing": not found'),
}


@pytest.fixture
def dataset(tmp_path):
    root = tmp_path / "dataset"
    generate(root, SynthConfig(images=24, classes=2, seed=7))
    return root


@pytest.fixture
def cluster(dag_env, tmp_path, monkeypatch):
    """The fake cluster, the Airflow connection to it and the odp_kubernetes settings."""
    base_env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "plugins")]),
        "OMP_NUM_THREADS": "1",
        "MXNET_CPU_WORKER_NTHREADS": "1",
        "MXNET_HOME": os.environ.get("MXNET_HOME", str(tmp_path / "mxnet")),
    }
    fake = FakeKubernetes(tmp_path / "pods", ENTRYPOINTS, base_env, pending_images=PENDING)
    conn = {"conn_type": "kubernetes", "extra": {"kube_config": json.dumps(fake.kubeconfig())}}
    monkeypatch.setenv("AIRFLOW_CONN_KUBERNETES_DEFAULT", json.dumps(conn))
    fake.settings = {  # type: ignore[attr-defined]
        "namespace": "odp-test",
        "image": IMAGE,
        "gpus": 0,
        "startup_timeout_seconds": 5,
        "schedule_timeout_seconds": 5,
    }
    yield fake
    fake.close()


def _run(cluster, monkeypatch, dataset, *, retries: int = 0, image: str = IMAGE, **over):
    settings = {**cluster.settings, "image": image}
    monkeypatch.setenv("AIRFLOW_VAR_ODP_KUBERNETES", json.dumps(settings))
    dag = load_dag()
    pods = dag.task_dict["train_pod"]
    pods.partial_kwargs["retries"] = retries
    pods.partial_kwargs["retry_delay"] = timedelta(seconds=1)
    pods.partial_kwargs["retry_exponential_backoff"] = False
    conf = small_conf(dataset, "k8s-model", compute="kubernetes", **over)
    return dag.test(run_conf=conf)


def _train_dir(odp_home) -> Path:
    (run,) = (odp_home.artifact_root / "runs" / "object_detection_training").iterdir()
    return run / "train"


def _error(capfd) -> str:
    captured = capfd.readouterr()
    return captured.out + captured.err


def _all_pods_deleted(cluster: FakeKubernetes) -> None:
    deadline = time.monotonic() + 30
    while cluster.pods and time.monotonic() < deadline:
        time.sleep(0.2)
    assert cluster.created and set(cluster.deleted_pods) == set(cluster.created)
    assert not cluster.pods and not cluster.running()


def test_a_pod_that_trains_publishes_a_manifest_evaluate_and_register_accept(
    cluster, dag_env, dataset, monkeypatch
):
    dagrun = _run(cluster, monkeypatch, dataset)
    states = task_states(dagrun)
    assert str(dagrun.state) == "success", states
    assert states["train_pod"] == states["train"] == states["register"] == "success"
    train = _train_dir(dag_env)
    manifest = json.loads((train / "completion.json").read_text())
    assert set(manifest["files"]) == {"model.tar.gz", "metrics.json"}
    assert manifest["hosts"] == ["algo-1"]
    (pod,) = cluster.created
    log = (cluster.workdir / pod / "container.log").read_text()
    assert "completion manifest:" in log  # the pod itself wrote it, last
    assert not (cluster.workdir / pod / "opt-ml" / "model").is_symlink()
    _all_pods_deleted(cluster)
    assert cluster.deleted_services == []  # one host: no Service


def test_a_pod_that_exits_1_fails_with_the_failure_reason(
    cluster, dag_env, dataset, monkeypatch, capfd
):
    # more images per batch than the train channel holds: SageMaker's ClientError, exit 1
    dagrun = _run(cluster, monkeypatch, dataset, retries=2, mini_batch_size=64)
    states = task_states(dagrun)
    assert states["train_pod"] == "failed", states
    assert tries(dagrun)["train_pod"] == 1  # a ClientError is not retried
    assert states["train"] == states["evaluate"] == "upstream_failed"
    error = _error(capfd)
    assert "odp train failed on algo-1: ClientError" in error
    assert "mini_batch_size=64 is larger than the" in error
    _all_pods_deleted(cluster)


def test_a_pod_that_succeeds_without_a_manifest_fails_the_task(
    cluster, dag_env, dataset, monkeypatch, capfd
):
    dagrun = _run(cluster, monkeypatch, dataset, image="odp-train:exits-zero")
    states = task_states(dagrun)
    assert states["train_pod"] == "failed", states  # never SUCCESS on the pod state alone
    assert states["register"] == "upstream_failed"
    assert "training pod ended without a complete result" in _error(capfd)
    assert not (_train_dir(dag_env) / "completion.json").exists()
    _all_pods_deleted(cluster)


@pytest.mark.parametrize(
    ("image", "reason"),
    [
        (
            "odp-train:no-gpu-node",
            "Unschedulable: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
        ),
        ("odp-train:missing", 'ErrImagePull: failed to pull image "odp-train:missing"'),
    ],
)
def test_a_pending_pod_times_out_with_its_reason(
    cluster, dag_env, dataset, monkeypatch, capfd, image, reason
):
    dagrun = _run(cluster, monkeypatch, dataset, image=image)
    states = task_states(dagrun)
    assert states["train_pod"] == "failed", states
    assert reason in _error(capfd)
    _all_pods_deleted(cluster)


@pytest.mark.parametrize("stop", ["delete", "sigterm"])
def test_a_pod_stopped_mid_training_fails_its_try_and_the_retry_resumes(
    cluster, dag_env, dataset, monkeypatch, capfd, stop
):
    """A node drain (the pod is deleted) or a SIGTERM from the node while the pod trains:
    odp train saves a checkpoint (kept under the run root), the try fails (never SUCCESS);
    the retry's pod resumes from it."""

    def stop_first_pod(fake: FakeKubernetes, pod) -> None:
        if pod.name != fake.created[0]:
            return
        checkpoints = pod.ml_root / "checkpoints"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and pod.proc.poll() is None:
            if checkpoints.is_dir() and any(checkpoints.iterdir()):
                if stop == "delete":
                    fake._delete_pod(pod.body["metadata"]["namespace"], pod, None)
                else:
                    fake.kill_pod_process(pod)
                return
            time.sleep(0.2)

    cluster.on_running = stop_first_pod
    dagrun = _run(cluster, monkeypatch, dataset, retries=1, epochs=4)
    states = task_states(dagrun)
    assert str(dagrun.state) == "success", states
    assert tries(dagrun)["train_pod"] == 2
    first, second = cluster.created
    first_log = (cluster.workdir / first / "container.log").read_text()
    second_log = (cluster.workdir / second / "container.log").read_text()
    assert "completion manifest" not in first_log
    assert "restored checkpoints from" in second_log
    assert "resuming from checkpoint after epoch" in second_log
    assert (_train_dir(dag_env) / "completion.json").exists()
    if stop == "sigterm":  # the first try failed with the job's own reason
        assert "odp train failed on algo-1: Training was stopped" in _error(capfd)
    _all_pods_deleted(cluster)


def test_deferrable_mode_trains_through_the_trigger(cluster, dag_env, dataset, monkeypatch):
    """deferrable=true: the pod is watched by the provider's trigger (async client) and the
    task resumes in ``trigger_reentry``, which checks the completion manifest too."""
    cluster.settings["deferrable"] = True
    dagrun = _run(cluster, monkeypatch, dataset)
    states = task_states(dagrun)
    assert str(dagrun.state) == "success", states
    assert (_train_dir(dag_env) / "completion.json").exists()
    _all_pods_deleted(cluster)


def test_marking_the_task_failed_deletes_its_running_pod(cluster, dag_env, dataset, monkeypatch):
    """Marking the task failed in the UI (or a timeout) makes the task runner call the
    operator's ``on_kill``: with ``on_kill_action=delete_pod`` the provider's client deletes
    the running pod through the API (apache/airflow#37263, #62398: never an orphaned pod
    holding a GPU), and the task fails instead of succeeding."""
    import gc

    from odp_airflow.kubernetes.operator import TrainingPodOperator

    killed: list[str] = []

    def mark_failed_while_training(fake: FakeKubernetes, pod) -> None:
        checkpoints = pod.ml_root / "checkpoints"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and pod.proc.poll() is None:
            if checkpoints.is_dir() and any(checkpoints.iterdir()):
                break
            time.sleep(0.2)
        # The operator instance dag.test() is executing: what the task runner kills.
        live = [
            o
            for o in gc.get_objects()
            if isinstance(o, TrainingPodOperator)
            and o.pod is not None
            and o.pod.metadata.name == pod.name
        ]
        assert len(live) == 1
        live[0].on_kill()
        killed.append(pod.name)

    cluster.on_running = mark_failed_while_training
    dagrun = _run(cluster, monkeypatch, dataset, epochs=20)
    states = task_states(dagrun)
    assert killed == cluster.created[:1]
    assert states["train_pod"] == "failed" and str(dagrun.state) == "failed", states
    assert not (_train_dir(dag_env) / "completion.json").exists()
    _all_pods_deleted(cluster)
