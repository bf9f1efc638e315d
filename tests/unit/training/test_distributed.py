"""Role/env planning, kvstore choice, data sharding and checkpoints of multi-host training."""

import mxnet as mx
import numpy as np
import pytest

from pipeline_lib.training.checkpoints import LoopState
from pipeline_lib.training.distributed import (
    Cluster,
    DistCheckpointer,
    DistributedError,
    ShardSampler,
    decode_f64,
    encode_f64,
    kv_store_type,
    parse_addresses,
    plan_roles,
)
from pipeline_lib.training.entrypoint import TrainingError

HOSTS = ["algo-1", "algo-2", "algo-3"]


def _no_dns(name):
    raise AssertionError(f"unexpected DNS lookup of {name}")


def test_chief_runs_scheduler_and_server_with_dmlc_env():
    resolved = []

    def resolve(name):
        resolved.append(name)
        return "10.0.0.1"

    plan = plan_roles({"current_host": "algo-1", "hosts": HOSTS}, env={}, resolve=resolve)
    assert resolved == ["algo-1"]  # the scheduler is hosts[0], found through DNS
    assert plan.is_chief and plan.child_roles == ("scheduler", "server")
    assert plan.env("scheduler") == {
        "DMLC_ROLE": "scheduler",
        "DMLC_PS_ROOT_URI": "10.0.0.1",
        "DMLC_PS_ROOT_PORT": "9091",
        "DMLC_NUM_SERVER": "3",
        "DMLC_NUM_WORKER": "3",
    }
    assert plan.env("server")["DMLC_ROLE"] == "server"
    assert plan.env("worker")["DMLC_ROLE"] == "worker"
    assert "DMLC_NODE_HOST" not in plan.env("worker")  # ps-lite finds the pod's address
    assert plan.watch_port == 9092
    with pytest.raises(ValueError):
        plan.env("client")


def test_other_hosts_run_only_a_server():
    plan = plan_roles(
        {"current_host": "algo-3", "hosts": HOSTS, "network_interface_name": "eth0"},
        env={},
        resolve=lambda name: "10.0.0.1",
    )
    assert not plan.is_chief and plan.host_index == 2
    assert plan.child_roles == ("server",)
    assert plan.env("server")["DMLC_PS_ROOT_URI"] == "10.0.0.1"
    assert plan.env("worker")["DMLC_INTERFACE"] == "eth0"


def test_local_overrides_for_processes_on_one_machine():
    env = {
        "ODP_DIST_HOST_ADDRESSES": "127.0.0.1",
        "DMLC_PS_ROOT_PORT": "12345",
        "ODP_DIST_WATCH_PORT": "12399",
    }
    plan = plan_roles({"current_host": "algo-2", "hosts": HOSTS}, env=env, resolve=_no_dns)
    worker = plan.env("worker")
    assert worker["DMLC_PS_ROOT_URI"] == "127.0.0.1"
    assert worker["DMLC_PS_ROOT_PORT"] == "12345"
    assert worker["DMLC_NODE_HOST"] == "127.0.0.1"
    assert "DMLC_NODE_HOST" not in plan.env("scheduler")
    assert plan.watch_port == 12399

    env = {"DMLC_PS_ROOT_URI": "sched.local", "ODP_DIST_HOST_ADDRESSES": "algo-2=10.1.1.2"}
    plan = plan_roles({"current_host": "algo-2", "hosts": HOSTS}, env=env, resolve=_no_dns)
    assert plan.root_uri == "sched.local" and plan.node_host == "10.1.1.2"


def test_parse_addresses():
    assert parse_addresses("", ("a", "b")) == {}
    assert parse_addresses("1.2.3.4", ("a", "b")) == {"a": "1.2.3.4", "b": "1.2.3.4"}
    assert parse_addresses("a=1.1.1.1, b=2.2.2.2", ("a", "b")) == {"a": "1.1.1.1", "b": "2.2.2.2"}
    with pytest.raises(ValueError, match="name=address"):
        parse_addresses("a=1.1.1.1,b", ("a", "b"))


def test_bad_resource_config():
    with pytest.raises(DistributedError, match="not among hosts"):
        plan_roles({"current_host": "algo-9", "hosts": HOSTS}, env={}, resolve=str)
    with pytest.raises(DistributedError, match="twice"):
        plan_roles({"current_host": "algo-1", "hosts": ["algo-1", "algo-1"]}, {}, resolve=str)


@pytest.mark.parametrize(
    ("kv_store", "hosts", "devices", "expected"),
    [
        ("device", 1, 1, "local"),
        ("device", 1, 4, "device"),
        ("local", 1, 4, "local"),
        ("dist_sync", 1, 1, "local"),  # one host needs no parameter server
        ("dist_async", 1, 2, "device"),
        ("device", 2, 1, "dist_sync"),  # SageMaker's default across hosts
        ("dist_sync", 2, 1, "dist_sync"),
        ("dist_async", 3, 8, "dist_async"),
        ("dist_device_sync", 2, 8, "dist_device_sync"),
    ],
)
def test_kv_store_type(kv_store, hosts, devices, expected):
    assert kv_store_type(kv_store, hosts, devices) == expected


