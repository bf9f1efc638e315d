"""Checkpoints of multi-host training: only the chief writes; dist_async keeps no optimizer
state."""

import mxnet as mx
import numpy as np

from pipeline_lib.training.checkpoints import DistCheckpointer, LoopState


def _net_and_trainer():
    net = mx.gluon.nn.Dense(2, in_units=3)
    net.initialize()
    trainer = mx.gluon.Trainer(net.collect_params(), "adam", {"learning_rate": 0.1})
    with mx.autograd.record():
        loss = net(mx.nd.ones((1, 3))).sum()
    loss.backward()
    trainer.step(1)
    return net, trainer


def test_non_chief_checkpointer_writes_nothing(tmp_path):
    net, trainer = _net_and_trainer()
    ckpt = DistCheckpointer(tmp_path / "c", writable=False)
    ckpt.save(net, trainer, LoopState(epoch=0))
    ckpt.save_best(net)
    assert list((tmp_path / "c").iterdir()) == []


def test_checkpoint_without_optimizer_state_resumes_weights(tmp_path):
    net, trainer = _net_and_trainer()
    ckpt = DistCheckpointer(tmp_path / "c", optimizer_state=False)  # dist_async
    ckpt.save(net, trainer, LoopState(epoch=3, best_map=0.5))
    assert ckpt.states.stat().st_size == 0
    other, other_trainer = _net_and_trainer()
    state = DistCheckpointer(tmp_path / "c").load(other, other_trainer, [mx.cpu()])
    assert state.epoch == 3 and state.best_map == 0.5
    assert np.array_equal(other.weight.data().asnumpy(), net.weight.data().asnumpy())
