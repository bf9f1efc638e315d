"""Data workers draw their own augmentation randomness."""

from __future__ import annotations

import random

import mxnet as mx
import numpy as np

from pipeline_lib.training.data import TransformDataset


class _Images:
    def __len__(self) -> int:
        return 64

    def __getitem__(self, i: int):
        return np.zeros((4, 4, 3), np.uint8), np.zeros((1, 5), np.float32)


def _draws(img, label):
    """A stand-in transform that returns the random numbers it would have used."""
    return np.array([random.random(), np.random.rand()], dtype=np.float32)  # noqa: S311  test data, not a secret


def _batches(seed: int, workers: int) -> list[np.ndarray]:
    random.seed(0)
    np.random.seed(0)  # the same parent state every time, as after the training seed
    loader = mx.gluon.data.DataLoader(
        TransformDataset(_Images(), _draws, seed), batch_size=8, num_workers=workers
    )
    return [b.asnumpy() for b in loader]


def test_forked_workers_do_not_repeat_each_others_augmentation():
    batches = _batches(seed=5, workers=2)
    # batch 0 and batch 1 come from different workers: their random draws must differ
    firsts = {tuple(np.round(b[0], 6)) for b in batches}
    assert len(firsts) == len(batches)
    values = np.concatenate(batches).ravel()
    assert len(np.unique(values)) == values.size  # no repeated draw anywhere


def test_in_process_loading_keeps_the_training_seed():
    assert all(np.array_equal(a, b) for a, b in zip(_batches(1, 0), _batches(2, 0), strict=True))
