"""The kvstore agreement of a multi-host run (stop votes, the chief's value)."""

import numpy as np
import pytest

from pipeline_lib.training.distributed.cluster import Cluster, decode_f64, encode_f64
from pipeline_lib.training.distributed.roles import plan_roles

HOSTS = ["algo-1", "algo-2", "algo-3"]


def test_float64_survives_the_kvstore_sum_exactly():
    for value in (0.0, 1.0, 0.005224660397074189, 1 / 3, -2.5e-300):
        words = encode_f64(value)
        assert words.dtype == np.float32
        assert decode_f64(words + np.zeros(4, np.float32) + np.zeros(4, np.float32)) == value


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
