"""The training and validation DataLoaders: GluonCV SSD transforms over a detection dataset.

Training batches carry the SSD targets, computed in the data workers; validation batches
carry the padded ground truth for the mAP metric. The ``flip`` recipe and validation keep
their deterministic part (decode, resize, targets) in memory after the first epoch when it
fits (:mod:`.cached_data`); everything else goes through the per-image workers.
"""

from __future__ import annotations

from mxnet import gluon

from ..workers import default_signals_for_forks


def train_loader(
    dataset,
    net,
    image_shape: int,
    batch_size: int,
    workers: int,
    *,
    iou: float,
    sampler=None,
    seed: int | None = None,
    augmentation: str = "ssd",
    budget=None,
):
    """DataLoader producing ``(image, cls_targets, box_targets)`` batches with augmentation.

    ``iou``: the anchor-matching threshold (``overlap_threshold``).
    ``sampler``: the indices to draw (a distributed worker's shard); shuffled otherwise.
    ``seed``: base of each data worker's own random seed (random when ``None``).
    ``augmentation``: ``ssd``, ``light`` or ``flip`` (:mod:`.transforms`).
    ``budget``: the :class:`~.cached_data.CacheBudget` a ``flip`` cache draws on (the
    default: ``ODP_TRAIN_CACHE_MB``); ``workers`` also fill that cache."""
    from gluoncv.data.batchify import Stack, Tuple

    from .cached_data import CacheBudget, CachedFlipLoader, PrefixCache
    from .data import TransformDataset
    from .model import anchors_for
    from .transforms import train_transform

    anchors = anchors_for(net, image_shape)
    transform = train_transform(augmentation, image_shape, anchors, iou)
    if augmentation == "flip":
        budget = budget if budget is not None else CacheBudget()
        if budget.take(PrefixCache.nbytes(len(dataset), image_shape), "training images"):
            return CachedFlipLoader(
                dataset, transform, batch_size, workers, sampler=sampler, seed=seed
            )
    with default_signals_for_forks():
        return gluon.data.DataLoader(
            TransformDataset(dataset, transform, seed),
            batch_size,
            shuffle=sampler is None,
            sampler=sampler,
            batchify_fn=Tuple(Stack(), Stack(), Stack()),
            last_batch="rollover",
            num_workers=workers,
        )


def val_loader(dataset, image_shape: int, batch_size: int, workers: int, budget=None):
    """DataLoader producing ``(image, padded labels)`` resized to ``image_shape``; from a
    cache of the resized images when they fit ``budget`` (default: ``ODP_TRAIN_CACHE_MB``)."""
    from gluoncv.data.batchify import Pad, Stack, Tuple

    from .cached_data import CacheBudget, CachedValLoader, PrefixCache
    from .data import TransformDataset
    from .transforms import ValTransform

    transform = ValTransform(image_shape, image_shape)
    budget = budget if budget is not None else CacheBudget()
    if budget.take(PrefixCache.nbytes(len(dataset), image_shape), "validation images"):
        return CachedValLoader(dataset, transform, batch_size, workers)
    with default_signals_for_forks():
        return gluon.data.DataLoader(
            # A fixed seed: validation draws nothing at random, and must not take from the
            # global stream the training augmentation draws on (cached or not, same run).
            TransformDataset(dataset, transform, seed=0),
            batch_size,
            shuffle=False,
            batchify_fn=Tuple(Stack(), Pad(pad_val=-1)),
            last_batch="keep",
            num_workers=workers,
        )
