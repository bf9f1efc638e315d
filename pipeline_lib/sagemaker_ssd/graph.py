"""SageMaker's SSD as MXNet symbols: the training graph a SageMaker job saves, and the
inference graphs odp runs on any saved one.

:func:`training_symbol` builds, node for node, what MXNet ``example/ssd``'s
``symbol_factory.get_symbol_train`` builds in a fresh process (the symbol inside every
SageMaker Object Detection ``model.tar.gz``): the same operators, attributes and node names,
the names MXNet generates there (``flatten1``, ``transpose0``, ``_plus12``, ...) included, so
the file odp writes is the file SageMaker writes. Every node is named explicitly here, so
the result does not depend on what else the process built before.

:func:`heads` finds the three outputs every such graph names (``multibox_cls_pred``,
``multibox_loc_pred``, ``multibox_anchors``) in a saved symbol; :func:`detection_symbol` puts
example/ssd's inference on them (softmax over the classes, ``MultiBoxDetection``), and
:func:`predictor_symbol` the same behind odp's in-graph pixel input (uint8 ``N x S x S x 3``
in, minus the mean pixels, as example/ssd preprocesses), answering like odp's GluonCV export.
"""

from __future__ import annotations

import mxnet as mx

from ..preprocessing import PIXEL_INPUT_PREFIX
from .layout import MEAN_PIXELS, NMS_TOPK, VARIANCES, Layout, layout_for
from .symbol_info import HEAD_NAMES

MEAN_NAME = f"{PIXEL_INPUT_PREFIX}mean"  # the in-graph mean pixels of predictor_symbol
_RESNET50_UNITS = (3, 4, 6, 3)
_RESNET50_FILTERS = (256, 512, 1024, 2048)


# --------------------------------------------------------------------------- base networks


def _vgg16_reduced(data: mx.sym.Symbol) -> dict[str, mx.sym.Symbol]:
    """example/ssd's ``vgg16_reduced`` up to ``relu7`` (fc6/fc7 as dilated convolutions);
    the layers SSD takes features from, by name."""

    def conv_relu(x, name: str, relu: str, num_filter: int, **kw):
        conv = mx.sym.Convolution(data=x, num_filter=num_filter, name=name, **kw)
        return mx.sym.Activation(data=conv, act_type="relu", name=relu)

    x, out = data, {}
    for group, (count, filters) in enumerate(((2, 64), (2, 128), (3, 256), (3, 512), (3, 512)), 1):
        for i in range(1, count + 1):
            name = f"{group}_{i}"
            x = conv_relu(x, f"conv{name}", f"relu{name}", filters, kernel=(3, 3), pad=(1, 1))
        out[f"relu{group}_{count}"] = x
        if group == 3:
            x = mx.sym.Pooling(
                data=x,
                pool_type="max",
                kernel=(2, 2),
                stride=(2, 2),
                pooling_convention="full",
                name="pool3",
            )
        elif group == 5:
            x = mx.sym.Pooling(
                data=x, pool_type="max", kernel=(3, 3), stride=(1, 1), pad=(1, 1), name="pool5"
            )
        else:
            x = mx.sym.Pooling(
                data=x, pool_type="max", kernel=(2, 2), stride=(2, 2), name=f"pool{group}"
            )
    x = conv_relu(x, "fc6", "relu6", 1024, kernel=(3, 3), pad=(6, 6), dilate=(6, 6))
    out["relu7"] = conv_relu(x, "fc7", "relu7", 1024, kernel=(1, 1), pad=(0, 0))
    return out


