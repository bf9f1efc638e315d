"""Data sharding: each worker's disjoint, equally long part of a shuffled epoch."""

from __future__ import annotations

import math

import mxnet as mx
import numpy as np


class ShardSampler(mx.gluon.data.Sampler):
    """This worker's disjoint part of a shuffled epoch; every worker gets the same count.

    Each epoch the workers shuffle with the same seed, pad the order by wrapping around to a
    multiple of ``num_shards`` and take every ``num_shards``-th index from ``rank``, so the
    shards are disjoint (but for the padding) and equally long: in ``dist_sync`` every worker
    must run the same number of steps.
    """

    def __init__(self, length: int, rank: int, num_shards: int, seed: int = 0, epoch: int = 0):
        if not 0 <= rank < num_shards:
            raise ValueError(f"rank {rank} outside 0..{num_shards - 1}")
        if length < 1:
            raise ValueError("cannot shard an empty dataset")
        self.length, self.rank, self.num_shards = length, rank, num_shards
        self.seed, self.epoch = seed, epoch
        self.per_shard = math.ceil(length / num_shards)

    def indices(self, epoch: int) -> list[int]:
        """This shard's indices in ``epoch`` (the same on every call)."""
        order = np.random.RandomState((self.seed + epoch) % 2**32).permutation(self.length)
        order = np.resize(order, self.per_shard * self.num_shards)  # wrap-around padding
        return order[self.rank :: self.num_shards].tolist()

    def __iter__(self):
        epoch, self.epoch = self.epoch, self.epoch + 1
        return iter(self.indices(epoch))

    def __len__(self) -> int:
        return self.per_shard
