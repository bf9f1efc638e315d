"""The epoch loop of ``engine.fit``: learning-rate steps, best model, early stopping, stops.

``train_one_epoch`` and ``evaluate`` are replaced by fakes: these tests are about the loop."""

import math

import pytest

from pipeline_lib.training import engine
from pipeline_lib.training.checkpoints import LoopState
from pipeline_lib.training.engine import EpochStats, FitConfig, FitInputs, NonFiniteLoss, fit
from pipeline_lib.training.errors import TrainingError
from pipeline_lib.training.stopping import Stopper


class _Trainer:
    def __init__(self):
        self.rates = []

    def set_learning_rate(self, lr):
        self.rates.append(lr)


class _Checkpointer:
    def __init__(self):
        self.saved, self.best = [], 0

    def save(self, net, trainer, state):
        self.saved.append(state.epoch)

    def save_best(self, net):
        self.best += 1


class _Log:
    def __init__(self):
        self.lines = []

    def info(self, message):
        self.lines.append(message)

    def validation_map(self, *_):
        pass

    def throughput(self, *_):
        pass

    def epoch_end(self, *_):
        pass

    def progress(self, *_):
        pass

    def train_loss(self, *_):
        pass


def _inputs(monkeypatch, maps, stopper=None, epoch_hook=None):
    maps = iter(maps)

    def train_one_epoch(inputs, epoch, log_interval=20):
        if epoch_hook:
            epoch_hook(epoch)
        return EpochStats(1.0, 0.5, 4, 2.0, 0.5)

    monkeypatch.setattr(engine, "train_one_epoch", train_one_epoch)
    monkeypatch.setattr(engine, "evaluate", lambda *_: (next(maps), {}))
    return FitInputs(
        net=object(),
        trainer=_Trainer(),
        train_data=[],
        val_data=[],
        ctx=[],
        class_names=["a"],
        checkpointer=_Checkpointer(),
        log=_Log(),
        stopper=stopper or Stopper(),
    )


def test_learning_rate_steps():
    config = FitConfig(epochs=5, learning_rate=0.1, lr_scheduler_step=(2, 4))
    assert [config.learning_rate_at(e) for e in range(5)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001]
    )


def test_fit_checkpoints_every_epoch_and_the_best_model_on_improvement(monkeypatch):
    inputs = _inputs(monkeypatch, [0.2, 0.5, 0.4])
    result = fit(inputs, FitConfig(epochs=3, learning_rate=0.1), LoopState(learning_rate=0.1))
    assert result.status == "completed"
    assert (result.state.best_map, result.state.best_epoch) == (0.5, 1)
    assert inputs.checkpointer.saved == [0, 1, 2] and inputs.checkpointer.best == 2
    assert [r["validation_mAP"] for r in result.state.history] == [0.2, 0.5, 0.4]
    assert result.state.history[0]["data_wait_fraction"] == 0.25


def test_fit_resumes_after_the_last_epoch(monkeypatch):
    inputs = _inputs(monkeypatch, [0.3])
    state = LoopState(epoch=1, best_map=0.4, best_epoch=1)
    result = fit(inputs, FitConfig(epochs=3, learning_rate=0.1), state)
    assert [r["epoch"] for r in result.state.history] == [2]
    assert result.state.best_epoch == 1


def test_early_stopping(monkeypatch):
    inputs = _inputs(monkeypatch, [0.5, 0.4, 0.4, 0.4, 0.4])
    config = FitConfig(
        epochs=5,
        learning_rate=0.1,
        early_stopping=True,
        early_stopping_min_epochs=1,
        early_stopping_patience=2,
    )
    result = fit(inputs, config, LoopState())
    assert result.status == "early_stopped" and result.state.epoch == 2
    assert "early stopping after epoch 2: no improvement for 2 epochs" in inputs.log.lines


