"""A test-side generator of SageMaker Object Detection model artifacts.

SageMaker's built-in Object Detection algorithm is MXNet's ``example/ssd``: the
``model.tar.gz`` a training job writes holds example/ssd's *training* symbol
(``model_algo_1-symbol.json``), its weights (``model_algo_1-0000.params``) and the job's
``hyperparams.json``. This module rebuilds that graph on its own, from MXNet's symbolic
operators only (it imports nothing from odp), so that the library code which builds or reads
the same graph can be checked against an independent implementation:

* :func:`training_symbol` builds, node for node, what example/ssd's
  ``symbol_factory.get_symbol_train`` builds in a fresh process (same ops, attributes,
  inputs and node names, the auto-generated ones included: ``flatten1``, ``transpose0``,
  ``concat0``, ``reshape0``, ``broadcast_mul0``, ``_plus12``, ``_minus0``, ...). Every node is
  named explicitly, so the result does not depend on what the process built before.
  ``tests/unit/test_sagemaker_models_generator.py`` checks it against example/ssd's own
  symbols (``tests/data/example_ssd``).
* :func:`write_artifact` writes what a training job writes (random weights initialised the way
  example/ssd's Module training initialises them, or given ones).
* :func:`reference_detections` runs SageMaker's / example/ssd's inference on such an artifact
  directly with MXNet.
"""

from __future__ import annotations

import json
import tarfile
import tempfile
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import mxnet as mx
import numpy as np

#: SageMaker's base network names and the example/ssd networks they are.
BASE_NETWORKS = {"vgg-16": "vgg16_reduced", "resnet-50": "resnet50"}
#: The RGB mean example/ssd (and so SageMaker) subtracts from the pixels.
SAGEMAKER_MEAN_PIXELS = (123.0, 117.0, 104.0)
#: The box-encoding variances of MultiBoxTarget / MultiBoxDetection.
VARIANCES = (0.1, 0.1, 0.2, 0.2)
SYMBOL_FILE = "model_algo_1-symbol.json"
PARAMS_FILE = "model_algo_1-0000.params"
HYPERPARAMS_FILE = "hyperparams.json"
#: Node names of the three tensors inference reads from the training graph.
CLS_PRED, LOC_PRED, ANCHORS = "multibox_cls_pred", "multibox_loc_pred", "multibox_anchors"


@dataclass(frozen=True)
class SSDConfig:
    """example/ssd's ``symbol_factory.get_config`` for one network and input size.

    ``extras`` are the layers added on top of the base network, one ``(num_filter, stride,
    pad)`` per layer; ``steps`` is empty where example/ssd lets MultiBoxPrior derive them from
    the feature maps."""

    from_layers: tuple[str, ...]
    extras: tuple[tuple[int, int, int], ...]
    sizes: tuple[tuple[float, ...], ...]
    ratios: tuple[tuple[float, ...], ...]
    normalizations: tuple[int, ...]
    norm_channels: tuple[int, ...]
    steps: tuple[float, ...]


_R3, _R5 = (1, 2, 0.5), (1, 2, 0.5, 3, 1.0 / 3)
_SIZES_6 = ((0.1, 0.141), (0.2, 0.272), (0.37, 0.447), (0.54, 0.619), (0.71, 0.79), (0.88, 0.961))


