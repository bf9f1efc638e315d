"""Batches from a cache of the deterministic part of a transform (``flip`` and validation).

With ``augmentation=flip`` everything but the horizontal flip is the same every epoch:
decode, the bilinear resize to the input size, and the SSD targets (which depend only on
the boxes, the flip and the anchors). The first time an image is drawn the data workers
compute, with the very functions of :mod:`.transforms`, its resized uint8 image and its
targets for both flip states; the main process keeps them (the image as three planes,
the network's channel-first layout). Every batch is then, per plane, an optional flip and
one table look-up from uint8 to the normalised float32 (:class:`PlaneNormaliser`, exactly
the transform's own values), written where the network reads it. Validation keeps its
resized images and boxes the same way, so an evaluation costs only the forward pass.

The targets are kept sparse (the anchors with a non-zero target: the positives), so the
memory is essentially ``images x side^2 x 3`` bytes. It is bounded by ``ODP_TRAIN_CACHE_MB``
(default: a quarter of the memory this process may use; ``0`` turns the cache off); a
dataset that does not fit goes through the per-image workers as before.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import mxnet as mx
import numpy as np
from mxnet import gluon
from mxnet.base import _LIB, check_call

from .. import bounds
from ..workers import default_signals_for_forks
from .errors import TrainingError

CACHE_ENV = "ODP_TRAIN_CACHE_MB"
MAX_CACHE_MB = 16 << 20  # 16 TiB
_MiB = 1 << 20


def memory_bytes(cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """The memory this process may use: the cgroup limit (v2 or v1), else the machine's."""
    machine = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in (cgroup / "memory.max", cgroup / "memory" / "memory.limit_in_bytes"):
        try:
            return min(machine, int(path.read_text().split()[0]))
        except (OSError, ValueError, IndexError):  # absent, or "max"
            continue
    return machine


def cache_budget_bytes() -> int:
    """Bytes the training and validation caches may hold together (``ODP_TRAIN_CACHE_MB``;
    ``0``: no cache). A value that is not a non-negative integer is a ``TrainingError``."""
    raw = os.environ.get(CACHE_ENV, "").strip()
    if not raw:
        return memory_bytes() // 4
    try:
        return bounds.parse_int(raw, CACHE_ENV, minimum=0, maximum=MAX_CACHE_MB) * _MiB
    except bounds.NumberError as exc:
        raise TrainingError(f"{exc} MB (0: no cache)") from None


class CacheBudget:
    """What is left of the cache budget; each cache asks once for all it will hold."""

    def __init__(self, nbytes: int | None = None, log: Callable[[str], None] = print):
        self.left = cache_budget_bytes() if nbytes is None else nbytes
        self._log = log

    def take(self, nbytes: int, what: str) -> bool:
        """Reserve ``nbytes`` for ``what``; False (and one line saying so) if they do not fit."""
        if nbytes > self.left:
            self._log(
                f"{what}: {nbytes / _MiB:.0f} MB do not fit the {self.left / _MiB:.0f} MB "
                f"left of the cache ({CACHE_ENV}); decoding every image every epoch instead"
            )
            return False
        self.left -= nbytes
        return True


def _as_list(items: list) -> list:
    """Batchify for the fill workers: the items as they are (numpy, pickled once)."""
    return list(items)


class PlaneNormaliser:
    """The transform's ``normalise`` (``to_tensor`` then ``normalize``) of channel-first
    uint8 images as a per-channel table of its 256 values: one pass per plane instead of
    two over the whole float batch, bitwise equal (the table is ``normalise``'s output).
    About 9x cheaper than normalising the batch in MXNet (3 ms vs 27 ms for 16 images at
    300x300 on one core), and the batch is handed to MXNet without a copy."""

    def __init__(self, normalise: Callable):
        ramp = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2)
        table = normalise(mx.nd.array(ramp, dtype="uint8")).asnumpy()  # (3, 1, 256)
        self._tables = [np.ascontiguousarray(table[c, 0], np.float32) for c in range(3)]

    def __call__(
        self, planes: np.ndarray, indices: Sequence[int], flips=None, out: np.ndarray | None = None
    ) -> np.ndarray:
        """``planes[indices]`` (``(N, 3, H, W)`` uint8), each flipped left-right where
        ``flips`` says so, as the network's normalised float32 input (written into ``out``
        when given)."""
        import cv2

        _, channels, height, width = planes.shape
        if out is None:
            out = np.empty((len(indices), channels, height, width), np.float32)
        scratch = np.empty((height, width), np.uint8)
        for row, idx in enumerate(indices):
            flip = flips is not None and flips[row]
            for c in range(channels):
                src = planes[idx, c]
                if flip:
                    src = cv2.flip(src, 1, dst=scratch)
                cv2.LUT(src, self._tables[c], dst=out[row, c])
        return out