def test_seed_model_is_measured_and_must_be_beaten(monkeypatch):
    inputs = _inputs(monkeypatch, [0.6, 0.5])
    result = fit(inputs, FitConfig(epochs=1, learning_rate=0.1), LoopState(), seeded=True)
    assert result.state.initial_map == 0.6
    assert (result.state.best_map, result.state.best_epoch) == (0.6, -1)


def test_run_time_limit_ends_training_normally(monkeypatch):
    stopper = Stopper()
    stopper.limit_runtime(1, started=-1e9)
    inputs = _inputs(monkeypatch, [0.1, 0.2], stopper)
    result = fit(inputs, FitConfig(epochs=2, learning_rate=0.1), LoopState())
    assert result.status == "max_runtime_reached" and result.state.epoch == 0
    assert "stopping: max_runtime_seconds reached" in inputs.log.lines


def test_signal_saves_the_resume_point(monkeypatch):
    stopper = Stopper()

    def signal_during(epoch):
        if epoch == 1:
            stopper.signal_reason = "received SIGTERM"

    inputs = _inputs(monkeypatch, [0.1, 0.2], stopper, signal_during)
    result = fit(inputs, FitConfig(epochs=5, learning_rate=0.1), LoopState())
    assert (result.status, result.stop_reason) == ("interrupted", "received SIGTERM")
    assert inputs.checkpointer.saved == [0, 1, 1]


def test_non_finite_loss_is_a_training_error(monkeypatch):
    def boom(epoch):
        raise NonFiniteLoss("non-finite loss at epoch 0")

    inputs = _inputs(monkeypatch, [], epoch_hook=boom)
    with pytest.raises(TrainingError, match="non-finite loss"):
        fit(inputs, FitConfig(epochs=1, learning_rate=0.1), LoopState())


def test_running_losses_match_mxnet_loss_metric_and_catch_non_finite():
    import mxnet as mx

    from pipeline_lib.training.engine import NonFiniteLoss, _RunningLosses

    batches = [mx.nd.array([0.5, 1.5, 2.0]), mx.nd.array([4.0, 1.0])]
    reference = mx.metric.Loss()
    losses = _RunningLosses()
    for b in batches:
        reference.update(0, [b])
        losses.add([b], [b * 2])
    ce, l1 = losses.means(epoch=0, batch_idx=1)
    assert ce == pytest.approx(reference.get()[1]) and l1 == pytest.approx(2 * ce)
    losses.add([mx.nd.array([float("nan")])], [mx.nd.array([1.0])])
    with pytest.raises(NonFiniteLoss, match="non-finite loss at epoch 0, batch 2"):
        losses.means(epoch=0, batch_idx=2)


def test_epoch_cpu_time_counts_the_data_workers():
    import multiprocessing

    from pipeline_lib.training.engine import process_tree_cpu_seconds

    before = process_tree_cpu_seconds()
    with multiprocessing.get_context("fork").Pool(1) as pool:
        result = pool.apply_async(sum, (range(20_000_000),))
        result.get()
        during = process_tree_cpu_seconds()  # the worker is alive: its CPU time counts
    assert during - before > 0.2  # the sum alone is about half a CPU second


def test_epoch_cpu_time_counts_the_workers_that_already_exited():
    import multiprocessing

    from pipeline_lib.training.engine import process_tree_cpu_seconds

    before = process_tree_cpu_seconds()
    pool = multiprocessing.get_context("fork").Pool(1)
    pool.apply_async(sum, (range(20_000_000),)).get()
    pool.close()
    pool.join()  # the worker has exited and been reaped
    assert process_tree_cpu_seconds() - before > 0.2


def test_warmup_then_cosine():
    config = FitConfig(epochs=6, learning_rate=0.1, lr_schedule="cosine", lr_warmup_epochs=2)
    rates = [config.learning_rate_at(e) for e in range(6)]
    assert rates[:3] == pytest.approx([0.01, 0.055, 0.1])  # from a tenth, linearly, to the rate
    assert rates[3:] == pytest.approx(
        [0.1 * 0.5 * (1 + math.cos(math.pi * k / 4)) for k in (1, 2, 3)]
    )
    assert all(a > b for a, b in zip(rates[2:], rates[3:], strict=False))


