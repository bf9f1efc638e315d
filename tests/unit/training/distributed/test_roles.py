"""Role/env planning and the kvstore choice of multi-host training."""

import pytest

from pipeline_lib.training.distributed.roles import kv_store_type, parse_addresses, plan_roles
from pipeline_lib.training.errors import DistributedError, TrainingError

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
