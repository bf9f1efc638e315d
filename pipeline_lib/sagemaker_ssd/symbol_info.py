"""What a saved MXNet symbol is, read from its JSON alone (no MXNet, so a hostile file is
judged before MXNet parses it): which of the two model formats, and for SageMaker's graph
its base network and number of classes.

A ``sagemaker`` graph is MXNet ``example/ssd``'s: it names ``multibox_cls_pred``,
``multibox_loc_pred`` and ``multibox_anchors`` (the training symbol SageMaker saves, or
example/ssd's deploy symbol). A ``gluoncv`` graph is odp's GluonCV export (it ends in
``box_nms``). A SageMaker graph may use only the operators example/ssd's graphs are made of;
anything else (a custom operator, a file reader) is refused by name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .layout import BASES

GLUONCV = "gluoncv"
SAGEMAKER = "sagemaker"
FORMATS = (GLUONCV, SAGEMAKER)
MAX_NODES = 20_000  # example/ssd's ResNet-50 training graph has 544
MAX_CLASSES = 10_000
#: Every operator example/ssd's training and deploy graphs are made of (canonical names
#: and the aliases an older MXNet may have saved).
SAGEMAKER_OPS = frozenset(
    {
        "null",
        "Convolution",
        "Activation",
        "Pooling",
        "BatchNorm",
        "L2Normalization",
        "broadcast_mul",
        "transpose",
        "Flatten",
        "flatten",
        "Concat",
        "concat",
        "Reshape",
        "reshape",
        "_copy",
        "identity",
        "elemwise_add",
        "_plus",
        "_Plus",
        "elemwise_sub",
        "_minus",
        "_Minus",
        "elemwise_mul",
        "_mul",
        "_Mul",
        "smooth_l1",
        "MakeLoss",
        "make_loss",
        "SoftmaxOutput",
        "Softmax",
        "SoftmaxActivation",
        "softmax",
        "_contrib_MultiBoxPrior",
        "_contrib_MultiBoxTarget",
        "_contrib_MultiBoxDetection",
    }
)
HEAD_NAMES = ("multibox_cls_pred", "multibox_loc_pred", "multibox_anchors")
_TUPLE = re.compile(r"^\(([^()]*)\)$")


class SymbolError(ValueError):
    """A symbol that is not a usable detection graph; the message says what is wrong."""


@dataclass(frozen=True)
class GraphInfo:
    """A SageMaker graph's base network and number of classes (without background)."""

    base_network: str
    num_classes: int


def _nodes(symbol: Mapping[str, Any]) -> list[dict]:
    nodes = symbol.get("nodes") if isinstance(symbol, Mapping) else None
    if not isinstance(nodes, list) or not all(isinstance(n, dict) for n in nodes):
        raise SymbolError("not an MXNet symbol (no list of nodes)")
    if len(nodes) > MAX_NODES:
        raise SymbolError(f"{len(nodes)} nodes, above the {MAX_NODES} a detection graph has")
    return nodes


def symbol_format(symbol: Mapping[str, Any]) -> str:
    """``sagemaker`` when the graph names example/ssd's three heads, else ``gluoncv``."""
    names = {str(n.get("name")) for n in _nodes(symbol)}
    return SAGEMAKER if all(h in names for h in HEAD_NAMES) else GLUONCV


def _attrs(node: dict) -> dict[str, str]:
    attrs = node.get("attrs", node.get("attr", node.get("param", {})))
    return attrs if isinstance(attrs, dict) else {}


def _count(text: object) -> int:
    """Entries of a tuple attribute such as ``(0.1,0.141)``."""
    match = _TUPLE.match(str(text).strip())
    if not match or not match.group(1).strip():
        raise SymbolError(f"an anchor attribute {str(text)[:40]!r} is not a tuple of numbers")
    return len(match.group(1).split(","))


def describe(symbol: Mapping[str, Any]) -> GraphInfo:
    """Base network and class count of a SageMaker graph, checking its operators.

    The class count is what the first class predictor computes: its filters over the
    anchors per position of the ``MultiBoxPrior`` on the same layer, minus background."""
    nodes = _nodes(symbol)
    unknown = sorted({str(n.get("op")) for n in nodes} - SAGEMAKER_OPS)
    if unknown:
        raise SymbolError(
            f"operator {unknown[0]!r} is not part of SageMaker's SSD graph (example/ssd); "
            f"refusing to load it (unknown operators: {unknown[:5]})"
        )
    names = {str(n.get("name")): n for n in nodes}
    if "relu4_3" in names and "relu7" in names:
        base = "vgg-16"
    elif "bn_data" in names and "_plus15" in names:
        base = "resnet-50"
    else:
        raise SymbolError(
            f"the graph is neither SageMaker's {' nor '.join(BASES)} SSD (no relu4_3/relu7 "
            "or bn_data/_plus15 layers)"
        )
    first = "relu4_3" if base == "vgg-16" else "_plus12"
    source = "relu4_3_norm" if base == "vgg-16" else "_plus12"
    conv, prior = names.get(f"{first}_cls_pred_conv"), names.get(f"{first}_anchors")
    if conv is None or prior is None:
        raise SymbolError(f"the graph has no class predictor or anchors on {source}")
    try:
        filters = int(_attrs(conv).get("num_filter", ""))
    except ValueError:
        raise SymbolError(f"{first}_cls_pred_conv has no integer num_filter") from None
    per_position = _count(_attrs(prior).get("sizes")) - 1 + _count(_attrs(prior).get("ratios"))
    if per_position < 1 or filters % per_position or filters // per_position < 2:
        raise SymbolError(
            f"{first}_cls_pred_conv's {filters} filters do not fit {per_position} anchors per "
            "position and at least one class"
        )
    num_classes = filters // per_position - 1
    if num_classes > MAX_CLASSES:
        raise SymbolError(f"{num_classes} classes, above the {MAX_CLASSES} odp accepts")
    return GraphInfo(base, num_classes)


__all__ = [
    "FORMATS",
    "GLUONCV",
    "MAX_CLASSES",
    "SAGEMAKER",
    "SAGEMAKER_OPS",
    "HEAD_NAMES",
    "GraphInfo",
    "SymbolError",
    "describe",
    "symbol_format",
]