def _residual_unit(data, num_filter: int, stride: int, dim_match: bool, name: str, plus: str):
    """One bottleneck unit of MXNet's symbolic ResNet (pre-activation, stride on the 3x3)."""

    def bn_relu(x, suffix: str):
        bn = mx.sym.BatchNorm(
            data=x, fix_gamma=False, eps=2e-5, momentum=0.9, name=f"{name}_bn{suffix}"
        )
        return mx.sym.Activation(data=bn, act_type="relu", name=f"{name}_relu{suffix}")

    def conv(x, suffix: str, filters: int, kernel: int, s: int):
        pad = (kernel // 2, kernel // 2)
        return mx.sym.Convolution(
            data=x,
            num_filter=filters,
            kernel=(kernel, kernel),
            stride=(s, s),
            pad=pad,
            no_bias=True,
            workspace=256,
            name=f"{name}_conv{suffix}",
        )

    act1 = bn_relu(data, "1")
    conv1 = conv(act1, "1", int(num_filter * 0.25), 1, 1)
    conv2 = conv(bn_relu(conv1, "2"), "2", int(num_filter * 0.25), 3, stride)
    conv3 = conv(bn_relu(conv2, "3"), "3", num_filter, 1, 1)
    if dim_match:
        shortcut = data
    else:
        shortcut = mx.sym.Convolution(
            data=act1,
            num_filter=num_filter,
            kernel=(1, 1),
            stride=(stride, stride),
            no_bias=True,
            workspace=256,
            name=f"{name}_sc",
        )
    return mx.sym.elemwise_add(conv3, shortcut, name=plus)


def _resnet50(data: mx.sym.Symbol) -> dict[str, mx.sym.Symbol]:
    """MXNet's symbolic ResNet-50 (example/ssd's ``resnet``) up to its last unit; every
    unit's sum by its generated name ``_plusN``."""
    x = mx.sym.identity(data=data, name="id")
    x = mx.sym.BatchNorm(data=x, fix_gamma=True, eps=2e-5, momentum=0.9, name="bn_data")
    x = mx.sym.Convolution(
        data=x,
        num_filter=64,
        kernel=(7, 7),
        stride=(2, 2),
        pad=(3, 3),
        no_bias=True,
        name="conv0",
        workspace=256,
    )
    x = mx.sym.BatchNorm(data=x, fix_gamma=False, eps=2e-5, momentum=0.9, name="bn0")
    x = mx.sym.Activation(data=x, act_type="relu", name="relu0")
    x = mx.sym.Pooling(
        data=x, kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type="max", name="pooling0"
    )
    out, plus = {}, 0
    for stage, (units, filters) in enumerate(
        zip(_RESNET50_UNITS, _RESNET50_FILTERS, strict=True), 1
    ):
        for unit in range(1, units + 1):
            first = unit == 1
            stride = 2 if first and stage > 1 else 1
            name = f"_plus{plus}"
            x = _residual_unit(x, filters, stride, not first, f"stage{stage}_unit{unit}", name)
            out[name] = x
            plus += 1
    return out


# --------------------------------------------------------------------------- SSD heads


def _features(base: str, data: mx.sym.Symbol, layout: Layout) -> list[mx.sym.Symbol]:
    """The feature layers: the base network's, then the added 1x1 + 3x3 convolutions."""
    named = _vgg16_reduced(data) if base == "vgg-16" else _resnet50(data)
    layers: list[mx.sym.Symbol] = []
    for k, (source, filters, stride, pad) in enumerate(
        zip(layout.from_layers, layout.num_filters, layout.strides, layout.pads, strict=True)
    ):
        if source:
            layers.append(named[source])
            continue
        x = layers[-1]
        for kind, n, kernel, p, s in (
            ("1x1", max(128, filters // 2), (1, 1), (0, 0), (1, 1)),
            ("3x3", filters, (3, 3), (pad, pad), (stride, stride)),
        ):
            name = f"multi_feat_{k}_conv_{kind}"
            x = mx.sym.Convolution(
                data=x, kernel=kernel, pad=p, stride=s, num_filter=n, name=f"{name}_conv"
            )
            x = mx.sym.Activation(data=x, act_type="relu", name=f"{name}_relu")
        layers.append(x)
    return layers


def _tuple_text(values) -> str:
    return "(" + ",".join(str(v) for v in values) + ")"


def _multibox(layers: list[mx.sym.Symbol], num_classes: int, layout: Layout):
    """Location and class predictors and anchors on every feature layer, concatenated:
    ``(multibox_loc_pred, multibox_cls_pred, multibox_anchors)``."""
    locs, clss, anchors = [], [], []
    channels = [f for f, n in zip(layout.num_filters, layout.normalizations, strict=True) if n > 0]
    flat = 1  # MXNet's generated names: the base network's classifier took flatten0
    for k, layer in enumerate(layers):
        source = layer.name
        if layout.normalizations[k] > 0:
            layer = mx.sym.L2Normalization(data=layer, mode="channel", name=f"{source}_norm")
            scale = mx.sym.Variable(
                name=f"{source}_scale",
                shape=(1, channels.pop(0), 1, 1),
                init=mx.init.Constant(layout.normalizations[k]),
                wd_mult=0.1,
            )
            layer = mx.sym.broadcast_mul(lhs=scale, rhs=layer, name="broadcast_mul0")
        per_position = layout.anchors_per_position[k]
        for kind, filters, out in (
            ("loc", per_position * 4, locs),
            ("cls", per_position * (num_classes + 1), clss),
        ):
            name = f"{source}_{kind}_pred_conv"
            bias = mx.sym.Variable(
                name=f"{name}_bias", init=mx.init.Constant(0.0), attr={"__lr_mult__": "2.0"}
            )
            pred = mx.sym.Convolution(
                data=layer,
                bias=bias,
                kernel=(3, 3),
                stride=(1, 1),
                pad=(1, 1),
                num_filter=filters,
                name=name,
            )
            index = 2 * k + (kind == "cls")
            pred = mx.sym.transpose(pred, axes=(0, 2, 3, 1), name=f"transpose{index}")
            out.append(mx.sym.Flatten(data=pred, name=f"flatten{flat + (kind == 'cls')}"))
        step = (layout.steps[k], layout.steps[k]) if layout.steps else "(-1.0, -1.0)"
        prior = mx.sym.contrib.MultiBoxPrior(
            layer,
            sizes=_tuple_text(layout.sizes[k]),
            ratios=_tuple_text(layout.ratios[k]),
            clip=False,
            name=f"{source}_anchors",
            steps=step,
        )
        anchors.append(mx.sym.Flatten(data=prior, name=f"flatten{flat + 2}"))
        flat += 3
    n = len(layers)
    loc_preds = mx.sym.Concat(*locs, num_args=n, dim=1, name="multibox_loc_pred")
    cls_preds = mx.sym.Concat(*clss, num_args=n, dim=1, name="concat0")
    cls_preds = mx.sym.Reshape(data=cls_preds, shape=(0, -1, num_classes + 1), name="reshape0")
    cls_preds = mx.sym.transpose(cls_preds, axes=(0, 2, 1), name="multibox_cls_pred")
    anchor_boxes = mx.sym.Concat(*anchors, num_args=n, dim=1, name="concat1")
    anchor_boxes = mx.sym.Reshape(data=anchor_boxes, shape=(0, -1, 4), name="multibox_anchors")
    return loc_preds, cls_preds, anchor_boxes


def network_heads(base: str, image_shape: int, num_classes: int) -> mx.sym.Symbol:
    """``Group([multibox_loc_pred, multibox_cls_pred, multibox_anchors])`` on input ``data``:
    the network without its training heads (what odp's training engine trains)."""
    layout = layout_for(base, image_shape)
    layers = _features(base, mx.sym.var("data"), layout)
    return mx.sym.Group(list(_multibox(layers, num_classes, layout)))


def training_symbol(
    base: str, image_shape: int, num_classes: int, *, nms_threshold: float = 0.45
) -> mx.sym.Symbol:
    """example/ssd's training symbol (``get_symbol_train``): heads ``cls_prob``,
    ``loc_loss``, ``cls_label``, ``det_out``; inputs ``data`` and ``label``."""
    label = mx.sym.Variable("label")
    loc_preds, cls_preds, anchor_boxes = network_heads(base, image_shape, num_classes)
    target = mx.sym.contrib.MultiBoxTarget(
        anchor_boxes,
        label,
        cls_preds,
        overlap_threshold=0.5,
        ignore_label=-1,
        negative_mining_ratio=3,
        minimum_negative_samples=0,
        negative_mining_thresh=0.5,
        variances=VARIANCES,
        name="multibox_target",
    )
    loc_target, loc_target_mask, cls_target = target[0], target[1], target[2]
    cls_prob = mx.sym.SoftmaxOutput(
        data=cls_preds,
        label=cls_target,
        ignore_label=-1,
        use_ignore=True,
        grad_scale=1.0,
        multi_output=True,
        normalization="valid",
        name="cls_prob",
    )
    diff = mx.sym.elemwise_sub(loc_preds, loc_target, name="_minus0")
    masked = mx.sym.elemwise_mul(loc_target_mask, diff, name="_mul0")
    loc_loss_ = mx.sym.smooth_l1(name="loc_loss_", data=masked, scalar=1.0)
    loc_loss = mx.sym.MakeLoss(loc_loss_, grad_scale=1.0, normalization="valid", name="loc_loss")
    cls_label = mx.sym.MakeLoss(data=cls_target, grad_scale=0, name="cls_label")
    det = mx.sym.contrib.MultiBoxDetection(
        cls_prob,
        loc_preds,
        anchor_boxes,
        name="detection",
        nms_threshold=nms_threshold,
        force_suppress=False,
        variances=VARIANCES,
        nms_topk=NMS_TOPK,
    )
    det = mx.sym.MakeLoss(data=det, grad_scale=0, name="det_out")
    return mx.sym.Group([cls_prob, loc_loss, cls_label, det])


# --------------------------------------------------------------------------- inference


def heads(saved: mx.sym.Symbol) -> tuple[mx.sym.Symbol, mx.sym.Symbol, mx.sym.Symbol]:
    """``(cls_pred (N, C+1, A), loc_pred (N, 4A), anchors (1, A, 4))`` of a saved graph;
    ``KeyError`` naming the head a graph lacks."""
    internals = saved.get_internals()
    outputs = set(internals.list_outputs())
    found = []
    for name in HEAD_NAMES:
        if f"{name}_output" not in outputs:
            raise KeyError(f"the graph has no {name} node")
        found.append(internals[f"{name}_output"])
    return found[0], found[1], found[2]


def _detection(saved: mx.sym.Symbol, nms_threshold: float) -> mx.sym.Symbol:
    cls_pred, loc_pred, anchors = heads(saved)
    cls_prob = mx.sym.softmax(data=cls_pred, axis=1, name="cls_prob")
    return mx.sym.contrib.MultiBoxDetection(
        cls_prob,
        loc_pred,
        anchors,
        name="detection",
        nms_threshold=nms_threshold,
        force_suppress=False,
        variances=VARIANCES,
        nms_topk=NMS_TOPK,
    )


def detection_symbol(saved: mx.sym.Symbol, nms_threshold: float) -> mx.sym.Symbol:
    """example/ssd's inference on a saved graph (its ``deploy`` symbol): input ``data``
    ``(N, 3, S, S)`` float RGB minus the mean pixels; output ``(N, A, 6)`` rows
    ``[class_id, score, xmin, ymin, xmax, ymax]`` (normalized corners, class -1 =
    none), best first."""
    return _detection(saved, nms_threshold)


def _pixel_input() -> mx.sym.Symbol:
    """uint8 ``(N, S, S, 3)`` RGB ``data`` -> float32 NCHW minus the mean pixels (the
    parameter :data:`MEAN_NAME`), as example/ssd preprocesses."""
    pixels = mx.sym.var("data", dtype="uint8")
    mean = mx.sym.var(MEAN_NAME, shape=(1, 3, 1, 1))
    x = mx.sym.cast(pixels, dtype="float32", name=f"{PIXEL_INPUT_PREFIX}cast")
    x = mx.sym.transpose(x, axes=(0, 3, 1, 2), name=f"{PIXEL_INPUT_PREFIX}nchw")
    return mx.sym.broadcast_sub(x, mean, name=f"{PIXEL_INPUT_PREFIX}minus_mean")


def scores_symbol(saved: mx.sym.Symbol) -> mx.sym.Symbol:
    """``Group([cls_prob (N, C+1, A), loc_pred (N, 4A)])`` behind the pixel input: the
    graph up to ``MultiBoxDetection``'s inputs but the (constant) anchors."""
    cls_pred, loc_pred, _ = heads(saved)
    cls_prob = mx.sym.softmax(data=cls_pred, axis=1, name="cls_prob")
    return mx.sym.Group([cls_prob, loc_pred])(data=_pixel_input())


def anchors_for(saved: mx.sym.Symbol, image_shape: int):
    """The graph's anchors at ``image_shape``, ``(1, A, 4)`` float32 numpy (normalized
    corners). ``MultiBoxPrior`` reads only its input's shape, so any weights do."""
    _, _, anchors = heads(saved)
    args, _, aux = anchors.infer_shape(data=(1, 3, image_shape, image_shape))
    arrays = {n: mx.nd.zeros(s) for n, s in zip(anchors.list_arguments(), args, strict=True)}
    states = {n: mx.nd.ones(s) for n, s in zip(anchors.list_auxiliary_states(), aux, strict=True)}
    out = anchors.bind(mx.cpu(), args=arrays, aux_states=states).forward()[0]
    return out.asnumpy().astype("float32")


def predictor_symbol(saved: mx.sym.Symbol, image_shape: int, nms_threshold: float):
    """:func:`detection_symbol` behind the pixel input odp's exports take (``data`` uint8
    ``(N, S, S, 3)`` RGB; the mean pixels are the parameter :data:`MEAN_NAME`), answering
    as odp's GluonCV export does: ``(ids (N, A, 1), scores (N, A, 1), boxes (N, A, 4))``,
    boxes in input pixels."""
    det = _detection(saved, nms_threshold)(data=_pixel_input())
    ids = mx.sym.slice_axis(det, axis=2, begin=0, end=1, name="odp_ids")
    scores = mx.sym.slice_axis(det, axis=2, begin=1, end=2, name="odp_scores")
    boxes = mx.sym.slice_axis(det, axis=2, begin=2, end=6, name="odp_corners")
    boxes = mx.sym._internal._mul_scalar(boxes, scalar=float(image_shape), name="odp_boxes")
    return mx.sym.Group([ids, scores, boxes])


def mean_pixels() -> mx.nd.NDArray:
    """The value of :data:`MEAN_NAME`."""
    return mx.nd.array(MEAN_PIXELS).reshape((1, 3, 1, 1))


__all__ = [
    "HEAD_NAMES",
    "MEAN_NAME",
    "detection_symbol",
    "anchors_for",
    "heads",
    "load_symbol",
    "mean_pixels",
    "network_heads",
    "predictor_symbol",
    "scores_symbol",
    "training_symbol",
]


def load_symbol(text: str) -> mx.sym.Symbol:
    """``mx.sym.load_json`` without MXNet's two log lines on stderr for a symbol saved by an
    older MXNet (SageMaker's 1.3): MXNet still upgrades it; only the notice is dropped, so a
    command's output stays its own (an error still raises)."""
    import os
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        return mx.sym.load_json(text)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
