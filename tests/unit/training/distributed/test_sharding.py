"""Data sharding of multi-host training."""

import pytest

from pipeline_lib.training.distributed.sharding import ShardSampler


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
