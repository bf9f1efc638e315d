"""The SSD training engine: ``fit`` (the epoch loop) over ``train_one_epoch`` and ``evaluate``.

Shaped like torchvision's ``references/detection/engine.py``: set-up lives in
``entrypoint.py``, the per-epoch work here. ``fit`` owns the epoch loop, the learning-rate
steps (over ``epochs``, or over the epochs a time budget leaves: :mod:`.budget`), early
stopping, the checkpoint cadence (the best weights whenever the validation mAP improves, the
resume point after every epoch) and stopping (SIGTERM, ``max_runtime_seconds``).
The per-batch work follows GluonCV's ``scripts/detection/ssd/train_ssd.py`` (targets computed
in data workers, SSDMultiBoxLoss, VOC07 mAP on validation) and fails fast on a non-finite
loss. Stopping requests (``stopping.Stopper``) are honoured between batches.
"""

from __future__ import annotations

import math
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from ..cpus import available_cpus
from ..hyperparameters import Hyperparameters
from .budget import TimeBudget
from .checkpoints import Checkpointer, LoopState
from .errors import TrainingError
from .metrics_log import MetricLogger
from .stopping import Stopper, StopRequested


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite: training stops at once."""


@dataclass(frozen=True)
class FitConfig:
    """The hyperparameters of the epoch loop."""

    epochs: int
    learning_rate: float
    lr_scheduler_step: tuple[int, ...] = ()
    lr_scheduler_factor: float = 0.1
    early_stopping: bool = False
    early_stopping_min_epochs: int = 10
    early_stopping_patience: int = 5
    early_stopping_tolerance: float = 0.0
    log_interval: int = 20  # batches between loss lines
    lr_schedule: str = "step"
    lr_warmup_epochs: int = 0
    budget: TimeBudget | None = None  # the schedule spans the epochs it leaves

    @classmethod
    def from_hyperparameters(cls, hp: Hyperparameters, log_interval: int) -> FitConfig:
        return cls(
            epochs=hp.epochs,
            learning_rate=hp.learning_rate,
            lr_scheduler_step=hp.lr_scheduler_step,
            lr_scheduler_factor=hp.lr_scheduler_factor,
            early_stopping=hp.early_stopping,
            early_stopping_min_epochs=hp.early_stopping_min_epochs,
            early_stopping_patience=hp.early_stopping_patience,
            early_stopping_tolerance=hp.early_stopping_tolerance,
            log_interval=log_interval,
            lr_schedule=hp.lr_schedule,
            lr_warmup_epochs=hp.lr_warmup_epochs,
        )

    def learning_rate_at(self, epoch: int, total: int | None = None) -> float:
        """The learning rate of an epoch: a linear warm-up from a tenth of it over the first
        ``lr_warmup_epochs``, then ``step`` (times the factor once for every step epoch
        reached) or ``cosine`` (half a cosine from the rate to 0 at the last epoch).
        ``total``: the epochs the run trains in all when a time budget sets them (the step
        epochs scale with it); else ``epochs``."""
        total = total or self.epochs
        if epoch < self.lr_warmup_epochs:
            return self.learning_rate * (0.1 + 0.9 * epoch / self.lr_warmup_epochs)
        if self.lr_schedule == "cosine":
            span = max(1, total - self.lr_warmup_epochs)
            done = (epoch - self.lr_warmup_epochs) / span
            return self.learning_rate * 0.5 * (1 + math.cos(math.pi * min(1.0, done)))
        scale = total / self.epochs
        return self.learning_rate * self.lr_scheduler_factor ** sum(
            1 for s in self.lr_scheduler_step if epoch >= s * scale
        )


def _own_value(value: float) -> float:
    return value


@dataclass
class FitInputs:
    """What ``fit`` trains, on which data, where it logs, saves and hears about stops."""

    net: Any  # the GluonCV SSD network
    trainer: gluon.Trainer
    train_data: Any  # loaders.train_loader
    val_data: Any  # loaders.val_loader
    ctx: list[mx.Context]
    class_names: list[str]
    checkpointer: Checkpointer
    log: MetricLogger
    stopper: Stopper  # its signal_reason tells a SIGTERM from the run-time limit
    stop_check: Callable[[], str | None] | None = None  # default: ``stopper``
    # Several hosts: the chief's validation mAP on every host (they must stop together).
    agree: Callable[[float], float] = _own_value
    # Called after every epoch with (epoch, validation mAP), once the epoch's checkpoints are
    # saved; a returned reason ends training as ``pruned`` (a tuning trial's pruner).
    after_epoch: Callable[[int, float], str | None] | None = None

    def __post_init__(self) -> None:
        if self.stop_check is None:
            self.stop_check = self.stopper


@dataclass
class FitResult:
    """How ``fit`` ended: ``completed``, ``early_stopped``, ``pruned`` (``after_epoch`` said
    so), ``time_budget_reached`` (the budget left no room for another epoch),
    ``max_runtime_reached`` or ``interrupted`` (a signal: the resume point was saved),
    and the loop state then."""

    status: str
    state: LoopState
    stop_reason: str | None = None


@dataclass
class EpochStats:
    """What one training epoch measured."""

    cross_entropy: float
    smooth_l1: float
    samples: int
    seconds: float
    data_wait_seconds: float
    cpu_seconds: float = 0.0  # this process and its data workers

    @property
    def throughput(self) -> float:
        return self.samples / self.seconds if self.seconds else 0.0

    @property
    def cpu_utilisation(self) -> float:
        """CPU time over wall time per usable CPU (1.0: every CPU busy all epoch)."""
        return self.cpu_seconds / max(self.seconds, 1e-9) / available_cpus()


# --------------------------------------------------------------------------- the epoch loop


def fit(inputs: FitInputs, config: FitConfig, state: LoopState, seeded: bool = False) -> FitResult:
    """Train from the epoch after ``state.epoch`` up to ``config.epochs``.

    ``seeded``: the weights came from an earlier model (incremental training); a fresh run
    first measures them, and training must beat that mAP to replace them as the best.
    """
    start_epoch = state.epoch + 1
    if seeded and start_epoch == 0:
        _measure_seed(inputs, state)
    try:
        for epoch in range(start_epoch, config.epochs):
            total = config.epochs
            if config.budget is not None:
                total = config.budget.planned_epochs(epoch, state.epoch_seconds)
                if epoch >= total:
                    return _budget_spent(inputs, config.budget, config.epochs, state)
            ended = _train_and_validate(inputs, config, state, epoch, total)
            if ended:
                return ended
            reason = inputs.stop_check()
            if reason:
                raise StopRequested(reason)
    except StopRequested as stop:
        return _stopped(inputs, state, stop.reason)
    except NonFiniteLoss as exc:
        raise TrainingError(str(exc)) from None
    return FitResult("completed", state)


def _budget_spent(
    inputs: FitInputs, budget: TimeBudget, epochs: int, state: LoopState
) -> FitResult:
    """The time budget leaves no room for another epoch: training ends normally."""
    inputs.log.info(
        f"stopping: the time budget ({budget.seconds:g} s, {budget.spent():.0f} s spent) "
        f"leaves no room for another epoch after {state.epoch + 1} of at most {epochs}"
    )
    return FitResult("time_budget_reached", state, "time budget")


def _measure_seed(inputs: FitInputs, state: LoopState) -> None:
    state.initial_map, _ = evaluate(inputs.net, inputs.val_data, inputs.ctx, inputs.class_names)
    inputs.log.info(f"validation mAP of the seed model before training: {state.initial_map:.4f}")
    # The seed is the best model so far: training must beat it to replace it.
    state.best_map, state.best_epoch = state.initial_map, -1
    inputs.checkpointer.save_best(inputs.net)


def _train_and_validate(
    inputs: FitInputs, config: FitConfig, state: LoopState, epoch: int, total: int
) -> FitResult | None:
    """One epoch of ``total``: train, validate, log, checkpoint; the result when the run
    ends here (early stopping, or pruned by ``after_epoch``)."""
    clock = config.budget.clock if config.budget is not None else time.monotonic
    started = clock()
    lr = config.learning_rate_at(epoch, total)
    inputs.trainer.set_learning_rate(lr)
    stats = train_one_epoch(inputs, epoch, config.log_interval)
    val_map, _per_class = evaluate(inputs.net, inputs.val_data, inputs.ctx, inputs.class_names)
    val_map = inputs.agree(val_map)
    log = inputs.log
    log.validation_map(epoch, val_map)
    log.throughput(stats.throughput)
    log.info(
        f"epoch {epoch}: {stats.samples} samples in {stats.seconds:.1f}s, "
        f"waited {stats.data_wait_seconds:.1f}s for data, CPU use "
        f"{100 * stats.cpu_utilisation:.0f}% of {available_cpus()}, lr={lr:g}"
    )
    _track_best(inputs, config, state, epoch, val_map)
    record = _epoch_record(epoch, stats, val_map, lr)
    state.history.append(record)
    log.epoch_end(record)
    state.epoch, state.learning_rate = epoch, lr
    state.epoch_seconds.append(clock() - started)
    if config.budget is not None:
        state.spent_seconds = config.budget.spent()
    inputs.checkpointer.save(inputs.net, inputs.trainer, state)
    if config.budget is not None:  # the epochs that now look like they fit
        total = config.budget.planned_epochs(epoch + 1, state.epoch_seconds)
    log.progress(epoch + 1, max(total, epoch + 1))
    if inputs.after_epoch is not None:
        reason = inputs.after_epoch(epoch, val_map)
        if reason:
            log.info(f"stopping: {reason}; the best model so far is kept")
            return FitResult("pruned", state, reason)
    return FitResult("early_stopped", state) if _stops_early(config, state, epoch, log) else None


def _track_best(
    inputs: FitInputs, config: FitConfig, state: LoopState, epoch: int, val_map: float
) -> None:
    """Save the best weights on a new best mAP; count the epochs without improvement."""
    improved = val_map > state.best_map * (1 + config.early_stopping_tolerance) or (
        state.best_map < 0
    )
    if val_map > state.best_map:
        state.best_map, state.best_epoch = val_map, epoch
        inputs.checkpointer.save_best(inputs.net)
    state.epochs_without_improvement = 0 if improved else state.epochs_without_improvement + 1


def _epoch_record(epoch: int, stats: EpochStats, val_map: float, lr: float) -> dict[str, Any]:
    return {
        "epoch": epoch,
        "train_cross_entropy": stats.cross_entropy,
        "train_smooth_l1": stats.smooth_l1,
        "validation_mAP": val_map,
        "learning_rate": lr,
        "throughput": stats.throughput,
        "data_wait_fraction": stats.data_wait_seconds / max(stats.seconds, 1e-9),
        "cpu_utilisation": stats.cpu_utilisation,
    }


def _stops_early(config: FitConfig, state: LoopState, epoch: int, log: MetricLogger) -> bool:
    if not (
        config.early_stopping
        and epoch + 1 >= config.early_stopping_min_epochs
        and state.epochs_without_improvement >= config.early_stopping_patience
    ):
        return False
    log.info(
        f"early stopping after epoch {epoch}: no improvement for "
        f"{state.epochs_without_improvement} epochs"
    )
    return True


def _stopped(inputs: FitInputs, state: LoopState, reason: str) -> FitResult:
    """A signal saves the resume point (the job is retried); the run-time limit just ends
    training, which then completes normally with the best model so far."""
    if inputs.stopper.signal_reason:
        inputs.checkpointer.save(inputs.net, inputs.trainer, state)
        return FitResult("interrupted", state, reason)
    inputs.log.info(f"stopping: {reason}")
    return FitResult("max_runtime_reached", state, reason)


# --------------------------------------------------------------------------- one epoch


def train_one_epoch(
    inputs: FitInputs, epoch: int, log_interval: int = 20, max_batches: int | None = None
) -> EpochStats:
    """One pass over ``inputs.train_data``; returns mean losses and timing."""
    from gluoncv.loss import SSDMultiBoxLoss

    mbox_loss = SSDMultiBoxLoss()
    losses = _RunningLosses()
    if not inputs.net._active:  # once: evaluation uses its own view (inference_view)
        inputs.net.hybridize(static_alloc=True, static_shape=True)
    loader = inputs.train_data
    samples, data_wait = 0, 0.0
    batches_per_epoch = len(loader) if hasattr(loader, "__len__") else None

    def log_loss(batch_idx: int) -> tuple[float, float]:
        ce, l1 = losses.means(epoch, batch_idx)  # the one host sync of a log interval
        step = epoch * batches_per_epoch + batch_idx if batches_per_epoch else None
        inputs.log.train_loss(epoch, batch_idx, ce, l1, step)
        return ce, l1

    cpu_start = process_tree_cpu_seconds()
    start = time.perf_counter()
    fetch_start = start
    busy = _compute_wait(loader)
    batch_idx = -1
    for batch_idx, batch in enumerate(loader):
        busy, was_busy = _compute_wait(loader), busy
        data_wait += time.perf_counter() - fetch_start - (busy - was_busy)
        if max_batches is not None and batch_idx >= max_batches:
            break
        reason = inputs.stop_check()
        if reason:
            raise StopRequested(reason)
        losses.add(*_train_step(inputs, mbox_loss, batch))
        samples += batch[0].shape[0]
        if log_interval and (batch_idx + 1) % log_interval == 0:
            log_loss(batch_idx)
        fetch_start = time.perf_counter()
    if not (log_interval and (batch_idx + 1) % log_interval == 0):
        ce, l1 = log_loss(batch_idx)
    else:
        ce, l1 = losses.means(epoch, batch_idx)
    # The losses are ready before the last batch's backward pass and update have run: wait
    # for them, or the epoch's time (its throughput, its CPU use) leaves out up to a batch.
    mx.nd.waitall()
    seconds = time.perf_counter() - start
    cpu = process_tree_cpu_seconds() - cpu_start
    return EpochStats(ce, l1, samples, seconds, data_wait, cpu)


def _compute_wait(loader) -> float:
    """Seconds a loader has spent waiting for MXNet to finish with earlier batches (its
    ``compute_wait``, when it has one): fetch time that is not waiting for data."""
    return getattr(loader, "compute_wait", 0.0)


class _RunningLosses:
    """The epoch's mean losses, accumulated on the device: nothing is copied to the host
    (no synchronisation with the compute engine) until :meth:`means` is asked for."""

    def __init__(self) -> None:
        self.ce = self.l1 = None
        self.count = 0

    def add(self, cls_losses: list, box_losses: list) -> None:
        ce = sum(x.sum().as_in_context(mx.cpu()) for x in cls_losses)
        l1 = sum(x.sum().as_in_context(mx.cpu()) for x in box_losses)
        self.ce = ce if self.ce is None else self.ce + ce
        self.l1 = l1 if self.l1 is None else self.l1 + l1
        self.count += sum(x.shape[0] for x in cls_losses)

    def means(self, epoch: int, batch_idx: int) -> tuple[float, float]:
        """Mean losses so far; raises :class:`NonFiniteLoss` when one is not finite."""
        if not self.count:
            return float("nan"), float("nan")
        ce, l1 = self.ce.asscalar() / self.count, self.l1.asscalar() / self.count
        if not (math.isfinite(ce) and math.isfinite(l1)):
            raise NonFiniteLoss(
                f"non-finite loss at epoch {epoch}, batch {batch_idx}: cross_entropy={ce}, "
                f"smooth_l1={l1}; lower learning_rate or check the boxes in the data"
            )
        return ce, l1


def process_tree_cpu_seconds() -> float:
    """User + system CPU seconds of this process, its live children (data workers) and the
    children it has joined (the workers that filled a cache and exited)."""
    import resource

    import psutil

    me = psutil.Process()
    joined = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = sum(me.cpu_times()[:2]) + joined.ru_utime + joined.ru_stime
    for child in me.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.Error:  # a worker that just exited
            pass
    return total


def _train_step(inputs: FitInputs, mbox_loss, batch) -> tuple[list, list]:
    """Forward, backward and one optimizer step on a batch; the per-device losses."""
    ctx = inputs.ctx
    data = gluon.utils.split_and_load(batch[0], ctx_list=ctx, batch_axis=0)
    cls_targets = gluon.utils.split_and_load(batch[1], ctx_list=ctx, batch_axis=0)
    box_targets = gluon.utils.split_and_load(batch[2], ctx_list=ctx, batch_axis=0)
    with autograd.record():
        cls_preds, box_preds = [], []
        for x in data:
            cls_pred, box_pred, _ = inputs.net(x)
            cls_preds.append(cls_pred)
            box_preds.append(box_pred)
        sum_loss, cls_loss, box_loss = mbox_loss(cls_preds, box_preds, cls_targets, box_targets)
        autograd.backward(sum_loss)
    # SSDMultiBoxLoss already normalises by the number of positives: step(1)
    inputs.trainer.step(1)
    return cls_loss, box_loss


def evaluate(net, loader, ctx: list[mx.Context], classes: list[str]) -> tuple[float, dict]:
    """VOC07 mAP@0.5 (the SageMaker ``validation:mAP``) and per-class AP on a loader."""
    from ..evaluation.voc import VOCMetric

    metric = VOCMetric(iou_threshold=0.5, metric="voc07", class_names=classes)
    infer = inference_view(net)
    for batch in loader:
        devices = ctx[: batch[0].shape[0]]  # a last batch smaller than the device count
        data = gluon.utils.split_and_load(batch[0], ctx_list=devices, even_split=False)
        labels = gluon.utils.split_and_load(batch[1], ctx_list=devices, even_split=False)
        outputs = [infer(x) for x in data]  # every device's forward queued before any wait
        for out, y in zip(outputs, labels, strict=True):
            ids, scores, bboxes = (a.asnumpy() for a in out)
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


# Kept outside the block: a dict of blocks in its attributes would be scanned by Gluon.
_INFERENCE_VIEWS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def inference_view(net):
    """The inference graph of the SSD ``net`` (detections, with its current NMS settings) as
    a separate hybridized block sharing ``net``'s parameters, built once per NMS setting.

    Evaluating through ``net`` itself would replace its cached training graph (one cached
    graph per block), so every epoch would rebuild and re-plan the training graph's static
    memory on its first batch; the view leaves it alone."""
    import warnings

    key = (
        getattr(net, "nms_thresh", None),
        getattr(net, "nms_topk", None),
        getattr(net, "post_nms", None),
    )
    views = _INFERENCE_VIEWS.setdefault(net, {})
    if key not in views:
        data = mx.sym.var("data")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # parameters the inference graph does not use
            view = gluon.SymbolBlock(net(data), data, params=net.collect_params())
        view.hybridize(static_alloc=True, static_shape=True)
        views.clear()  # NMS settings change once (export): keep only the current view
        views[key] = view
    return views[key]