def _wait_to_write(array: mx.nd.NDArray) -> None:
    """Block until no operation reads or writes ``array`` (MXNet's C API has it; its Python
    ``NDArray`` only has ``wait_to_read``, which does not wait for the readers)."""
    check_call(_LIB.MXNDArrayWaitToWrite(array.handle))


class BatchBuffers:
    """Host arrays for batches, reused in turn rather than allocated for every batch.

    A fresh array of a few MB faults on every page it touches (glibc maps large blocks
    afresh and hands them back when freed), a cost that grew to 40-120 ms for one batch's
    targets on a virtual machine. MXNet reads a batch asynchronously and without a copy
    (:func:`mx.nd.from_numpy`), so a set is written again only once every operation that
    reads it has finished (:func:`_wait_to_write`). The training loop queues batches
    ahead of the compute (nothing in a step waits for MXNet), so the wait also bounds how
    far ahead it gets: ``depth`` batches. That wait is time the compute is busy, not time
    it waits for data: :attr:`compute_wait` adds it up for the loop to tell them apart."""

    def __init__(self, shapes: Sequence[tuple[int, ...]], depth: int = 4):
        self._sets = [[np.empty(shape, np.float32) for shape in shapes] for _ in range(depth)]
        self._handed: list[list[mx.nd.NDArray]] = [[] for _ in range(depth)]
        self._next = 0
        self.compute_wait = 0.0  # seconds spent waiting for MXNet to finish with a set

    def take(self, rows: int) -> list[np.ndarray]:
        """The next set's arrays, their first ``rows`` rows, free to write."""
        i = self._next
        start = time.perf_counter()
        for array in self._handed[i]:
            _wait_to_write(array)
        self.compute_wait += time.perf_counter() - start
        self._handed[i] = []
        return [a[:rows] for a in self._sets[i]]

    def hand(self, arrays: list[np.ndarray]) -> list[mx.nd.NDArray]:
        """The arrays :meth:`take` gave, written, as NDArrays sharing their memory."""
        i, self._next = self._next, (self._next + 1) % len(self._sets)
        # from_numpy marks the (view) array read-only; the set's own arrays stay writable
        self._handed[i] = [mx.nd.from_numpy(a, zero_copy=True) for a in arrays]
        return self._handed[i]