def test_warmup_before_steps():
    config = FitConfig(epochs=5, learning_rate=0.1, lr_scheduler_step=(3,), lr_warmup_epochs=1)
    assert [config.learning_rate_at(e) for e in range(5)] == pytest.approx(
        [0.01, 0.1, 0.1, 0.01, 0.01]
    )


@pytest.mark.parametrize("augmentation", ["ssd", "light", "flip"])
def test_every_augmentation_gives_ssd_targets(augmentation):
    import mxnet as mx
    import numpy as np

    from pipeline_lib.training.model import anchors_for, build_ssd
    from pipeline_lib.training.transforms import train_transform

    net = build_ssd("mobilenet-0.25", ["a", "b"], 300)
    net.initialize()
    anchors = anchors_for(net, 300)
    image = mx.nd.array(np.full((200, 250, 3), 128), dtype="uint8")
    label = np.array([[10, 20, 110, 140, 1]], dtype="float32")
    np.random.seed(0)
    x, cls_t, box_t = train_transform(augmentation, 300, anchors, 0.5)(image, label)
    assert x.shape == (3, 300, 300)
    assert cls_t.shape == (anchors.shape[1],) and box_t.shape == (anchors.shape[1], 4)
    assert (cls_t.asnumpy() == 2).sum() >= 1  # class 1 is target 2 (0 is background)


def test_after_epoch_hook_prunes_keeping_the_best_model(monkeypatch):
    inputs = _inputs(monkeypatch, [0.4, 0.3, 0.9])
    seen = []

    def hook(epoch, value):
        seen.append((epoch, value))
        return "behind the other trials" if epoch == 1 else None

    inputs.after_epoch = hook
    result = fit(inputs, FitConfig(epochs=3, learning_rate=0.1), LoopState())
    assert result.status == "pruned" and result.stop_reason == "behind the other trials"
    assert seen == [(0, 0.4), (1, 0.3)]  # called after each epoch, never again once pruned
    assert (result.state.best_map, result.state.best_epoch) == (0.4, 0)
    assert inputs.checkpointer.saved == [0, 1] and inputs.checkpointer.best == 1
    assert "stopping: behind the other trials; the best model so far is kept" in inputs.log.lines


def test_evaluation_keeps_the_training_graph_and_detects_like_the_network():
    """The inference view gives the network's own detections, and evaluating through it
    leaves the training graph built (no rebuild every epoch)."""
    import mxnet as mx
    import numpy as np
    from gluoncv.loss import SSDMultiBoxLoss

    from pipeline_lib.training.model import anchors_for, build_ssd

    mx.random.seed(0)
    net = build_ssd("mobilenet-0.25", ["a", "b"], 128)
    net.initialize()
    n_anchors = anchors_for(net, 128).shape[1]
    trainer = mx.gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.01})
    loss = SSDMultiBoxLoss()
    net.hybridize(static_alloc=True, static_shape=True)
    x = mx.nd.random.uniform(shape=(2, 3, 128, 128))
    cls_t, box_t = mx.nd.zeros((2, n_anchors)), mx.nd.zeros((2, n_anchors, 4))
    with mx.autograd.record():
        cls_p, box_p, _ = net(x)
        total, _, _ = loss([cls_p], [box_p], [cls_t], [box_t])
        mx.autograd.backward(total)
    trainer.step(1)
    training_graph = net._cached_op
    assert training_graph is not None

    ids, scores, boxes = (a.asnumpy() for a in engine.inference_view(net)(x))
    assert net._cached_op is training_graph

    net.hybridize(static_alloc=True, static_shape=True)  # the network's own inference graph
    ref_ids, ref_scores, ref_boxes = (a.asnumpy() for a in net(x))
    assert ids.shape == ref_ids.shape and ids.shape[-1] == 1
    assert np.array_equal(ids, ref_ids)
    assert np.allclose(scores, ref_scores, atol=1e-6) and np.allclose(boxes, ref_boxes, atol=1e-4)


