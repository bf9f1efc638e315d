"""The cached ``flip`` and validation batches equal what the per-image transforms produce."""

from __future__ import annotations

import random

import mxnet as mx
import numpy as np
import psutil
import pytest
from gluoncv.data.batchify import Pad, Stack, Tuple
from gluoncv.data.transforms import bbox as tbbox
from gluoncv.data.transforms import image as timage
from gluoncv.data.transforms.presets.ssd import SSDDefaultValTransform
from gluoncv.model_zoo.ssd.target import SSDTargetGenerator

from pipeline_lib.training.cached_data import (
    CACHE_ENV,
    BatchBuffers,
    CacheBudget,
    CachedFlipLoader,
    CachedValLoader,
    PlaneNormaliser,
    cache_budget_bytes,
)
from pipeline_lib.training.data import ImageJsonDetection
from pipeline_lib.training.distributed.sharding import ShardSampler
from pipeline_lib.training.errors import TrainingError
from pipeline_lib.training.loaders import train_loader, val_loader
from pipeline_lib.training.model import anchors_for, build_ssd
from pipeline_lib.training.transforms import train_transform

SIDE = 128  # any input size: small keeps the test quick
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture(scope="module")
def net():
    mx.random.seed(0)
    net = build_ssd("mobilenet-0.25", ["a", "b"], SIDE)
    net.initialize()
    return net


@pytest.fixture(scope="module")
def anchors(net):
    return anchors_for(net, SIDE)


@pytest.fixture
def train(training_data):
    return ImageJsonDetection(training_data / "train", training_data / "train_annotation")


@pytest.fixture
def validation(training_data):
    return ImageJsonDetection(training_data / "validation", training_data / "validation_annotation")


def _reference(img: np.ndarray, label: np.ndarray, flip: bool, anchors, iou: float = 0.5):
    """The ``flip`` recipe per image as it was before the cache (GluonCV's pieces)."""
    src = mx.nd.array(img, dtype="uint8")
    h, w, _ = src.shape
    out = timage.imresize(src, SIDE, SIDE, interp=1)
    bbox = tbbox.resize(label, (w, h), (SIDE, SIDE))
    if flip:
        out = mx.nd.flip(out, axis=1)
    bbox = tbbox.flip(bbox, (SIDE, SIDE), flip_x=flip)
    out = mx.nd.image.normalize(mx.nd.image.to_tensor(out), mean=MEAN, std=STD)
    generator = SSDTargetGenerator(
        iou_thresh=iou, stds=(0.1, 0.1, 0.2, 0.2), negative_mining_ratio=-1
    )
    cls, box, _ = generator(
        anchors, None, mx.nd.array(bbox[np.newaxis, :, :4]), mx.nd.array(bbox[np.newaxis, :, 4:5])
    )
    return out.asnumpy(), cls[0].asnumpy(), box[0].asnumpy()


def _epoch(loader) -> list[tuple[np.ndarray, ...]]:
    return [tuple(a.asnumpy() for a in batch) for batch in loader]