class PrefixCache:
    """The resized uint8 images of a dataset (channel-first planes) and one payload per
    image, filled on first use.

    ``prefix(image NDArray HWC uint8, label) -> (resized image NDArray, payload)`` runs in
    ``workers`` forked data workers (in this process when 0), through
    :class:`~.data.TransformDataset` as the uncached path does.

    The workers are forked here, when the cache is made, not when the first images are
    needed: a fork marks every page of this process copy-on-write, so the first write to
    each page after it faults, and the validation cache fills after the first epoch, when
    the training graph's buffers (hundreds of MB) exist. They serve the first pass that
    needs images and then exit; a later pass forks new ones only when more than a chunk is
    still missing (a first pass cut short), and fills a few images in this process (the
    training loader has its first pass fill the images it holds back for the next)."""

    def __init__(self, dataset, prefix: Callable, side: int, workers: int, chunk: int):
        self.images = np.empty((len(dataset), 3, side, side), np.uint8)  # pages come on fill
        self.payload: list = [None] * len(dataset)
        self._filled = np.zeros(len(dataset), bool)
        self._dataset, self._prefix = dataset, prefix
        self._workers, self._chunk = workers, chunk
        self._pool: _Loader | None = None
        if workers and len(dataset) > chunk:
            self._pool = _Loader(dataset, prefix, workers)

    @staticmethod
    def nbytes(length: int, side: int) -> int:
        """Image bytes of a ``length``-image cache (the payloads are small beside them)."""
        return length * side * side * 3

    def filler(self, order: Sequence[int]) -> _Filler:
        """A filler for the images of ``order`` not cached yet, in that order (the workers
        forked with the cache fill for the first filler with anything to fill)."""
        missing = list(dict.fromkeys(i for i in order if not self._filled[i]))
        chunks = [missing[i : i + self._chunk] for i in range(0, len(missing), self._chunk)]
        if not chunks:
            return _Filler(self, chunks, None)
        loader, self._pool = self._pool, None
        if loader is None:  # a pass after the first: workers only for more than a chunk
            workers = self._workers if len(missing) > self._chunk else 0
            loader = _Loader(self._dataset, self._prefix, workers)
        return _Filler(self, chunks, loader)

    def store(self, idx: int, item: tuple) -> None:
        image, self.payload[idx] = item
        self.images[idx] = image.transpose(2, 0, 1)
        self._filled[idx] = True

    def has(self, indices: Sequence[int]) -> bool:
        return bool(self._filled[list(indices)].all())


class _Loader:
    """A DataLoader of ``prefix`` over chunks of the dataset's indices given later
    (:meth:`run`); with ``workers``, its forked pool exists from construction."""

    def __init__(self, dataset, prefix: Callable, workers: int):
        from .data import TransformDataset

        self._chunks: list[list[int]] = []
        with default_signals_for_forks():
            self._loader = gluon.data.DataLoader(
                TransformDataset(dataset, _Numpy(prefix), seed=0),
                batch_sampler=self._chunks,  # filled in place by ``run``
                batchify_fn=_as_list,
                num_workers=workers,
            )

    def run(self, chunks: list[list[int]]) -> Iterator[list]:
        """The items of each chunk, in order."""
        self._chunks[:] = chunks
        return iter(self._loader)

    def close(self) -> None:
        """Let the workers finish and go (a finished pool is joined, not terminated)."""
        pool = getattr(self._loader, "_worker_pool", None)
        if pool is not None:
            self._loader._worker_pool = None
            pool.close()
            pool.join()


class _Filler:
    """Fetches missing images chunk by chunk, as the batches that need them come."""

    def __init__(self, cache: PrefixCache, chunks: list[list[int]], loader: _Loader | None):
        self._cache, self._loader = cache, loader
        self._chunks = iter(chunks)
        self._results = loader.run(chunks) if loader is not None else None

    def until(self, indices: Sequence[int]) -> None:
        """Fill until every image of ``indices`` is cached."""
        while not self._cache.has(indices):
            for idx, item in zip(next(self._chunks), next(self._results), strict=True):
                self._cache.store(idx, item)

    def close(self) -> None:
        """Let the workers finish and go."""
        if self._loader is not None:
            self._loader.close()
        self._loader = self._results = None


class _Numpy:
    """``prefix`` with its image as numpy (what travels back from a worker)."""

    def __init__(self, prefix: Callable):
        self._prefix = prefix

    def __call__(self, img, label):
        img, payload = self._prefix(img, label)
        return img.asnumpy(), payload


