"""Real training runs on tiny synthetic data (mobilenet-0.25, a few iterations)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import mxnet as mx
import pytest
from training_job import CHANNELS, layout
from training_job import hyperparameters as _hp

from pipeline_lib.training.contract import prepare_ml_root
from pipeline_lib.training.entrypoint import run_training


@pytest.fixture
def dataset(training_data):
    return training_data


def _layout(tmp_path, dataset, **over):
    return layout(tmp_path / "ml", dataset, **over)


def test_trains_and_writes_the_sagemaker_artifact(tmp_path, dataset, capsys):
    paths = _layout(tmp_path, dataset, epochs=4)
    assert run_training(str(paths.root)) == 0
    out = capsys.readouterr().out
    assert "#quality_metric: host=algo-1, epoch=0, batch=" in out
    assert "train cross_entropy <loss>=(" in out and "train smooth_l1 <loss>=(" in out
    assert "#quality_metric: host=algo-1, epoch=3, validation mAP <score>=(" in out
    assert "#progress_metric: host=algo-1, completed 100 % of epochs" in out
    assert "#throughput_metric: host=algo-1, train throughput=" in out
    files = {p.name for p in paths.model.iterdir()}
    assert {
        "model_algo_1-symbol.json",
        "model_algo_1-0000.params",
        "hyperparams.json",
        "class_map.json",
    } <= files
    hyper = json.loads((paths.model / "hyperparams.json").read_text())
    assert all(isinstance(v, str) for v in hyper.values()) and hyper["epochs"] == "4"
    assert json.loads((paths.model / "class_map.json").read_text()) == {
        "0": "circle",
        "1": "square",
    }
    metrics = json.loads((paths.output / "metrics.json").read_text())
    assert metrics["status"] == "completed" and len(metrics["epochs"]) == 4
    losses = [e["train_cross_entropy"] for e in metrics["epochs"]]
    assert losses[-1] < losses[0], losses
    assert not (paths.output / "failure").exists()


def test_resume_from_checkpoint_continues_epoch_counter(tmp_path, dataset, capsys):
    paths = _layout(tmp_path, dataset, epochs=1)
    assert run_training(str(paths.root)) == 0
    paths = _layout(tmp_path, dataset, epochs=2)
    assert run_training(str(paths.root)) == 0
    out = capsys.readouterr().out
    assert "resuming from checkpoint after epoch 0" in out
    metrics = json.loads((paths.output / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [0, 1]


def test_invalid_hyperparameter_writes_failure(tmp_path, dataset):
    paths = _layout(tmp_path, dataset, optimizer="lamb")
    assert run_training(str(paths.root)) == 1
    failure = (paths.output / "failure").read_text()
    assert "optimizer" in failure and "lamb" in failure


def test_missing_validation_channel(tmp_path, dataset):
    paths = prepare_ml_root(
        tmp_path / "ml", {c: dataset / c for c in ("train", "train_annotation")}, _hp()
    )
    assert run_training(str(paths.root)) == 1
    assert "validation" in (paths.output / "failure").read_text()


def test_class_ids_beyond_num_classes(tmp_path, dataset):
    paths = _layout(tmp_path, dataset, num_classes=1)
    assert run_training(str(paths.root)) == 1
    assert "num_classes=1" in (paths.output / "failure").read_text()


def test_pretrained_weights_absent_says_where_it_looked(tmp_path, dataset, monkeypatch):
    monkeypatch.setenv("MXNET_HOME", str(tmp_path / "mxhome"))
    paths = _layout(tmp_path, dataset, use_pretrained_model=1)
    assert run_training(str(paths.root)) == 1
    failure = (paths.output / "failure").read_text()
    assert str(tmp_path / "mxhome" / "models") in failure and "mobilenet0.25" in failure


def test_max_runtime_stops_cleanly_with_a_model(tmp_path, dataset):
    paths = _layout(tmp_path, dataset, epochs=50, max_runtime_seconds=1)
    assert run_training(str(paths.root)) == 0
    metrics = json.loads((paths.output / "metrics.json").read_text())
    assert metrics["status"] == "max_runtime_reached"
    assert (paths.model / "model_algo_1-0000.params").exists()


def test_a_time_budget_ends_the_job_inside_it_with_a_model(tmp_path, dataset):
    import time

    paths = _layout(tmp_path, dataset, epochs=500, time_budget_seconds=30, lr_schedule="cosine")
    started = time.monotonic()
    assert run_training(str(paths.root)) == 0
    elapsed = time.monotonic() - started
    metrics = json.loads((paths.output / "metrics.json").read_text())
    assert metrics["status"] == "time_budget_reached", metrics["status"]
    assert 2 <= metrics["epochs_completed"] < 500
    assert elapsed < 30 + 5, elapsed  # the reserve covered the export (slack: set-up noise)
    rates = [e["learning_rate"] for e in metrics["epochs"]]
    assert rates[-1] < rates[0] / 2  # the cosine was laid over the epochs that fit
    assert (paths.model / "model_algo_1-0000.params").exists()


def test_incremental_training_checks_base_network(tmp_path, dataset):
    first = _layout(tmp_path / "a", dataset, epochs=1)
    assert run_training(str(first.root)) == 0
    channels = {c: dataset / c for c in CHANNELS}
    channels["model"] = first.model
    second = prepare_ml_root(tmp_path / "b", channels, _hp(base_network="mobilenet-1.0"))
    assert run_training(str(second.root)) == 1
    assert "base_network" in (second.output / "failure").read_text()


@pytest.mark.integration
def test_sigterm_saves_checkpoint_and_best_model_then_resumes(tmp_path, dataset):
    paths = _layout(tmp_path, dataset, epochs=200)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "pipeline_lib.cli", "train", "--ml-root", str(paths.root)]
    proc = subprocess.Popen(  # noqa: S603  test-built argv, no shell
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    deadline = time.monotonic() + 300
    for line in proc.stdout:
        if "#progress_metric" in line or time.monotonic() > deadline:
            break
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.stdout.read()
    assert proc.wait(timeout=120) == 143
    assert time.monotonic() - sent < 120
    assert "stopped (received SIGTERM)" in (paths.output / "failure").read_text()
    assert (paths.checkpoints / "state.json").exists()
    assert (paths.model / "model_algo_1-0000.params").exists()
    state = json.loads((paths.checkpoints / "state.json").read_text())
    # A retry resumes after the last completed epoch.
    paths = _layout(tmp_path, dataset, epochs=state["epoch"] + 2)
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)  # noqa: S603  test-built argv, no shell
    assert done.returncode == 0, done.stdout[-2000:]
    assert f"resuming from checkpoint after epoch {state['epoch']}" in done.stdout
    assert not (paths.output / "failure").exists()


def _renamed_dataset(src, dest, names):
    """A copy of ``src`` whose categories carry other names."""
    import shutil

    shutil.copytree(src, dest)
    for path in dest.glob("*_annotation/*.json"):
        data = json.loads(path.read_text())
        data["categories"] = [{"class_id": i, "name": n} for i, n in enumerate(names)]
        path.write_text(json.dumps(data))
    return dest


def test_class_change_refused_unless_allowed(tmp_path, dataset, capsys):
    first = _layout(tmp_path / "a", dataset, epochs=1)
    assert run_training(str(first.root)) == 0
    other = _renamed_dataset(dataset, tmp_path / "other", ["square", "hexagon"])
    channels = {c: other / c for c in CHANNELS}
    channels["model"] = first.model
    second = prepare_ml_root(tmp_path / "b", channels, _hp(epochs=1))
    assert run_training(str(second.root)) == 1
    assert "--allow-class-change" in (second.output / "failure").read_text()
    assert run_training(str(second.root), allow_class_change=True) == 0
    out = capsys.readouterr().out
    assert "reused weights for ['square']" in out
    classes = json.loads((second.model / "class_map.json").read_text())
    assert classes == {"0": "square", "1": "hexagon"}


def test_in_process_training_restores_the_sigterm_handler(tmp_path, dataset):
    """Forked pools created after an in-process run must still obey Pool.terminate()."""
    before = signal.getsignal(signal.SIGTERM)
    paths = _layout(tmp_path, dataset, epochs=1, num_workers=2)
    assert run_training(str(paths.root)) == 0
    assert signal.getsignal(signal.SIGTERM) is before


def test_trains_from_an_augmented_manifest_at_512(tmp_path, dataset):
    """The manifest input format through the container contract, at image_shape 512."""
    from pipeline_lib.manifest import dataset_to_manifest

    for channel in ("train", "validation"):
        folder = tmp_path / f"{channel}_manifest"
        shutil.copytree(dataset, folder)  # local source-refs must stay inside the channel
        dataset_to_manifest(str(folder), str(folder / f"{channel}.manifest"), channel=channel)
    # source-ref paths inside the manifest point at the channel's images
    paths = prepare_ml_root(
        tmp_path / "ml",
        {c: tmp_path / f"{c}_manifest" for c in ("train", "validation")},
        _hp(epochs=1, image_shape=512),
        "manifest",
    )
    assert run_training(str(paths.root)) == 0, (paths.output / "failure").read_text()
    hyper = json.loads((paths.model / "hyperparams.json").read_text())
    assert hyper["image_shape"] == "512"
    # names travel in the manifest's <attribute>-metadata class-map
    assert json.loads((paths.model / "class_map.json").read_text()) == {
        "0": "circle",
        "1": "square",
    }


@pytest.mark.integration
def test_pretrained_weights_come_from_s3_into_the_cache(
    tmp_path, dataset, monkeypatch, s3, imagenet_file, capsys
):
    """use_pretrained_model=1 with ODP_PRETRAINED_URI=s3://...: the file is fetched into
    MXNET_HOME/models once and training starts from it."""
    source = imagenet_file(tmp_path / "source", "mobilenet-0.25")
    s3.client().upload_file(str(source), s3.bucket, f"imagenet/{source.name}")
    home = tmp_path / "mxhome"
    monkeypatch.setenv("MXNET_HOME", str(home))
    monkeypatch.setenv("ODP_PRETRAINED_URI", s3.uri("imagenet/"))
    paths = _layout(tmp_path, dataset, use_pretrained_model=1, epochs=1)
    assert run_training(str(paths.root)) == 0, (paths.output / "failure").read_text()
    cached = home / "models" / source.name
    assert cached.read_bytes() == source.read_bytes()
    assert f"ImageNet base weights: {cached}" in capsys.readouterr().out


def test_device_kv_store_on_several_devices_of_one_host(tmp_path, monkeypatch, capsys):
    """kv_store=device across two contexts (two CPU contexts stand in for two GPUs)."""
    from pipeline_lib.synthetic import SynthConfig, generate
    from pipeline_lib.training import entrypoint
    from pipeline_lib.training.contract import prepare_ml_root

    generate(tmp_path / "data", SynthConfig(images=10, classes=2, seed=3, max_objects=2))
    channels = ("train", "validation", "train_annotation", "validation_annotation")
    hp = {
        "num_classes": 2,
        "num_training_samples": 8,
        "base_network": "mobilenet-0.25",
        "use_pretrained_model": 0,
        "epochs": 1,
        "mini_batch_size": 4,
        "num_workers": 0,
        "kv_store": "device",
    }
    paths = prepare_ml_root(tmp_path / "ml", {c: tmp_path / "data" / c for c in channels}, hp)
    created = []
    real_create = mx.kv.create
    monkeypatch.setenv("ODP_CPU_STREAMS", "2")  # two CPU replicas, as two GPUs would be
    monkeypatch.setattr(mx.kv, "create", lambda name: created.append(name) or real_create(name))
    assert entrypoint.run_training(str(paths.root)) == 0, capsys.readouterr()
    assert created == ["device"]
    assert (paths.model / "model_algo_1-0000.params").exists()
    out = capsys.readouterr().out
    assert "CPU: 2 training streams of 2 images (mini_batch_size 4)" in out
    assert "epoch 0: 8 samples" in out


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two usable CPUs")
def test_odp_train_on_cpus_trains_a_replica_per_core(tmp_path, dataset):
    """The real process lays out its CPUs before MXNet is imported: batch 8 on 2 CPUs is two
    replicas of 4 images, one operator thread each, and it trains to a model."""
    paths = _layout(tmp_path, dataset, epochs=1, mini_batch_size=8)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OMP_NUM_THREADS", "ODP_CPU_STREAMS", "MXNET_CPU_TEMP_COPY")
    }
    cmd = [sys.executable, "-m", "pipeline_lib.cli", "train", "--ml-root", str(paths.root)]
    # pinned to two CPUs so the layout is the same on a bigger machine
    taskset = ["/usr/bin/taskset", "-c", "0,1"] if os.path.exists("/usr/bin/taskset") else []
    done = subprocess.run(  # noqa: S603  test-built argv, no shell
        [*taskset, *cmd], capture_output=True, text=True, env=env, timeout=600
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    expected = "CPU: 2 training streams of 4 images (mini_batch_size 8), 1 operator thread(s) each"
    if taskset:
        assert expected in done.stdout
    assert (paths.model / "model_algo_1-0000.params").exists()
    epochs = json.loads((paths.output / "metrics.json").read_text())["epochs"]
    assert "epoch 0: 16 samples" in done.stdout
    assert epochs[0]["throughput"] > 0 and 0 < epochs[0]["cpu_utilisation"] <= 1.0