def ssd_config(base: str, image_shape: int) -> SSDConfig:
    """The example/ssd configuration SageMaker's ``base`` network uses at ``image_shape``."""
    if base == "vgg-16":
        if image_shape >= 448:
            return SSDConfig(
                from_layers=("relu4_3", "relu7"),
                extras=((512, 2, 1), (256, 2, 1), (256, 2, 1), (256, 2, 1), (256, 1, 1)),
                sizes=(
                    (0.07, 0.1025),
                    (0.15, 0.2121),
                    (0.3, 0.3674),
                    (0.45, 0.5196),
                    (0.6, 0.6708),
                    (0.75, 0.8216),
                    (0.9, 0.9721),
                ),
                ratios=(_R3, _R5, _R5, _R5, _R5, _R3, _R3),
                normalizations=(20, -1, -1, -1, -1, -1, -1),
                norm_channels=(512,),
                steps=tuple(x / 512.0 for x in (8, 16, 32, 64, 128, 256, 512))
                if image_shape == 512
                else (),
            )
        return SSDConfig(
            from_layers=("relu4_3", "relu7"),
            extras=((512, 2, 1), (256, 2, 1), (256, 1, 0), (256, 1, 0)),
            sizes=_SIZES_6,
            ratios=(_R3, _R5, _R5, _R5, _R3, _R3),
            normalizations=(20, -1, -1, -1, -1, -1),
            norm_channels=(512,),
            steps=tuple(x / 300.0 for x in (8, 16, 32, 64, 100, 300)) if image_shape == 300 else (),
        )
    if base == "resnet-50":
        return SSDConfig(
            from_layers=("_plus12", "_plus15"),
            extras=((512, 2, 1), (256, 2, 1), (256, 2, 1), (128, 2, 1)),
            sizes=_SIZES_6,
            ratios=(_R3, _R5, _R5, _R5, _R3, _R3),
            normalizations=(-1,) * 6,
            norm_channels=(),
            steps=(),
        )
    raise ValueError(f"unknown base network {base!r}; expected one of {sorted(BASE_NETWORKS)}")


class _AutoNames:
    """The names MXNet's NameManager gives unnamed nodes (``hint`` + a per-hint counter)."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = defaultdict(int)

    def __call__(self, hint: str) -> str:
        name = f"{hint}{self._counts[hint]}"
        self._counts[hint] += 1
        return name


@contextmanager
def _fresh_names() -> Iterator[None]:
    """A fresh NameManager: no active ``mx.name.Prefix`` leaks into the explicit names."""
    with mx.name.NameManager():
        yield


# --- base networks -----------------------------------------------------------------------------


def _vgg16_reduced(auto: _AutoNames) -> mx.sym.Symbol:
    """example/ssd's vgg16_reduced up to ``relu7`` (what the SSD graph keeps of it)."""
    x = mx.sym.Variable("data")
    blocks = ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))
    for block, convs, filters in blocks:
        for i in range(1, convs + 1):
            x = mx.sym.Convolution(
                data=x, kernel=(3, 3), pad=(1, 1), num_filter=filters, name=f"conv{block}_{i}"
            )
            x = mx.sym.Activation(data=x, act_type="relu", name=f"relu{block}_{i}")
        if block == 3:
            x = mx.sym.Pooling(
                data=x,
                pool_type="max",
                kernel=(2, 2),
                stride=(2, 2),
                pooling_convention="full",
                name="pool3",
            )
        elif block == 5:
            x = mx.sym.Pooling(
                data=x, pool_type="max", kernel=(3, 3), stride=(1, 1), pad=(1, 1), name="pool5"
            )
        else:
            x = mx.sym.Pooling(
                data=x, pool_type="max", kernel=(2, 2), stride=(2, 2), name=f"pool{block}"
            )
    x = mx.sym.Convolution(
        data=x, kernel=(3, 3), pad=(6, 6), dilate=(6, 6), num_filter=1024, name="fc6"
    )
    x = mx.sym.Activation(data=x, act_type="relu", name="relu6")
    x = mx.sym.Convolution(data=x, kernel=(1, 1), pad=(0, 0), num_filter=1024, name="fc7")
    x = mx.sym.Activation(data=x, act_type="relu", name="relu7")
    # example/ssd's classifier head (global_pool, fc8, an unnamed Flatten, softmax) is not in
    # the SSD graph, but its Flatten took the name flatten0.
    auto("flatten")
    return x


_BN = {"eps": 2e-5, "momentum": 0.9}
_CONV = {"no_bias": True, "workspace": 256}


