"""Export of a trained network into the model artifact's files (training's side of it).

``gluoncv``: ``model/`` gets the hybridized network with NMS (loadable with
``SymbolBlock.imports`` without any training code), the Gluon weights (to seed incremental
training), ``hyperparams.json`` (the merged configuration, string values) and
``class_map.json``. The exported graph begins with the input normalisation
(:class:`PixelInput`), so serving only decodes and resizes.

``sagemaker``: what a SageMaker Object Detection job writes, so SageMaker can host or
fine-tune it: example/ssd's training symbol for the base, input size and classes, the
weights as ``arg:``/``aux:`` of that symbol, ``hyperparams.json`` with SageMaker's own
names; beside them odp's extras, which SageMaker ignores: ``class_map.json`` and
``model_algo_1-inference-symbol.json`` (example/ssd's inference on the same weights, for
MXNet users: ``SymbolBlock.imports(it, ["data"], "model_algo_1-0000.params")``).

Packaging, reading and extracting ``model.tar.gz`` live in :mod:`pipeline_lib.artifact`.
"""

from __future__ import annotations

import json
from pathlib import Path

import mxnet as mx

from ..annotations import write_class_map
from ..artifact import (
    CLASS_MAP,
    GLUON_PARAMS,
    HYPERPARAMS,
    INFERENCE_SYMBOL,
    PARAMS,
    PREFIX,
    SYMBOL,
)
from ..hyperparameters import Hyperparameters
from ..preprocessing import MEAN, PIXEL_INPUT_PREFIX, STD


class PixelInput(mx.gluon.HybridBlock):
    """``net`` behind the normalisation of :func:`~pipeline_lib.preprocessing.normalized_batch`:
    ``(N, S, S, 3)`` uint8 RGB in, cast to float32, NCHW, ``(x - MEAN) / STD`` (the same
    float32 operations, with ``MEAN`` and ``STD`` stored as constants), then ``net``."""

    def __init__(self, net: mx.gluon.HybridBlock):
        super().__init__(prefix=PIXEL_INPUT_PREFIX)
        with self.name_scope():
            self.mean = self.params.get_constant("mean", MEAN.reshape(1, 3, 1, 1))
            self.std = self.params.get_constant("std", STD.reshape(1, 3, 1, 1))
        self.net = net  # registered after the scope: its parameters keep their names

    def hybrid_forward(self, F, x, mean, std):  # noqa: N803  Gluon's signature
        x = F.transpose(F.cast(x, dtype="float32"), axes=(0, 3, 1, 2))
        # constants broadcast to the batch's shape first: same-shape broadcast_sub/div take
        # MXNet's elementwise path, about twice as fast as broadcasting inside them
        mean, std = F.broadcast_like(mean, x), F.broadcast_like(std, x)
        return self.net(F.broadcast_div(F.broadcast_sub(x, mean), std))


def export_model(net, model_dir: Path, hp: Hyperparameters, classes: dict[int, str]) -> None:
    """Write the artifact files for ``net`` (in its current weights) into ``model_dir``."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    net.save_parameters(str(model_dir / GLUON_PARAMS))
    net.set_nms(nms_thresh=hp.nms_threshold, nms_topk=400, post_nms=100)
    ctx = next(iter(net.collect_params().values())).list_ctx()[0]
    exported = PixelInput(net)
    exported.collect_params(f"{PIXEL_INPUT_PREFIX}.*").initialize(ctx=ctx)
    exported.hybridize(static_alloc=True, static_shape=True)
    exported(mx.nd.zeros((1, hp.image_shape, hp.image_shape, 3), dtype="uint8", ctx=ctx))
    exported.export(str(model_dir / PREFIX), epoch=0)
    (model_dir / HYPERPARAMS).write_text(json.dumps(hp.to_strings(), indent=1))
    write_class_map(model_dir / CLASS_MAP, classes)


def export_sagemaker_model(
    net, model_dir: Path, hp: Hyperparameters, classes: dict[int, str]
) -> None:
    """Write SageMaker's artifact files for ``net`` (a
    :class:`~pipeline_lib.sagemaker_ssd.network.SageMakerSSD`) into ``model_dir``."""
    from ..sagemaker_ssd.graph import detection_symbol, training_symbol

    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    symbol = training_symbol(
        hp.base_network, hp.image_shape, len(classes), nms_threshold=hp.nms_threshold
    )
    args = set(symbol.list_arguments()) - {"data", "label"}
    aux = set(symbol.list_auxiliary_states())
    params = net.body.collect_params()
    if set(params.keys()) != args | aux:  # the network and the symbol are built alike
        raise RuntimeError("the trained network's parameters differ from the training symbol's")
    weights = {
        f"{'aux' if name in aux else 'arg'}:{name}": p.data().as_in_context(mx.cpu())
        for name, p in params.items()
    }
    symbol.save(str(model_dir / SYMBOL))
    mx.nd.save(str(model_dir / PARAMS), weights)
    detection_symbol(symbol, hp.nms_threshold).save(str(model_dir / INFERENCE_SYMBOL))
    (model_dir / HYPERPARAMS).write_text(json.dumps(hp.to_strings(sagemaker_only=True), indent=1))
    write_class_map(model_dir / CLASS_MAP, classes)