def _sparse(cls_targets, box_targets) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(anchors with a non-zero target, their cls targets, their box targets)."""
    cls, box = cls_targets.asnumpy(), box_targets.asnumpy()
    (anchors,) = np.nonzero((cls != 0) | (box != 0).any(axis=1))
    return anchors.astype(np.int32), cls[anchors], box[anchors]


class _FlipPrefix:
    """Resized image and the sparse targets without and with the flip (``flip`` recipe)."""

    def __init__(self, transform):
        self._transform = transform

    def __call__(self, img, label):
        t = self._transform
        img, bbox = t.resize(img, label, interp=1)
        return img, (_sparse(*t.targets(bbox)), _sparse(*t.targets(t.flip_boxes(bbox))))


class CachedFlipLoader:
    """Training batches ``(image, cls_targets, box_targets)`` of the ``flip`` recipe from a
    :class:`PrefixCache`: the same batches as the per-image loader (``last_batch="rollover"``
    over ``sampler``, shuffled when None), each image flipped with probability 0.5 from a
    generator seeded with ``seed``."""

    def __init__(
        self, dataset, transform, batch_size: int, workers: int, *, sampler=None, seed=None
    ):
        self._normalise = PlaneNormaliser(transform.normalise)
        self._anchors = transform._anchors.shape[1]
        self._side = transform._width
        self._cache = PrefixCache(dataset, _FlipPrefix(transform), self._side, workers, batch_size)
        sampler = sampler if sampler is not None else gluon.data.RandomSampler(len(dataset))
        self._batches = gluon.data.BatchSampler(sampler, batch_size, "rollover")
        seed = random.randrange(2**31) if seed is None else seed  # noqa: S311  augmentation, not a secret
        self._rng = np.random.RandomState(seed % 2**32)
        side = self._side
        self._buffers = BatchBuffers(
            [
                (batch_size, 3, side, side),
                (batch_size, self._anchors),
                (batch_size, self._anchors, 4),
            ]
        )

    @property
    def compute_wait(self) -> float:
        """Seconds spent making batches that went to waiting for MXNet to finish with
        earlier ones (:class:`BatchBuffers`): the compute was busy, not short of data."""
        return self._buffers.compute_wait

    def __len__(self) -> int:
        return len(self._batches)

    def __iter__(self) -> Iterator[tuple[mx.nd.NDArray, mx.nd.NDArray, mx.nd.NDArray]]:
        batches = list(self._batches)  # the epoch's order (and its rollover)
        # the images held back for the next epoch (``rollover``) are filled in this pass
        # too, by the workers, rather than by this process when the next epoch begins
        held_back = list(getattr(self._batches, "_prev", []))
        filler = self._cache.filler([i for b in batches for i in b] + held_back)
        try:
            for batch in batches:
                filler.until(batch)
                yield self._batch(batch)
            filler.until(held_back)
        finally:
            filler.close()

    def _batch(self, indices: list[int]):
        flips = self._rng.random_sample(len(indices)) < 0.5
        data, cls, box = self._buffers.take(len(indices))
        cls.fill(0)
        box.fill(0)
        for row, (idx, flip) in enumerate(zip(indices, flips, strict=True)):
            anchors, cls_values, box_values = self._cache.payload[idx][int(flip)]
            cls[row, anchors] = cls_values
            box[row, anchors] = box_values
        self._normalise(self._cache.images, indices, flips, out=data)
        return tuple(self._buffers.hand([data, cls, box]))


class _ValPrefix:
    def __init__(self, transform):
        self._transform = transform

    def __call__(self, img, label):
        return self._transform.resize(img, label)


class CachedValLoader:
    """Validation batches ``(image, labels padded with -1)`` from a :class:`PrefixCache`,
    in dataset order (``last_batch="keep"``)."""

    def __init__(self, dataset, transform, batch_size: int, workers: int):
        from gluoncv.data.batchify import Pad

        self._batch_size, self._length = batch_size, len(dataset)
        self._normalise = PlaneNormaliser(transform.normalise)
        self._pad = Pad(pad_val=-1)
        side = transform._width
        self._cache = PrefixCache(dataset, _ValPrefix(transform), side, workers, batch_size)
        self._buffers = BatchBuffers([(batch_size, 3, side, side)])

    def __len__(self) -> int:
        return -(-self._length // self._batch_size)

    def __iter__(self) -> Iterator[tuple[mx.nd.NDArray, mx.nd.NDArray]]:
        filler = self._cache.filler(range(self._length))
        try:
            for start in range(0, self._length, self._batch_size):
                indices = list(range(start, min(start + self._batch_size, self._length)))
                filler.until(indices)
                (data,) = self._buffers.take(len(indices))
                self._normalise(self._cache.images, indices, out=data)
                (data,) = self._buffers.hand([data])
                labels = [self._cache.payload[i].astype(np.float32) for i in indices]
                yield data, self._pad(labels)
        finally:
            filler.close()