@pytest.mark.parametrize(("workers", "shard"), [(0, False), (2, False), (2, True)])
def test_flip_batches_equal_the_per_image_transform(train, anchors, workers, shard):
    if shard:  # a distributed worker's part of every epoch
        sampler = ShardSampler(len(train), rank=1, num_shards=2, seed=4)
        stream = sampler.indices(0) + sampler.indices(1)
    else:
        sampler = list(range(len(train)))
        stream = sampler * 2
    loader = CachedFlipLoader(
        train, train_transform("flip", SIDE, anchors, 0.5), 6, workers, sampler=sampler, seed=3
    )
    n = len(stream) // 2
    assert n % 6 and len(loader) == n // 6  # the rest rolls over to the next epoch
    used, seen_flips = 0, set()
    for epoch in range(2):  # the first fills the cache, the second reads it
        batches = _epoch(loader)
        assert len(batches) == ((2 * n - used) // 6 if epoch else n // 6)
        indices = stream[used : used + 6 * len(batches)]
        used += len(indices)
        for b, (images, cls, box) in enumerate(batches):
            assert images.shape == (6, 3, SIDE, SIDE) and images.dtype == np.float32
            for row in range(6):
                img, label = train[indices[6 * b + row]]
                matches = [
                    flip
                    for flip in (False, True)
                    if _equal(
                        (images[row], cls[row], box[row]), _reference(img, label, flip, anchors)
                    )
                ]
                assert matches, f"epoch {epoch} batch {b} row {row}"
                seen_flips.update(matches)
    assert seen_flips == {False, True}


def _equal(ours, reference) -> bool:
    (img, cls, box), (ref_img, ref_cls, ref_box) = ours, reference
    return (
        np.allclose(img, ref_img, atol=1e-5, rtol=0)
        and np.array_equal(cls, ref_cls)
        and np.allclose(box, ref_box, atol=1e-5, rtol=0)
    )


class _Counting:
    """A dataset that counts the images read in this process (not in forked workers)."""

    def __init__(self, dataset):
        self._dataset, self.reads = dataset, 0

    def __len__(self) -> int:
        return len(self._dataset)

    def __getitem__(self, idx: int):
        self.reads += 1
        return self._dataset[idx]


def test_the_fill_workers_exist_before_training_and_fill_the_rollover_too(train, anchors):
    """Forked when the loader is made (before training allocates its memory, which a later
    fork would make copy-on-write), they fill the first pass and the images it holds back
    for the next, then exit: the second pass reads nothing."""
    me = psutil.Process()
    before = set(me.children())
    dataset = _Counting(train)
    transform = train_transform("flip", SIDE, anchors, 0.5)
    loader = CachedFlipLoader(dataset, transform, 6, 2, sampler=range(len(train)), seed=3)
    assert len(set(me.children()) - before) == 2
    assert len(train) % 6 and len(_epoch(loader)) == len(train) // 6
    assert set(me.children()) - before == set()
    assert dataset.reads == 0
    second = _epoch(loader)
    assert dataset.reads == 0 and len(second) == (2 * len(train) - 6 * (len(train) // 6)) // 6


def test_a_first_pass_cut_short_leaves_the_rest_to_new_workers(train, anchors):
    dataset = _Counting(train)
    transform = train_transform("flip", SIDE, anchors, 0.5)
    loader = CachedFlipLoader(dataset, transform, 4, 2, sampler=range(len(train)), seed=3)
    first = iter(loader)
    next(first)
    first.close()  # stopped after one batch: its workers are gone
    assert len(train) - 8 > 4  # more than a chunk is still missing
    assert len(_epoch(loader)) == (len(train) + len(train) % 4) // 4
    assert dataset.reads == 0  # workers again, not this process


def test_the_flips_follow_the_seed(train, anchors):
    def flips(seed: int) -> list[np.ndarray]:
        transform = train_transform("flip", SIDE, anchors, 0.5)
        loader = CachedFlipLoader(train, transform, 5, 0, sampler=range(len(train)), seed=seed)
        return [batch[0] for _ in range(2) for batch in _epoch(loader)]

    first, again, other = flips(7), flips(7), flips(8)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_validation_batches_equal_gluoncv_validation_transform(validation):
    old = mx.gluon.data.DataLoader(
        _Transformed(validation, SSDDefaultValTransform(SIDE, SIDE)),
        3,
        batchify_fn=Tuple(Stack(), Pad(pad_val=-1)),
        last_batch="keep",
    )
    reference = _epoch(old)
    me = psutil.Process()
    before = set(me.children())
    loader = val_loader(validation, SIDE, 3, workers=2, budget=CacheBudget(1 << 30))
    assert isinstance(loader, CachedValLoader)
    assert len(loader) == len(reference)
    assert len(set(me.children()) - before) == 2  # forked now, not after the first epoch
    for _ in range(2):  # filling, then from the cache
        batches = _epoch(loader)
        assert set(me.children()) - before == set()
        assert len(batches) == len(reference)
        for (images, labels), (ref_images, ref_labels) in zip(batches, reference, strict=True):
            assert np.allclose(images, ref_images, atol=1e-5, rtol=0)
            assert labels.dtype == ref_labels.dtype and np.array_equal(labels, ref_labels)


@pytest.mark.parametrize("budget", [0, 1 << 30], ids=["workers", "cache"])
def test_validation_leaves_the_training_random_stream_alone(validation, budget):
    """Cached or not, validation draws nothing from the global ``random``/``numpy`` streams
    the training augmentation draws on: the same seed trains the same model either way."""
    random.seed(5)
    np.random.seed(5)
    for _ in range(2):
        _epoch(val_loader(validation, SIDE, 3, workers=0, budget=CacheBudget(budget)))
    after = random.random(), np.random.random_sample()  # noqa: S311  not a secret
    random.seed(5)
    np.random.seed(5)
    assert after == (random.random(), np.random.random_sample())  # noqa: S311


def test_plane_normaliser_is_bitwise_the_transforms_normalise():
    transform = train_transform("flip", SIDE, np.zeros((1, 4, 4)), 0.5)
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (5, SIDE, SIDE, 3), dtype=np.uint8)
    flips = np.array([True, False, True, True, False])
    expected = images.copy()
    expected[flips] = expected[flips, :, ::-1]
    expected = transform.normalise(mx.nd.array(expected, dtype="uint8")).asnumpy()
    planes = np.ascontiguousarray(images.transpose(0, 3, 1, 2))
    ours = PlaneNormaliser(transform.normalise)(planes, [0, 1, 2, 3, 4], flips)
    assert ours.dtype == np.float32 and np.array_equal(ours, expected)
    in_order = PlaneNormaliser(transform.normalise)(planes, [4, 0])
    assert np.array_equal(in_order[0], ours[4])


class _Transformed(mx.gluon.data.Dataset):
    def __init__(self, dataset, transform):
        self._dataset, self._transform = dataset, transform

    def __len__(self) -> int:
        return len(self._dataset)

    def __getitem__(self, idx: int):
        img, label = self._dataset[idx]
        return self._transform(mx.nd.array(img, dtype="uint8"), label)


def test_what_does_not_fit_the_budget_goes_through_the_workers(train, net):
    lines: list[str] = []
    budget = CacheBudget(1000, log=lines.append)
    loader = train_loader(train, net, SIDE, 4, 0, iou=0.5, augmentation="flip", budget=budget)
    assert isinstance(loader, mx.gluon.data.DataLoader)
    assert len(lines) == 1 and "training images" in lines[0] and CACHE_ENV in lines[0]
    images, cls, box = next(iter(loader))
    assert images.shape == (4, 3, SIDE, SIDE) and cls.shape[0] == box.shape[0] == 4


def test_flip_uses_the_cache_and_the_others_do_not(train, net):
    budget = CacheBudget(len(train) * SIDE * SIDE * 3)
    cached = train_loader(train, net, SIDE, 4, 0, iou=0.5, augmentation="flip", budget=budget)
    assert isinstance(cached, CachedFlipLoader) and budget.left == 0
    for augmentation in ("ssd", "light"):
        loader = train_loader(train, net, SIDE, 4, 0, iou=0.5, augmentation=augmentation)
        assert isinstance(loader, mx.gluon.data.DataLoader)


def test_cache_budget_from_the_environment(monkeypatch):
    monkeypatch.delenv(CACHE_ENV, raising=False)
    assert cache_budget_bytes() > 0
    monkeypatch.setenv(CACHE_ENV, "12")
    assert cache_budget_bytes() == 12 << 20
    monkeypatch.setenv(CACHE_ENV, "0")
    assert cache_budget_bytes() == 0
    for bad in ("-1", "lots", "1.5"):
        monkeypatch.setenv(CACHE_ENV, bad)
        with pytest.raises(TrainingError, match=CACHE_ENV):
            cache_budget_bytes()


def test_a_batch_buffer_is_written_again_only_after_mxnet_has_read_it():
    """With one set, the second batch must wait for the operation still reading the first
    (MXNet runs it asynchronously, on the very memory: no copy)."""
    import time

    class _SlowCopy(mx.operator.CustomOp):
        def forward(self, is_train, req, in_data, out_data, aux):
            time.sleep(0.3)
            self.assign(out_data[0], req[0], in_data[0])

    @mx.operator.register("odp_test_slow_copy")
    class _SlowCopyProp(mx.operator.CustomOpProp):
        def infer_shape(self, in_shape):
            return in_shape, [in_shape[0]], []

        def create_operator(self, ctx, shapes, dtypes):
            return _SlowCopy()

    buffers = BatchBuffers([(4, 8)], depth=1)
    (first,) = buffers.take(4)
    first[:] = 1
    (handed,) = buffers.hand([first])
    copied = mx.nd.Custom(handed, op_type="odp_test_slow_copy")  # queued, not run yet
    (second,) = buffers.take(2)  # the same memory, once the copy has read it
    second[:] = 2
    assert np.array_equal(copied.asnumpy(), np.ones((4, 8), np.float32))
    assert buffers.compute_wait >= 0.2  # what the loop must not count as waiting for data
    (again,) = buffers.hand([second])
    assert again.shape == (2, 8) and np.array_equal(again.asnumpy(), np.full((2, 8), 2.0))
