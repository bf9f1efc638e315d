"""SSD networks for each base network and input size: GluonCV's (``model_format=gluoncv``)
and SageMaker's own graph (``sagemaker``: :mod:`pipeline_lib.sagemaker_ssd`).

Anchor sizes and steps follow GluonCV's presets for 300 and 512 and scale linearly for
other sizes. Pretrained ImageNet weights are only ever read from a local cache folder
(``MXNET_HOME/models``, the MXNet model-store layout, ``<name>-<hash>.params``) and loaded
the way GluonCV loads its own; there is never a download from the internet (the cache may be
filled from ``ODP_PRETRAINED_URI``, an s3:// or local folder the operator provides).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mxnet as mx

from ..sagemaker_ssd.pretrained import (
    PretrainedWeightsInvalid,
    PretrainedWeightsMissing,
    checkpoint_name,
    find_checkpoint,
    load_checkpoint,
)

RATIOS_6 = [[1, 2, 0.5]] + [[1, 2, 0.5, 3, 1.0 / 3]] * 3 + [[1, 2, 0.5]] * 2
SIZES_300 = [21, 45, 99, 153, 207, 261, 315]
STEPS_300 = [8, 16, 32, 64, 100, 300]


@dataclass(frozen=True)
class BaseSpec:
    """How GluonCV builds SSD on one base network."""

    gluon_name: str  # name in the GluonCV model store (pretrained base file prefix)
    features: object  # output layer names, or "vgg" for the atrous VGG feature blocks
    filters: list[int] | None


BASES: dict[str, BaseSpec] = {
    "vgg-16": BaseSpec("vgg16_atrous", "vgg", None),
    "resnet-50": BaseSpec(
        "resnet50_v1", ["stage3_activation5", "stage4_activation2"], [512, 512, 256, 256]
    ),
    "mobilenet-1.0": BaseSpec("mobilenet1.0", ["relu22_fwd", "relu26_fwd"], [512, 512, 256, 256]),
    "mobilenet-0.25": BaseSpec("mobilenet0.25", ["relu22_fwd", "relu26_fwd"], [256, 256, 128, 128]),
}


def pretrained_root(mxnet_home: str | Path) -> Path:
    """Folder holding ``<name>-<hash>.params`` files (the MXNet model-store layout)."""
    return Path(mxnet_home) / "models"


def mxnet_home() -> str:
    """``MXNET_HOME``, else the project's configured MXNet home."""
    from ..settings import load_settings

    return os.environ.get("MXNET_HOME") or str(load_settings().mxnet_home)


def fetch_pretrained(base_network: str, mxnet_home: str, model_format: str = "gluoncv") -> None:
    """Copy pretrained weights from ODP_PRETRAINED_URI (s3:// or a folder) into the cache."""
    uri = os.environ.get("ODP_PRETRAINED_URI")
    if not uri:
        return
    from .. import storage

    if model_format == "sagemaker":
        name = checkpoint_name(base_network)
    else:
        name = BASES[base_network].gluon_name
    for file_uri in storage.list_files(uri):
        base = file_uri.rsplit("/", 1)[-1]
        if base.startswith(f"{name}-") and base.endswith(".params"):
            dest = pretrained_root(mxnet_home) / base
            if not dest.exists():
                storage.download(file_uri, dest)


def find_pretrained(base_network: str, mxnet_home: str | Path) -> Path:
    """The cached ImageNet weights file for a base network, or a clear error."""
    root = pretrained_root(mxnet_home)
    name = BASES[base_network].gluon_name
    found = sorted(root.glob(f"{name}-*.params"))
    if not found:
        raise PretrainedWeightsMissing(
            f"use_pretrained_model=1 but no ImageNet weights for {base_network} were found: "
            f"looked for {root}/{name}-<hash>.params (MXNET_HOME={mxnet_home}). Put the "
            f"GluonCV model-store file there (or set ODP_PRETRAINED_URI to an s3:// folder "
            f"holding it), or train from scratch with use_pretrained_model=0."
        )
    return found[0]


@contextlib.contextmanager
def _local_model_store(name: str, path: Path) -> Iterator[None]:
    """Make GluonCV's model store answer ``name`` with our cached ``path``.

    GluonCV then loads the file exactly as it loads its own downloads, but without comparing
    its SHA-1 to GluonCV's list of official files (which would reject any other ImageNet
    training of the same architecture and then try to download) and never downloading.
    """
    from gluoncv.model_zoo import model_store

    real = model_store.get_model_file

    def local(wanted: str, tag=None, root=None) -> str:
        if wanted != name:
            raise PretrainedWeightsMissing(f"GluonCV asked for {wanted!r} weights, not {name!r}")
        return str(path)

    model_store.get_model_file = local
    try:
        yield
    finally:
        model_store.get_model_file = real