def test_evaluation_over_cpu_replicas_equals_one_device_and_takes_a_batch_of_one():
    """Evaluating with two CPU replicas (a batch split between them, a last batch of one
    image given to one of them) scores exactly as on one device."""
    import mxnet as mx
    import numpy as np

    from pipeline_lib.training.model import build_ssd

    mx.random.seed(0)
    replicas = [mx.cpu(0), mx.cpu(1)]
    net = build_ssd("mobilenet-0.25", ["a", "b"], 128)
    net.initialize(ctx=replicas)
    rng = np.random.default_rng(0)
    boxes = np.array([[10, 10, 60, 70, 0], [50, 40, 120, 110, 1]], np.float32)
    loader = [
        (mx.nd.array(rng.normal(size=(n, 3, 128, 128))), mx.nd.array(np.stack([boxes] * n)))
        for n in (4, 3, 1)
    ]
    one = engine.evaluate(net, loader, replicas[:1], ["a", "b"])
    both = engine.evaluate(net, loader, replicas, ["a", "b"])
    assert both == one


def _small_net():
    """A mobilenet-0.25 SSD at 128 for two classes, initialised on the CPU; and its anchor
    count."""
    import mxnet as mx

    from pipeline_lib.training.model import anchors_for, build_ssd

    mx.random.seed(0)
    net = build_ssd("mobilenet-0.25", ["a", "b"], 128)
    net.initialize()
    return net, anchors_for(net, 128).shape[1]


def _epoch_inputs(net, trainer, train_data) -> FitInputs:
    """What ``train_one_epoch`` needs, on the CPU, around ``trainer`` and ``train_data``."""
    import mxnet as mx

    return FitInputs(
        net=net,
        trainer=trainer,
        train_data=train_data,
        val_data=[],
        ctx=[mx.cpu()],
        class_names=["a", "b"],
        checkpointer=_Checkpointer(),
        log=_Log(),
        stopper=Stopper(),
    )


def test_an_epoch_ends_after_its_last_update_has_run():
    """The epoch's time (its throughput and CPU use) includes the work MXNet still had
    queued when the losses were ready: the last batch's backward pass and update."""
    import time

    import mxnet as mx

    ran = []

    class _Slow(mx.operator.CustomOp):
        def forward(self, is_train, req, in_data, out_data, aux):
            time.sleep(0.5)
            ran.append("update")
            self.assign(out_data[0], req[0], in_data[0])

    @mx.operator.register("odp_test_slow_update")
    class _SlowProp(mx.operator.CustomOpProp):
        def list_arguments(self):
            return ["data"]

        def infer_shape(self, in_shape):
            return in_shape, [in_shape[0]], []

        def create_operator(self, ctx, shapes, dtypes):
            return _Slow()

    class _SlowTrainer:
        """A real Gluon trainer whose update ends with an operator that takes a while."""

        def __init__(self, net):
            self.trainer = mx.gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.01})
            self.param = next(iter(net.collect_params().values()))

        def step(self, batch_size):
            self.trainer.step(batch_size)
            mx.nd.Custom(self.param.data(), op_type="odp_test_slow_update")

    net, n_anchors = _small_net()
    batch = (
        mx.nd.random.uniform(shape=(2, 3, 128, 128)),
        mx.nd.zeros((2, n_anchors)),
        mx.nd.zeros((2, n_anchors, 4)),
    )
    stats = engine.train_one_epoch(_epoch_inputs(net, _SlowTrainer(net), [batch]), epoch=0)
    assert ran == ["update"]  # finished before the epoch's clock stopped
    assert stats.samples == 2


