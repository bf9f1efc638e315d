"""The SSD training engine: ``train_one_epoch`` / ``evaluate`` over GluonCV SSD.

Follows the structure of GluonCV's ``scripts/detection/ssd/train_ssd.py`` (targets computed
in data workers, SSDMultiBoxLoss, VOC07 mAP on validation) and fails fast on a non-finite
loss. Stopping requests (SIGTERM, run-time limit) are honoured between batches.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from ..workers import default_signals_for_forks
from .metrics_log import MetricLogger


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite: training stops at once."""


class StopRequested(Exception):
    """A stop (signal or run-time limit) arrived between batches."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class EpochStats:
    """What one training epoch measured."""

    cross_entropy: float
    smooth_l1: float
    samples: int
    seconds: float
    data_wait_seconds: float

    @property
    def throughput(self) -> float:
        return self.samples / self.seconds if self.seconds else 0.0


def train_loader(
    dataset,
    net,
    image_shape: int,
    batch_size: int,
    workers: int,
    iou: float,
    sampler=None,
    seed: int | None = None,
):
    """DataLoader producing ``(image, cls_targets, box_targets)`` batches with augmentation.

    ``sampler``: the indices to draw (a distributed worker's shard); shuffled otherwise.
    ``seed``: base of each data worker's own random seed (random when ``None``)."""
    from gluoncv.data.batchify import Stack, Tuple
    from gluoncv.data.transforms.presets.ssd import SSDDefaultTrainTransform

    from .data import TransformDataset
    from .model import anchors_for

    anchors = anchors_for(net, image_shape)
    transform = SSDDefaultTrainTransform(image_shape, image_shape, anchors, iou_thresh=iou)
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


def train_one_epoch(
    net,
    trainer: gluon.Trainer,
    loader,
    ctx: list[mx.Context],
    epoch: int,
    logger: MetricLogger,
    check_stop: Callable[[], str | None],
    log_interval: int = 20,
    max_batches: int | None = None,
) -> EpochStats:
    """One pass over the training data; returns mean losses and timing."""
    from gluoncv.loss import SSDMultiBoxLoss

    mbox_loss = SSDMultiBoxLoss()
    ce_metric, l1_metric = mx.metric.Loss("CrossEntropy"), mx.metric.Loss("SmoothL1")
    net.hybridize(static_alloc=True, static_shape=True)
    samples, data_wait = 0, 0.0
    batches_per_epoch = len(loader) if hasattr(loader, "__len__") else None

    def log_loss(batch_idx: int, ce: float, l1: float) -> None:
        step = epoch * batches_per_epoch + batch_idx if batches_per_epoch else None
        logger.train_loss(epoch, batch_idx, ce, l1, step)

    start = time.perf_counter()
    fetch_start = start
    batch_idx = -1
    for batch_idx, batch in enumerate(loader):
        data_wait += time.perf_counter() - fetch_start
        if max_batches is not None and batch_idx >= max_batches:
            break
        reason = check_stop()
        if reason:
            raise StopRequested(reason)
        data = gluon.utils.split_and_load(batch[0], ctx_list=ctx, batch_axis=0)
        cls_targets = gluon.utils.split_and_load(batch[1], ctx_list=ctx, batch_axis=0)
        box_targets = gluon.utils.split_and_load(batch[2], ctx_list=ctx, batch_axis=0)
        with autograd.record():
            cls_preds, box_preds = [], []
            for x in data:
                cls_pred, box_pred, _ = net(x)
                cls_preds.append(cls_pred)
                box_preds.append(box_pred)
            sum_loss, cls_loss, box_loss = mbox_loss(cls_preds, box_preds, cls_targets, box_targets)
            autograd.backward(sum_loss)
        # SSDMultiBoxLoss already normalises by the number of positives: step(1)
        trainer.step(1)
        ce_metric.update(0, cls_loss)
        l1_metric.update(0, box_loss)
        samples += batch[0].shape[0]
        ce, l1 = ce_metric.get()[1], l1_metric.get()[1]
        if not (math.isfinite(ce) and math.isfinite(l1)):
            raise NonFiniteLoss(
                f"non-finite loss at epoch {epoch}, batch {batch_idx}: cross_entropy={ce}, "
                f"smooth_l1={l1}; lower learning_rate or check the boxes in the data"
            )
        if log_interval and (batch_idx + 1) % log_interval == 0:
            log_loss(batch_idx, ce, l1)
        fetch_start = time.perf_counter()
    seconds = time.perf_counter() - start
    ce, l1 = ce_metric.get()[1], l1_metric.get()[1]
    if not (log_interval and (batch_idx + 1) % log_interval == 0):
        log_loss(batch_idx, ce, l1)
    return EpochStats(ce, l1, samples, seconds, data_wait)


def evaluate(net, loader, ctx: list[mx.Context], classes: list[str]) -> tuple[float, dict]:
    """VOC07 mAP@0.5 (the SageMaker ``validation:mAP``) and per-class AP on a loader."""
    from ..evaluation.voc import VOCMetric

    metric = VOCMetric(iou_threshold=0.5, metric="voc07", class_names=classes)
    net.hybridize(static_alloc=True, static_shape=True)  # also drops the training graph
    for batch in loader:
        data = gluon.utils.split_and_load(batch[0], ctx_list=ctx, batch_axis=0, even_split=False)
        labels = gluon.utils.split_and_load(batch[1], ctx_list=ctx, batch_axis=0, even_split=False)
        for x, y in zip(data, labels, strict=True):
            ids, scores, bboxes = (a.asnumpy() for a in net(x))
            # An untrained network can emit overflowing boxes: they count as no detection.
            bad = ~np.isfinite(bboxes).all(axis=-1) | ~np.isfinite(scores[..., 0])
            ids[bad] = -1
            bboxes[bad] = 0
            scores[bad] = 0
            metric.update(
                bboxes,
                ids,
                scores,
                y.slice_axis(axis=-1, begin=0, end=4),
                y.slice_axis(axis=-1, begin=4, end=5),
            )
    result = metric.get()
    per_class = {c.name: c.ap for c in result.per_class.values()}
    return float(result.mAP), per_class