def _layout(spec: BaseSpec, image_shape: int) -> tuple:
    """GluonCV's preset for a base network: ``(name, features, filters, sizes, steps,
    ratios, scale)``, sizes and steps at the preset's input size, ``scale`` to ours."""
    from gluoncv.model_zoo.ssd.vgg_atrous import vgg16_atrous_300, vgg16_atrous_512

    if spec.features == "vgg":
        if image_shape >= 512:
            features = vgg16_atrous_512
            sizes = [51.2, 76.8, 153.6, 230.4, 307.2, 384.0, 460.8, 537.6]
            steps = [8, 16, 32, 64, 128, 256, 512]
            ratios = [[1, 2, 0.5]] + [[1, 2, 0.5, 3, 1.0 / 3]] * 4 + [[1, 2, 0.5]] * 2
            scale = image_shape / 512
        else:
            features, sizes, steps, ratios = vgg16_atrous_300, SIZES_300, STEPS_300, RATIOS_6
            scale = image_shape / 300
        name, filters = None, None  # SSD calls features(pretrained=, ctx=, root=) itself
    else:
        name, features, filters, ratios = spec.gluon_name, spec.features, spec.filters, RATIOS_6
        sizes, steps, scale = SIZES_300, STEPS_300, image_shape / 300
    return name, features, filters, sizes, steps, ratios, scale


def build_ssd(
    base_network: str,
    classes: list[str],
    image_shape: int = 300,
    *,
    pretrained_base: bool = False,
    mxnet_home: str | Path | None = None,
    nms_thresh: float = 0.45,
) -> mx.gluon.HybridBlock:
    """An untrained (or ImageNet-based) SSD for ``classes`` at ``image_shape``."""
    from gluoncv.model_zoo.ssd.ssd import get_ssd

    spec = BASES[base_network]
    weights: Path | None = None
    if pretrained_base:
        if mxnet_home is None:
            raise ValueError("pretrained_base needs mxnet_home")
        weights = find_pretrained(base_network, mxnet_home)
    name, features, filters, sizes, steps, ratios, scale = _layout(spec, image_shape)

    def make(steps: list[float], pretrained: bool):
        return get_ssd(
            name,
            image_shape,
            features=features,
            filters=filters,
            sizes=[s * scale for s in sizes],
            ratios=ratios,
            steps=steps,
            classes=classes,
            dataset="custom",
            pretrained=False,
            pretrained_base=pretrained,
            nms_thresh=nms_thresh,
        )

    # Anchor centres must tile the whole image: the step of each layer is the input size
    # over that layer's feature-map size. (GluonCV's 300 presets reuse VGG's steps for the
    # stride-16 mobilenet/resnet bases, which leaves the lower right of the image without
    # small anchors.)
    probe = make([s * scale for s in steps], False)
    probe.initialize()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        maps = probe.features(mx.nd.zeros((1, 3, image_shape, image_shape)))
    steps = [image_shape / m.shape[-1] for m in maps]
    if weights is None:
        return make(steps, False)
    try:
        with _local_model_store(spec.gluon_name, weights):
            return make(steps, True)
    except (AssertionError, ValueError, mx.base.MXNetError) as exc:
        raise PretrainedWeightsInvalid(
            f"{weights}: not usable as ImageNet weights for {base_network} "
            f"({spec.gluon_name}): {str(exc).splitlines()[0][:300]}"
        ) from None


def anchors_for(net: mx.gluon.HybridBlock, image_shape: int) -> mx.nd.NDArray:
    """The network's anchors ``(1, N, 4)``, computed on a dummy input in training mode."""
    with mx.autograd.train_mode():
        _, _, anchors = net(mx.nd.zeros((1, 3, image_shape, image_shape)))
    return anchors


def build_sagemaker_ssd(
    base_network: str,
    classes: list[str],
    image_shape: int,
    ctx: list,
    *,
    pretrained_base: bool = False,
    mxnet_home: str | Path | None = None,
    nms_thresh: float = 0.45,
    log=print,
):
    """SageMaker's SSD (:class:`~pipeline_lib.sagemaker_ssd.network.SageMakerSSD`),
    initialised on ``ctx`` as example/ssd initialises it, its base network from MXNet's
    symbolic ImageNet checkpoint when ``pretrained_base``."""
    from ..sagemaker_ssd.network import SageMakerSSD

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net = SageMakerSSD(base_network, classes, image_shape, nms_thresh)
    except mx.base.MXNetError as exc:
        first = (str(exc).strip().splitlines() or ["?"])[0][:300]
        raise ValueError(
            f"SageMaker's {base_network} SSD cannot be built at image_shape={image_shape}: {first}"
        ) from None
    net.initialize_weights(ctx)
    if pretrained_base:
        if mxnet_home is None:
            raise ValueError("pretrained_base needs mxnet_home")
        path = find_checkpoint(base_network, pretrained_root(mxnet_home))
        count = load_checkpoint(path, net.body.collect_params())
        log(f"ImageNet base weights: {path} ({count} arrays)")
    return net
