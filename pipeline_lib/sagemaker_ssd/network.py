"""SageMaker's SSD as the Gluon block odp's training engine trains (``model_format=sagemaker``).

:class:`SageMakerSSD` holds example/ssd's network (:func:`~.graph.network_heads`, a
``SymbolBlock`` whose parameters carry the symbol's own names, so its weights are saved as
``arg:``/``aux:`` of the training symbol) and answers like GluonCV's SSD, so the one engine
(targets from the data workers, ``SSDMultiBoxLoss``, evaluation, checkpoints, replicas,
kvstores) trains either format:

* training mode: ``(cls_preds (N, A, C+1), box_preds (N, A, 4), anchors (1, A, 4))``, the
  anchors as GluonCV's target generator takes them (centre, width, height, in input pixels);
  the box encoding (variances 0.1, 0.1, 0.2, 0.2) is the one ``MultiBoxDetection`` decodes;
* inference: ``(ids, scores, boxes)`` after example/ssd's softmax and ``MultiBoxDetection``,
  boxes in input pixels.

The engine's batches are normalised the GluonCV way (``(x / 255 - mean) / std``); the block
turns them back into what SageMaker's graph is trained on (pixels minus example/ssd's mean
pixels) with one multiply-add per channel, so a model trained here predicts like one trained
by SageMaker.
"""

from __future__ import annotations

import re
import warnings

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from ..preprocessing import MEAN, STD
from .graph import network_heads
from .layout import MEAN_PIXELS, NMS_TOPK, VARIANCES

_LR_MULT_2 = re.compile(r"_(loc|cls)_pred_conv_bias$")  # example/ssd's __lr_mult__ 2.0
_PREDICTOR = re.compile(r"_(loc|cls)_pred_conv_weight$")
_CLS_PRED = re.compile(r"_cls_pred_conv_(weight|bias)$")


class SageMakerSSD(gluon.HybridBlock):
    """example/ssd's SSD on ``base`` for ``num_classes`` at ``image_shape`` (see the module
    docstring); ``classes`` names them (kept for the artifact)."""

    def __init__(self, base: str, classes: list[str], image_shape: int, nms_thresh: float = 0.45):
        super().__init__(prefix="sagemaker_ssd_")
        self.base_network, self.image_shape = base, image_shape
        self.classes = list(classes)
        self.nms_thresh, self.nms_topk = nms_thresh, NMS_TOPK
        heads = network_heads(base, image_shape, len(classes))
        args, _, aux = heads.infer_shape(data=(1, 3, image_shape, image_shape))
        shapes = dict(zip(heads.list_arguments(), args, strict=True))
        shapes.update(zip(heads.list_auxiliary_states(), aux, strict=True))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.body = gluon.SymbolBlock(heads, mx.sym.var("data"))
        for name, param in self.body.collect_params().items():
            param.shape = shapes[name]  # known now: weights can be loaded before a forward
        # GluonCV-normalised input -> pixels minus example/ssd's mean pixels
        gain = STD.astype(np.float32)
        shift = MEAN.astype(np.float32) - np.asarray(MEAN_PIXELS, dtype=np.float32)
        with self.name_scope():
            self.gain = self.params.get_constant("gain", mx.nd.array(gain.reshape(1, 3, 1, 1)))
            self.shift = self.params.get_constant("shift", mx.nd.array(shift.reshape(1, 3, 1, 1)))
        for name, param in self.body.collect_params().items():
            if _LR_MULT_2.search(name):
                param.lr_mult = 2.0
            if name.endswith("_scale"):
                param.wd_mult = 0.1

    def set_nms(self, nms_thresh: float = 0.45, nms_topk: int = NMS_TOPK, post_nms: int = 100):
        """The NMS of the inference outputs (GluonCV's ``set_nms``; ``post_nms`` is kept by
        the caller's ``max_detections``)."""
        self._clear_cached_op()
        self.nms_thresh, self.nms_topk = nms_thresh, nms_topk

    def initialize_weights(self, ctx) -> None:
        """As odp's GluonCV networks are initialised: the L2-normalisation scale at 20,
        biases 0, BatchNorm at identity, Xavier (gaussian, fan-out) for the network's
        kernels, and GluonCV's predictor initialisation (Xavier, uniform, average fan) for
        the class and box predictors. (example/ssd's fan-out Xavier on the predictors starts
        the logits ~8x larger, and SGD from scratch diverges within a few batches.)"""
        params = self.body.collect_params()
        for name, param in params.items():
            if name.endswith("_scale"):
                param.initialize(mx.init.Constant(20.0), ctx=ctx)
            elif name.endswith(("_bias", "_beta", "_moving_mean")):
                param.initialize(mx.init.Zero(), ctx=ctx)
            elif name.endswith(("_gamma", "_moving_var")):
                param.initialize(mx.init.One(), ctx=ctx)
            elif _PREDICTOR.search(name):
                param.initialize(mx.init.Xavier(magnitude=2), ctx=ctx)
            else:
                param.initialize(
                    mx.init.Xavier(rnd_type="gaussian", factor_type="out", magnitude=2), ctx=ctx
                )
        self.collect_params(f"{self.prefix}.*").initialize(ctx=ctx)

    def hybrid_forward(self, F, x, gain, shift):  # noqa: N803  Gluon's signature
        x = F.broadcast_add(F.broadcast_mul(x, gain), shift)
        loc_preds, cls_preds, anchors = self.body(x)
        size = float(self.image_shape)
        if autograd.is_training():
            cls_preds = F.transpose(cls_preds, axes=(0, 2, 1))
            box_preds = F.reshape(loc_preds, shape=(0, -1, 4))
            left, top, right, bottom = F.split(anchors, num_outputs=4, axis=-1)
            centred = F.concat(
                (left + right) * (size / 2),
                (top + bottom) * (size / 2),
                (right - left) * size,
                (bottom - top) * size,
                dim=-1,
            )
            return cls_preds, box_preds, centred
        det = F.contrib.MultiBoxDetection(
            F.softmax(cls_preds, axis=1),
            loc_preds,
            anchors,
            nms_threshold=self.nms_thresh,
            force_suppress=False,
            variances=VARIANCES,
            nms_topk=self.nms_topk,
        )
        ids = F.slice_axis(det, axis=2, begin=0, end=1)
        scores = F.slice_axis(det, axis=2, begin=1, end=2)
        boxes = F.slice_axis(det, axis=2, begin=2, end=6) * size
        return ids, scores, boxes


def remap_class_rows(params, weights: dict, seed_classes: dict, classes: dict) -> tuple[dict, set]:
    """``weights`` (a seed's, by name) with each class predictor's rows moved from the seed's
    class ids to the job's by class name; a class the seed did not name keeps the network's
    fresh rows (``params``, initialised). Channel ``a * (C + 1) + k`` of a class predictor is
    anchor ``a``'s score of class ``k - 1`` (0: background, always kept). Returns the new
    weights and the names shared."""
    by_name = {name: cid for cid, name in seed_classes.items()}
    shared = {name for name in classes.values() if name in by_name}
    count = len(classes) + 1
    out = dict(weights)
    for name, param in params.items():
        if not _CLS_PRED.search(name):
            continue
        old = weights[name].asnumpy()
        new = param.data().asnumpy().copy()
        for a in range(new.shape[0] // count):
            new[a * count] = old[a * count]
            for cid, cname in classes.items():
                if cname in by_name:
                    new[a * count + 1 + cid] = old[a * count + 1 + by_name[cname]]
        out[name] = mx.nd.array(new, dtype=new.dtype)
    return out, shared


__all__ = ["SageMakerSSD", "remap_class_rows"]