def _resnet50_unit(
    data: mx.sym.Symbol,
    num_filter: int,
    stride: tuple[int, int],
    dim_match: bool,
    name: str,
    auto: _AutoNames,
) -> mx.sym.Symbol:
    """A pre-activation bottleneck unit of MXNet's symbolic ResNet v2."""
    bn1 = mx.sym.BatchNorm(data=data, fix_gamma=False, name=f"{name}_bn1", **_BN)
    act1 = mx.sym.Activation(data=bn1, act_type="relu", name=f"{name}_relu1")
    conv1 = mx.sym.Convolution(
        data=act1,
        num_filter=int(num_filter * 0.25),
        kernel=(1, 1),
        stride=(1, 1),
        pad=(0, 0),
        name=f"{name}_conv1",
        **_CONV,
    )
    bn2 = mx.sym.BatchNorm(data=conv1, fix_gamma=False, name=f"{name}_bn2", **_BN)
    act2 = mx.sym.Activation(data=bn2, act_type="relu", name=f"{name}_relu2")
    conv2 = mx.sym.Convolution(
        data=act2,
        num_filter=int(num_filter * 0.25),
        kernel=(3, 3),
        stride=stride,
        pad=(1, 1),
        name=f"{name}_conv2",
        **_CONV,
    )
    bn3 = mx.sym.BatchNorm(data=conv2, fix_gamma=False, name=f"{name}_bn3", **_BN)
    act3 = mx.sym.Activation(data=bn3, act_type="relu", name=f"{name}_relu3")
    conv3 = mx.sym.Convolution(
        data=act3,
        num_filter=num_filter,
        kernel=(1, 1),
        stride=(1, 1),
        pad=(0, 0),
        name=f"{name}_conv3",
        **_CONV,
    )
    if dim_match:
        shortcut = data
    else:
        shortcut = mx.sym.Convolution(
            data=act1,
            num_filter=num_filter,
            kernel=(1, 1),
            stride=stride,
            name=f"{name}_sc",
            **_CONV,
        )
    # `conv3 + shortcut` in example/ssd: an unnamed elemwise_add, hence _plus0 ... _plus15.
    return mx.sym.elemwise_add(conv3, shortcut, name=auto("_plus"))


def _resnet50(auto: _AutoNames) -> mx.sym.Symbol:
    """example/ssd's resnet50 (ResNet-50 v2, built for 3x224x224) up to its last unit."""
    x = mx.sym.Variable("data")
    x = mx.sym.identity(data=x, name="id")
    x = mx.sym.BatchNorm(data=x, fix_gamma=True, name="bn_data", **_BN)
    x = mx.sym.Convolution(
        data=x, num_filter=64, kernel=(7, 7), stride=(2, 2), pad=(3, 3), name="conv0", **_CONV
    )
    x = mx.sym.BatchNorm(data=x, fix_gamma=False, name="bn0", **_BN)
    x = mx.sym.Activation(data=x, act_type="relu", name="relu0")
    x = mx.sym.Pooling(
        data=x, kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type="max", name=auto("pooling")
    )
    for stage, (units, filters) in enumerate(
        zip((3, 4, 6, 3), (256, 512, 1024, 2048), strict=True), 1
    ):
        s = 1 if stage == 1 else 2
        x = _resnet50_unit(x, filters, (s, s), False, f"stage{stage}_unit1", auto)
        for unit in range(2, units + 1):
            x = _resnet50_unit(x, filters, (1, 1), True, f"stage{stage}_unit{unit}", auto)
    # The classifier head (bn1, relu1, pool1, an unnamed Flatten, fc1, softmax) is dropped;
    # its Flatten took flatten0.
    auto("flatten")
    return x


# --- the SSD graph -----------------------------------------------------------------------------


