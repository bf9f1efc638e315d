"""The training and validation DataLoaders: GluonCV SSD transforms over a detection dataset.

Training batches carry the SSD targets, computed in the data workers; validation batches
carry the padded ground truth for the mAP metric.
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
):
    """DataLoader producing ``(image, cls_targets, box_targets)`` batches with augmentation.

    ``iou``: the anchor-matching threshold (``overlap_threshold``).
    ``sampler``: the indices to draw (a distributed worker's shard); shuffled otherwise.
    ``seed``: base of each data worker's own random seed (random when ``None``).
    ``augmentation``: ``ssd``, ``light`` or ``flip`` (:mod:`.transforms`)."""
    from gluoncv.data.batchify import Stack, Tuple

    from .data import TransformDataset
    from .model import anchors_for
    from .transforms import train_transform

    anchors = anchors_for(net, image_shape)
    transform = train_transform(augmentation, image_shape, anchors, iou)
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


def val_loader(dataset, image_shape: int, batch_size: int, workers: int):
    """DataLoader producing ``(image, padded labels)`` resized to ``image_shape``."""
    from gluoncv.data.batchify import Pad, Stack, Tuple
    from gluoncv.data.transforms.presets.ssd import SSDDefaultValTransform

    from .data import TransformDataset

    with default_signals_for_forks():
        return gluon.data.DataLoader(
            TransformDataset(dataset, SSDDefaultValTransform(image_shape, image_shape)),
            batch_size,
            shuffle=False,
            batchify_fn=Tuple(Stack(), Pad(pad_val=-1)),
            last_batch="keep",
            num_workers=workers,
        )
