"""ImageNet bases for SageMaker's SSD: MXNet's symbolic ImageNet checkpoints, from the same
offline weight store as GluonCV's (``$MXNET_HOME/models``), never downloaded.

example/ssd starts ``vgg-16`` from ``vgg16_reduced`` (``vgg16_reduced-0001.params``, fc6 and
fc7 as convolutions) and ``resnet-50`` from MXNet's ResNet-50 (``resnet-50-0000.params``).
Such a checkpoint holds ``arg:``/``aux:`` arrays named like the base network's layers in
SageMaker's graph (``conv1_1_weight``, ``bn_data_gamma``, ``stage1_unit1_conv1_weight``...):
those are loaded, the rest of the network keeps its fresh initialisation.
"""

from __future__ import annotations

from pathlib import Path

#: SageMaker's base_network -> the MXNet model-store prefix of its ImageNet checkpoint
CHECKPOINTS = {"vgg-16": "vgg16_reduced", "resnet-50": "resnet-50"}
_HEAD_PARTS = ("multi_feat_", "_pred_conv", "_scale")  # SSD's own layers, not the base's


class PretrainedWeightsMissing(FileNotFoundError):
    """ImageNet weights were asked for but are not in the local store."""


class PretrainedWeightsInvalid(ValueError):
    """The stored weights do not fit the base network."""


def checkpoint_name(base: str) -> str:
    """The file-name prefix of ``base``'s ImageNet checkpoint."""
    return CHECKPOINTS[base]


def find_checkpoint(base: str, models_dir: str | Path) -> Path:
    """``<models_dir>/<prefix>-NNNN.params`` for ``base`` (the newest epoch), or a clear
    :class:`PretrainedWeightsMissing` naming the file looked for."""
    prefix = checkpoint_name(base)
    found = sorted(Path(models_dir).glob(f"{prefix}-[0-9][0-9][0-9][0-9].params"))
    if not found:
        raise PretrainedWeightsMissing(
            f"use_pretrained_model=1 but no ImageNet weights for {base} (model_format="
            f"sagemaker) were found: looked for {models_dir}/{prefix}-NNNN.params (MXNet's "
            f"symbolic checkpoint, e.g. {prefix}-{'0001' if base == 'vgg-16' else '0000'}"
            ".params). Put it there (or set ODP_PRETRAINED_URI to a folder holding it), or "
            "train from scratch with use_pretrained_model=0."
        )
    return found[-1]


def is_base_parameter(name: str) -> bool:
    """Whether a parameter of SageMaker's graph belongs to the base network (an ImageNet
    checkpoint provides it) rather than to SSD's added layers."""
    return not any(part in name for part in _HEAD_PARTS)


def load_checkpoint(path: Path, params) -> int:
    """Set the base-network parameters of ``params`` (a Gluon ``ParameterDict`` named as
    SageMaker's graph) from the checkpoint at ``path``; returns how many were set.
    :class:`PretrainedWeightsInvalid` names what is missing or of another shape."""
    import mxnet as mx

    try:
        saved = mx.nd.load(str(path))
    except mx.base.MXNetError as exc:
        first = (str(exc).strip().splitlines() or ["unreadable"])[0][:200]
        raise PretrainedWeightsInvalid(f"{path}: not an MXNet checkpoint ({first})") from None
    if not isinstance(saved, dict):
        raise PretrainedWeightsInvalid(f"{path}: not an MXNet checkpoint (no named arrays)")
    arrays = {k.split(":", 1)[-1]: v for k, v in saved.items()}
    wanted = [n for n in params.keys() if is_base_parameter(n)]
    missing = [n for n in wanted if n not in arrays]
    if missing:
        raise PretrainedWeightsInvalid(
            f"{path}: not ImageNet weights for this base network: {len(missing)} of its "
            f"{len(wanted)} parameters are missing (first: {missing[:3]})"
        )
    for name in wanted:
        param, value = params[name], arrays[name]
        if tuple(param.shape) != tuple(value.shape):
            raise PretrainedWeightsInvalid(
                f"{path}: {name} has shape {tuple(value.shape)}, the network's is "
                f"{tuple(param.shape)}"
            )
        param.set_data(value.astype(param.dtype))
    return len(wanted)


__all__ = [
    "CHECKPOINTS",
    "PretrainedWeightsInvalid",
    "PretrainedWeightsMissing",
    "checkpoint_name",
    "find_checkpoint",
    "is_base_parameter",
    "load_checkpoint",
]