def test_local_kv_store_cannot_span_hosts():
    with pytest.raises(TrainingError, match="kv_store=local cannot train across 2 hosts"):
        kv_store_type("local", 2, 1)


@pytest.mark.parametrize(("length", "shards"), [(16, 2), (17, 2), (10, 3), (5, 4), (3, 5)])
def test_shards_are_disjoint_equal_and_cover_the_data(length, shards):
    samplers = [ShardSampler(length, r, shards, seed=7) for r in range(shards)]
    parts = [list(s) for s in samplers]
    per = -(-length // shards)
    assert all(len(p) == per == len(s) for p, s in zip(parts, samplers, strict=True))
    flat = [i for p in parts for i in p]
    assert set(flat) == set(range(length))  # every image, every epoch
    assert len(flat) - len(set(flat)) == per * shards - length  # repeats only as padding
    if length % shards == 0:
        assert all(not set(a) & set(b) for a in parts for b in parts if a is not b)


def test_shards_reshuffle_each_epoch_the_same_way_on_every_worker():
    a, b = ShardSampler(16, 0, 2, seed=1), ShardSampler(16, 1, 2, seed=1)
    epoch0 = (list(a), list(b))
    epoch1 = (list(a), list(b))
    assert epoch0 != epoch1
    assert sorted(epoch1[0] + epoch1[1]) == list(range(16))
    resumed = ShardSampler(16, 0, 2, seed=1, epoch=1)  # a resumed run continues the order
    assert list(resumed) == epoch1[0]
    with pytest.raises(ValueError):
        ShardSampler(16, 2, 2)


def test_float64_survives_the_kvstore_sum_exactly():
    for value in (0.0, 1.0, 0.005224660397074189, 1 / 3, -2.5e-300):
        words = encode_f64(value)
        assert words.dtype == np.float32
        assert decode_f64(words + np.zeros(4, np.float32) + np.zeros(4, np.float32)) == value


def _net_and_trainer():
    net = mx.gluon.nn.Dense(2, in_units=3)
    net.initialize()
    trainer = mx.gluon.Trainer(net.collect_params(), "adam", {"learning_rate": 0.1})
    with mx.autograd.record():
        loss = net(mx.nd.ones((1, 3))).sum()
    loss.backward()
    trainer.step(1)
    return net, trainer


def test_non_chief_checkpointer_writes_nothing(tmp_path):
    net, trainer = _net_and_trainer()
    ckpt = DistCheckpointer(tmp_path / "c", writable=False)
    ckpt.save(net, trainer, LoopState(epoch=0))
    ckpt.save_best(net)
    assert list((tmp_path / "c").iterdir()) == []


def test_checkpoint_without_optimizer_state_resumes_weights(tmp_path):
    net, trainer = _net_and_trainer()
    ckpt = DistCheckpointer(tmp_path / "c", optimizer_state=False)  # dist_async
    ckpt.save(net, trainer, LoopState(epoch=3, best_map=0.5))
    assert ckpt.states.stat().st_size == 0
    other, other_trainer = _net_and_trainer()
    state = DistCheckpointer(tmp_path / "c").load(other, other_trainer, [mx.cpu()])
    assert state.epoch == 3 and state.best_map == 0.5
    assert np.array_equal(other.weight.data().asnumpy(), net.weight.data().asnumpy())


def test_stop_check_without_sync_is_the_local_stopper(tmp_path):
    plan = plan_roles({"current_host": "algo-1", "hosts": HOSTS[:2]}, env={}, resolve=str)
    cluster = Cluster(plan, "dist_async", tmp_path / "failure", tmp_path / "ckpt")
    stopper = lambda: None  # noqa: E731
    assert cluster.stop_check(stopper) is stopper
    assert cluster.update_on_kvstore and cluster.rescale_grad == 1.0
    assert cluster.chief_value(0.25) == 0.25
    sync = Cluster(plan, "dist_sync", tmp_path / "failure", tmp_path / "ckpt")
    assert not sync.update_on_kvstore and sync.rescale_grad == 0.5
    with pytest.raises(ValueError):
        Cluster(plan, "device", tmp_path / "failure", tmp_path / "ckpt")


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
    monkeypatch.setattr(entrypoint, "_contexts", lambda: [mx.cpu(0), mx.cpu(1)])
    monkeypatch.setattr(mx.kv, "create", lambda name: created.append(name) or real_create(name))
    assert entrypoint.run_training(str(paths.root)) == 0, capsys.readouterr()
    assert created == ["device"]
    assert (paths.model / "model_algo_1-0000.params").exists()
    assert "epoch 0: 8 samples" in capsys.readouterr().out