def _feature_layers(body: mx.sym.Symbol, config: SSDConfig) -> list[mx.sym.Symbol]:
    """example/ssd's ``multi_layer_feature``: the base network's layers, then the extras."""
    internals = body.get_internals()
    layers = [internals[f"{name}_output"] for name in config.from_layers]
    for k, (num_filter, stride, pad) in enumerate(config.extras, len(config.from_layers)):
        x = layers[-1]
        for kind, filters, kernel, s, p in (
            ("1x1", max(128, num_filter // 2), 1, 1, 0),
            ("3x3", num_filter, 3, stride, pad),
        ):
            name = f"multi_feat_{k}_conv_{kind}"
            x = mx.sym.Convolution(
                data=x,
                kernel=(kernel, kernel),
                pad=(p, p),
                stride=(s, s),
                num_filter=filters,
                name=f"{name}_conv",
            )
            x = mx.sym.Activation(data=x, act_type="relu", name=f"{name}_relu")
        layers.append(x)
    return layers


def _tuple_str(values: Sequence[float]) -> str:
    return "(" + ",".join(str(v) for v in values) + ")"


def _multibox(
    layers: list[mx.sym.Symbol], num_classes: int, config: SSDConfig, auto: _AutoNames
) -> tuple[mx.sym.Symbol, mx.sym.Symbol, mx.sym.Symbol]:
    """example/ssd's ``multibox_layer``: (loc_preds, cls_preds, anchors)."""
    channels = list(config.norm_channels)
    loc_layers, cls_layers, anchor_layers = [], [], []
    for k, layer in enumerate(layers):
        from_name = layer.name
        if config.normalizations[k] > 0:
            layer = mx.sym.L2Normalization(data=layer, mode="channel", name=f"{from_name}_norm")
            scale = mx.sym.Variable(
                name=f"{from_name}_scale",
                shape=(1, channels.pop(0), 1, 1),
                init=mx.init.Constant(config.normalizations[k]),
                attr={"__wd_mult__": "0.1"},
            )
            layer = mx.sym.broadcast_mul(lhs=scale, rhs=layer, name=auto("broadcast_mul"))
        size, ratio = config.sizes[k], config.ratios[k]
        num_anchors = len(size) - 1 + len(ratio)
        for kind, per_anchor, outputs in (
            ("loc", 4, loc_layers),
            ("cls", num_classes + 1, cls_layers),
        ):
            bias = mx.sym.Variable(
                name=f"{from_name}_{kind}_pred_conv_bias",
                init=mx.init.Constant(0.0),
                attr={"__lr_mult__": "2.0"},
            )
            pred = mx.sym.Convolution(
                data=layer,
                bias=bias,
                kernel=(3, 3),
                stride=(1, 1),
                pad=(1, 1),
                num_filter=num_anchors * per_anchor,
                name=f"{from_name}_{kind}_pred_conv",
            )
            pred = mx.sym.transpose(pred, axes=(0, 2, 3, 1), name=auto("transpose"))
            outputs.append(mx.sym.Flatten(data=pred, name=auto("flatten")))
        step = (config.steps[k], config.steps[k]) if config.steps else "(-1.0, -1.0)"
        anchors = mx.sym.contrib.MultiBoxPrior(
            layer,
            sizes=_tuple_str(size),
            ratios=_tuple_str(ratio),
            clip=False,
            name=f"{from_name}_anchors",
            steps=step,
        )
        anchor_layers.append(mx.sym.Flatten(data=anchors, name=auto("flatten")))
    n = len(layers)
    loc_preds = mx.sym.Concat(*loc_layers, num_args=n, dim=1, name=LOC_PRED)
    cls_preds = mx.sym.Concat(*cls_layers, num_args=n, dim=1, name=auto("concat"))
    cls_preds = mx.sym.Reshape(data=cls_preds, shape=(0, -1, num_classes + 1), name=auto("reshape"))
    cls_preds = mx.sym.transpose(cls_preds, axes=(0, 2, 1), name=CLS_PRED)
    anchors = mx.sym.Concat(*anchor_layers, num_args=n, dim=1, name=auto("concat"))
    anchors = mx.sym.Reshape(data=anchors, shape=(0, -1, 4), name=ANCHORS)
    return loc_preds, cls_preds, anchors


def training_symbol(
    base: str,
    image_shape: int,
    num_classes: int,
    *,
    nms_threshold: float = 0.45,
    nms_topk: int = 400,
) -> mx.sym.Symbol:
    """example/ssd's training symbol for SageMaker's ``base`` ("vgg-16" or "resnet-50").

    Node for node what ``symbol_factory.get_symbol_train(network, image_shape,
    num_classes=num_classes, nms_thresh=nms_threshold, force_suppress=False,
    nms_topk=nms_topk)`` builds in a fresh process. Inputs ``data`` and ``label``; heads
    ``cls_prob``, ``loc_loss``, ``cls_label``, ``det_out``."""
    config = ssd_config(base, image_shape)
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, not {num_classes}")
    auto = _AutoNames()
    with _fresh_names():
        label = mx.sym.Variable("label")
        body = _vgg16_reduced(auto) if base == "vgg-16" else _resnet50(auto)
        layers = _feature_layers(body, config)
        loc_preds, cls_preds, anchors = _multibox(layers, num_classes, config, auto)
        target = mx.sym.contrib.MultiBoxTarget(
            anchors,
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
        loc_target, loc_mask, cls_target = target[0], target[1], target[2]
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
        # `loc_target_mask * (loc_preds - loc_target)` in example/ssd.
        diff = mx.sym.elemwise_sub(loc_preds, loc_target, name=auto("_minus"))
        masked = mx.sym.elemwise_mul(loc_mask, diff, name=auto("_mul"))
        loc_loss_ = mx.sym.smooth_l1(data=masked, scalar=1.0, name="loc_loss_")
        loc_loss = mx.sym.MakeLoss(
            loc_loss_, grad_scale=1.0, normalization="valid", name="loc_loss"
        )
        cls_label = mx.sym.MakeLoss(data=cls_target, grad_scale=0, name="cls_label")
        det = mx.sym.contrib.MultiBoxDetection(
            cls_prob,
            loc_preds,
            anchors,
            name="detection",
            nms_threshold=nms_threshold,
            force_suppress=False,
            variances=VARIANCES,
            nms_topk=nms_topk,
        )
        det = mx.sym.MakeLoss(data=det, grad_scale=0, name="det_out")
        return mx.sym.Group([cls_prob, loc_loss, cls_label, det])


# --- artifacts ---------------------------------------------------------------------------------


def default_hyperparameters(base: str, image_shape: int, num_classes: int) -> dict[str, str]:
    """The ``hyperparams.json`` of a SageMaker job with these settings (SageMaker's defaults
    for the rest; every value a string)."""
    return {
        "base_network": base,
        "use_pretrained_model": "0",
        "num_classes": str(num_classes),
        "num_training_samples": "16551",
        "image_shape": str(image_shape),
        "mini_batch_size": "32",
        "epochs": "30",
        "learning_rate": "0.001",
        "lr_scheduler_step": "10,20",
        "lr_scheduler_factor": "0.1",
        "optimizer": "sgd",
        "momentum": "0.9",
        "weight_decay": "0.0005",
        "overlap_threshold": "0.5",
        "nms_threshold": "0.45",
        "label_width": "350",
    }


def initial_params(
    symbol: mx.sym.Symbol, image_shape: int, *, seed: int = 0
) -> dict[str, mx.nd.NDArray]:
    """``arg:``/``aux:`` arrays initialised as example/ssd's ``Module.fit`` does from scratch:
    ``mx.init.Xavier()`` for weights, each variable's own ``__init__`` where it has one (the
    L2-norm scale at 20, the prediction biases at 0, BatchNorm's moving mean 0 / var 1), zero
    biases, BatchNorm gamma 1 and beta 0. Deterministic in ``seed``."""
    arg_shapes, _, aux_shapes = symbol.infer_shape(
        data=(1, 3, image_shape, image_shape), label=(1, 1, 5)
    )
    attrs = symbol.attr_dict()
    initializer = mx.init.Xavier()
    mx.random.seed(seed)
    params: dict[str, mx.nd.NDArray] = {}
    for prefix, names, shapes in (
        ("arg", symbol.list_arguments(), arg_shapes),
        ("aux", symbol.list_auxiliary_states(), aux_shapes),
    ):
        # Module.init_params visits the arrays in name order (the random draws follow it).
        for name, shape in sorted(zip(names, shapes, strict=True)):
            if name in ("data", "label"):
                continue
            array = mx.nd.zeros(shape)
            initializer(mx.init.InitDesc(name, attrs.get(name)), array)
            params[f"{prefix}:{name}"] = array
    return params


def _prefixed(symbol: mx.sym.Symbol, params: dict[str, mx.nd.NDArray]) -> dict[str, mx.nd.NDArray]:
    aux = set(symbol.list_auxiliary_states())
    out = {}
    for key, value in params.items():
        if key.startswith(("arg:", "aux:")):
            out[key] = value
        else:
            out[f"{'aux' if key in aux else 'arg'}:{key}"] = value
    return out


def write_artifact(
    dest: Path,
    base: str,
    image_shape: int,
    num_classes: int,
    *,
    seed: int = 0,
    hyperparameters: dict[str, str] | None = None,
    params: dict[str, mx.nd.NDArray] | None = None,
    tar: bool = True,
    mxnet_version: int = 10300,
    compresslevel: int = 0,
) -> Path:
    """Write what a SageMaker Object Detection training job writes into ``dest``.

    ``model_algo_1-symbol.json`` (the training symbol, its ``mxnet_version`` set to
    ``mxnet_version``), ``model_algo_1-0000.params`` (``params``, keys ``arg:NAME``/``aux:NAME``
    or bare names; else :func:`initial_params` with ``seed``) and ``hyperparams.json``
    (:func:`default_hyperparameters` updated with ``hyperparameters``; its ``nms_threshold``
    goes into the graph). No ``class_map.json``. Returns ``dest/"model.tar.gz"`` (flat
    members; gzip at ``compresslevel``, 0 by default: random weights do not compress, and
    level 1 already takes seconds for ResNet-50's 100 MB) when ``tar``, else ``dest``."""
    hyper = default_hyperparameters(base, image_shape, num_classes)
    hyper.update(hyperparameters or {})
    symbol = training_symbol(
        base, image_shape, num_classes, nms_threshold=float(hyper["nms_threshold"])
    )
    graph = json.loads(symbol.tojson())
    graph.setdefault("attrs", {})["mxnet_version"] = ["int", mxnet_version]
    arrays = (
        _prefixed(symbol, params)
        if params is not None
        else initial_params(symbol, image_shape, seed=seed)
    )
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) if tar else dest
        (folder / SYMBOL_FILE).write_text(json.dumps(graph, indent=2))
        mx.nd.save(str(folder / PARAMS_FILE), arrays)
        (folder / HYPERPARAMS_FILE).write_text(json.dumps(hyper))
        if not tar:
            return dest
        tarball = dest / "model.tar.gz"
        with tarfile.open(tarball, "w:gz", compresslevel=compresslevel) as archive:
            for name in (SYMBOL_FILE, PARAMS_FILE, HYPERPARAMS_FILE):
                archive.add(folder / name, arcname=name)
        return tarball


# --- inference ---------------------------------------------------------------------------------


def _read_members(model: Path) -> dict[str, bytes]:
    """The artifact's three files, from a folder or a ``model.tar.gz``."""
    names = (SYMBOL_FILE, PARAMS_FILE, HYPERPARAMS_FILE)
    if model.is_dir():
        return {n: (model / n).read_bytes() for n in names if (model / n).exists()}
    with tarfile.open(model, "r:*") as archive:
        out = {}
        for member in archive.getmembers():
            base = Path(member.name).name
            if member.isfile() and base in names:
                handle = archive.extractfile(member)
                assert handle is not None
                out[base] = handle.read()
        return out


def preprocess(image: np.ndarray, image_shape: int) -> np.ndarray:
    """example/ssd's inference input for one uint8 RGB HWC image: bilinear resize to
    ``image_shape`` square, CHW float32, minus :data:`SAGEMAKER_MEAN_PIXELS`."""
    resized = cv2.resize(image, (image_shape, image_shape)).astype(np.float32)
    mean = np.asarray(SAGEMAKER_MEAN_PIXELS, dtype=np.float32).reshape(3, 1, 1)
    return resized.transpose(2, 0, 1) - mean


def reference_detections(
    model_dir: Path, images: list[np.ndarray], *, nms_threshold: float | None = None
) -> list[np.ndarray]:
    """SageMaker's (example/ssd's) detections on ``images`` with the artifact in ``model_dir``
    (a folder or a ``model.tar.gz``), computed directly with MXNet on CPU.

    The artifact's training graph is cut at ``multibox_cls_pred`` / ``multibox_loc_pred`` /
    ``multibox_anchors``; softmax over the classes, then MultiBoxDetection (NMS at
    ``nms_threshold``, else ``hyperparams.json``'s, else 0.45; ``force_suppress=False``,
    ``nms_topk=400``). Per image a ``(K, 6)`` float32 array of ``[class_id, score, xmin, ymin,
    xmax, ymax]`` (normalized corners), background rows (class -1) dropped, in
    MultiBoxDetection's order (descending score)."""
    files = _read_members(Path(model_dir))
    hyper = json.loads(files[HYPERPARAMS_FILE]) if HYPERPARAMS_FILE in files else {}
    image_shape = int(hyper.get("image_shape", 300))
    if nms_threshold is None:
        nms_threshold = float(hyper.get("nms_threshold", 0.45))
    if not images:
        return []
    symbol = mx.sym.load_json(files[SYMBOL_FILE].decode())
    internals = symbol.get_internals()
    cls_prob = mx.sym.softmax(internals[f"{CLS_PRED}_output"], axis=1)
    det = mx.sym.contrib.MultiBoxDetection(
        cls_prob,
        internals[f"{LOC_PRED}_output"],
        internals[f"{ANCHORS}_output"],
        nms_threshold=nms_threshold,
        force_suppress=False,
        variances=VARIANCES,
        nms_topk=400,
    )
    with tempfile.TemporaryDirectory() as tmp:  # mx.nd.load reads files only
        path = Path(tmp) / PARAMS_FILE
        path.write_bytes(files[PARAMS_FILE])
        saved = mx.nd.load(str(path))
    args = {k[4:]: v for k, v in saved.items() if k.startswith("arg:")}
    auxs = {k[4:]: v for k, v in saved.items() if k.startswith("aux:")}
    batch = np.stack([preprocess(image, image_shape) for image in images])
    executor = det.simple_bind(mx.cpu(), grad_req="null", data=batch.shape)
    executor.copy_params_from(args, auxs, allow_extra_params=True)
    out = executor.forward(is_train=False, data=mx.nd.array(batch))[0].asnumpy()
    return [rows[rows[:, 0] >= 0] for rows in out]


__all__ = [
    "ANCHORS",
    "BASE_NETWORKS",
    "CLS_PRED",
    "HYPERPARAMS_FILE",
    "LOC_PRED",
    "PARAMS_FILE",
    "SAGEMAKER_MEAN_PIXELS",
    "SSDConfig",
    "SYMBOL_FILE",
    "VARIANCES",
    "default_hyperparameters",
    "initial_params",
    "preprocess",
    "reference_detections",
    "ssd_config",
    "training_symbol",
    "write_artifact",
]
