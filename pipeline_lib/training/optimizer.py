"""The Gluon Trainer of a training job: frozen layers, optimizer settings and the kvstore."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

import mxnet as mx

from ..hyperparameters import Hyperparameters

if TYPE_CHECKING:
    from .distributed.cluster import Cluster


def optimizer_params(hp: Hyperparameters) -> dict:
    """The optimizer's settings: learning rate, weight decay and its own momentum name."""
    params = {"learning_rate": hp.learning_rate, "wd": hp.weight_decay}
    if hp.optimizer == "sgd":
        params["momentum"] = hp.momentum
    elif hp.optimizer == "rmsprop":
        params["gamma1"] = hp.momentum
    return params


def trainable_params(net, freeze_pattern: str, log: Callable[[str], None]) -> dict:
    """The parameters to train: all but those whose name matches ``freeze_pattern``."""
    trainable = net.collect_params()
    if freeze_pattern:
        pattern = re.compile(freeze_pattern)
        frozen = [n for n in trainable.keys() if pattern.search(n)]
        for n in frozen:
            trainable[n].grad_req = "null"
        log(f"froze {len(frozen)} parameters matching {freeze_pattern!r}")
    return {n: p for n, p in trainable.items() if p.grad_req != "null"}


def make_trainer(
    net,
    hp: Hyperparameters,
    kv_type: str,
    cluster: Cluster | None,
    log: Callable[[str], None],
) -> mx.gluon.Trainer:
    """The Trainer over ``net``'s trainable parameters. On several hosts this joins the
    parameter server (``cluster``); otherwise it creates a ``kv_type`` kvstore."""
    params = trainable_params(net, hp.freeze_layer_pattern, log)
    opt_params, update_on_kvstore = optimizer_params(hp), None
    if cluster:
        kv = cluster.create_kvstore(hp.seed)
        opt_params["rescale_grad"] = cluster.rescale_grad
        update_on_kvstore = cluster.update_on_kvstore
    else:
        kv = mx.kv.create(kv_type)
    return mx.gluon.Trainer(
        params, hp.optimizer, opt_params, kvstore=kv, update_on_kvstore=update_on_kvstore
    )