def test_time_a_loader_waits_for_the_compute_is_not_counted_as_waiting_for_data():
    """A loader that makes each batch only once MXNet has finished with an earlier one
    (the cached loaders' reused buffers) says how long that took: the compute was busy."""
    import time

    import mxnet as mx

    net, n_anchors = _small_net()
    batch = (
        mx.nd.random.uniform(shape=(2, 3, 128, 128)),
        mx.nd.zeros((2, n_anchors)),
        mx.nd.zeros((2, n_anchors, 4)),
    )

    class _BusyLoader:
        compute_wait = 0.0

        def __iter__(self):
            for _ in range(3):
                time.sleep(0.2)  # as if waiting for MXNet to finish with a buffer
                self.compute_wait += 0.2
                yield batch

    trainer = mx.gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.01})
    stats = engine.train_one_epoch(_epoch_inputs(net, trainer, _BusyLoader()), epoch=0)
    assert stats.samples == 6 and stats.seconds >= 0.6
    assert stats.data_wait_seconds < 0.3  # 0.6 s of fetching, all of it the compute's


class _Clock:
    """A clock each fake epoch moves forward by ``step`` seconds."""

    def __init__(self, step: float):
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        return self.now

    def tick(self, _epoch) -> None:
        self.now += self.step


def _budgeted_fit(monkeypatch, clock: _Clock, state: LoopState, spent_before: float = 0.0):
    from pipeline_lib.training.budget import TimeBudget

    inputs = _inputs(monkeypatch, [0.1 * i for i in range(1, 50)], epoch_hook=clock.tick)
    budget = TimeBudget(100, 50, started=clock(), spent_before=spent_before, clock=clock)
    config = FitConfig(epochs=50, learning_rate=0.1, lr_schedule="cosine", budget=budget)
    return inputs, fit(inputs, config, state)


def test_a_time_budget_lays_the_schedule_over_the_epochs_that_fit(monkeypatch):
    # 10 s per epoch, 100 s of budget, 10 s kept for the export: 9 epochs, not 50
    inputs, result = _budgeted_fit(monkeypatch, _Clock(10.0), LoopState(learning_rate=0.1))
    assert result.status == "time_budget_reached" and result.state.epoch == 8
    rates = inputs.trainer.rates
    assert rates[0] == pytest.approx(0.1)  # nothing measured yet: the schedule's start
    # from the first measured epoch on, the cosine ends at the ninth epoch
    want = [0.1 * 0.5 * (1 + math.cos(math.pi * e / 9)) for e in range(1, 9)]
    assert rates[1:] == pytest.approx(want)
    assert result.state.spent_seconds == pytest.approx(90.0)  # + the reserve: inside 100 s
    assert result.state.epoch_seconds == [10.0] * 9
    assert any(
        "leaves no room for another epoch after 9 of at most 50" in x for x in inputs.log.lines
    )


def test_a_resumed_budgeted_run_continues_its_schedule(monkeypatch):
    _, whole = _budgeted_fit(monkeypatch, _Clock(10.0), LoopState(learning_rate=0.1))
    # killed after epoch 4 (50 s spent), resumed by a new process whose clock starts anew
    state = LoopState(epoch=4, learning_rate=0.1, epoch_seconds=[10.0] * 5, spent_seconds=50.0)
    inputs, result = _budgeted_fit(monkeypatch, _Clock(10.0), state, spent_before=50.0)
    assert result.status == "time_budget_reached" and result.state.epoch == 8
    assert inputs.trainer.rates == pytest.approx(
        [0.1 * 0.5 * (1 + math.cos(math.pi * e / 9)) for e in range(5, 9)]
    )
    assert result.state.spent_seconds == pytest.approx(whole.state.spent_seconds)


def test_step_epochs_scale_with_the_budgeted_length():
    config = FitConfig(epochs=40, learning_rate=0.1, lr_scheduler_step=(20, 30))
    # a budget that leaves 20 epochs: the steps fall at 10 and 15
    assert [config.learning_rate_at(e, 20) for e in (9, 10, 14, 15)] == pytest.approx(
        [0.1, 0.01, 0.01, 0.001]
    )
