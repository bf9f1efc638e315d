"""Export a trained model's inference graph, up to its NMS, to ONNX (MXNet's exporter).

The network runs in ``onnxruntime``; its ``box_nms`` (which ONNX has no exact equivalent of)
and the slice after it run in numpy (:mod:`pipeline_lib.serving.onnx_runtime`), with the
attributes written into the file's metadata. For SageMaker's graph the file ends at the
class probabilities and box offsets, with the anchors as a constant output, and numpy runs
``MultiBoxDetection`` (:mod:`pipeline_lib.sagemaker_ssd.detection`) — what SageMaker's own
users cannot export: its training graph's ``MultiBoxTarget`` has no ONNX form. Opset 13: the newest MXNet 1.9's exporter
translates to (it would otherwise stamp the installed onnx's newest opset on opset-13 nodes).
A graph that normalises its input itself (:func:`~pipeline_lib.preprocessing.takes_pixels`)
keeps doing so in ONNX: its input is then ``(N, S, S, 3)`` uint8 pixels.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

from ..artifact import PARAMS, SAGEMAKER, SYMBOL, ArtifactError, model_folder, read_model_config
from ..hyperparameters import parse_value
from ..preprocessing import takes_pixels
from .onnx_runtime import METADATA_KEY, NmsParams

OPSET = 13
_NMS_OP = "_contrib_box_nms"


def _nms_params(nodes: list[dict], path: object) -> tuple[int, NmsParams]:
    """The ``box_nms`` node's index and attributes, and the rows the slice after it keeps."""
    found = [i for i, n in enumerate(nodes) if n.get("op") == _NMS_OP]
    if len(found) != 1:
        raise ArtifactError(f"{path}: {SYMBOL}: expected one box_nms node, found {len(found)}")
    index = found[0]
    attrs = nodes[index].get("attrs", {})
    if (
        (attrs.get("id_index", "0"), attrs.get("score_index", "0"), attrs.get("coord_start"))
        != (
            "0",
            "1",
            "2",
        )
        or attrs.get("in_format", "corner") != "corner"
        or attrs.get("background_id", "-1") != "-1"
    ):
        raise ArtifactError(f"{path}: {SYMBOL}: box_nms has a row layout this export does not know")
    keep = -1
    for node in nodes[index + 1 :]:
        a = node.get("attrs", {})
        if (
            node.get("op") == "slice_axis"
            and node["inputs"][0][0] == index
            and a.get("axis") == "1"
        ):
            if a.get("begin", "0") != "0":
                raise ArtifactError(f"{path}: {SYMBOL}: the post-NMS slice does not start at 0")
            keep = int(a["end"])
    return index, NmsParams(
        overlap_thresh=float(attrs.get("overlap_thresh", "0.5")),
        topk=int(attrs.get("topk", "-1")),
        valid_thresh=float(attrs.get("valid_thresh", "0")),
        force_suppress=attrs.get("force_suppress", "False") in ("True", "true", "1"),
        keep=keep,
    )


def _match_batchnorms(nodes: list[dict], params: dict) -> None:
    """Make the exporter's ``BatchNormalization`` compute what MXNet's ``BatchNorm`` does.

    * ``fix_gamma`` (MXNet's default) means gamma = 1; the exporter passes the stored one.
    * A channel whose moving variance is below ``-eps`` (a short training run can leave
      one) is NaN in MXNet, which the following ReLU turns into 0 (MXNet's ``relu`` maps NaN
      to 0, ONNX's ``Relu`` keeps it): when every consumer is a ReLU, that channel becomes
      an exact 0 (gamma = beta = mean = 0, variance 1).
    """
    import mxnet as mx

    consumers: dict[int, list[dict]] = {}
    for node in nodes:
        for src in node.get("inputs", []):
            consumers.setdefault(src[0], []).append(node)
    for index, node in enumerate(nodes):
        if node.get("op") != "BatchNorm":
            continue
        attrs = node.get("attrs", {})
        gamma, beta, mean, var = (nodes[i[0]]["name"] for i in node["inputs"][1:5])
        if not all(n in params for n in (gamma, beta, mean, var)):
            continue
        if attrs.get("fix_gamma", "True") in ("True", "true", "1"):
            params[gamma] = mx.nd.ones_like(params[gamma])
        eps = float(attrs.get("eps", "0.001"))
        dead = params[var].asnumpy() + eps < 0
        relu_only = all(
            c.get("op") == "Activation" and c.get("attrs", {}).get("act_type") == "relu"
            for c in consumers.get(index, [])
        )
        if dead.any() and relu_only:
            for name, value in ((gamma, 0.0), (beta, 0.0), (mean, 0.0), (var, 1.0)):
                arr = params[name].asnumpy().copy()
                arr[dead] = value
                params[name] = mx.nd.array(arr, dtype=arr.dtype)


def export_onnx(
    model: str | os.PathLike,
    out: str | os.PathLike,
    class_names: dict[int, str] | None = None,
) -> Path:
    """Write ``out`` (an ONNX file) from ``model`` (``model.tar.gz`` of either format, a
    folder holding it, or an unpacked artifact folder); ``class_names`` replace the
    model's."""
    import mxnet as mx

    from .. import storage

    with storage.local_file(model) as local, model_folder(Path(local)) as folder:
        config = read_model_config(folder, model, class_names)
        symbol_json = (folder / SYMBOL).read_text(encoding="utf-8")
        saved = mx.nd.load(str(folder / PARAMS))
    size = parse_value("image_shape", config.hyperparameters.get("image_shape", "300"))
    params = {k.split(":", 1)[-1]: v for k, v in saved.items()}
    if config.format == SAGEMAKER:
        graph, meta = _sagemaker_graph(symbol_json, params, size, model)
    else:
        graph, meta = _gluoncv_graph(symbol_json, params, size, model)
    from onnx import helper

    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    meta = {
        **meta,
        "image_shape": size,
        "classes": {str(k): v for k, v in config.classes.items()},
    }
    helper.set_model_props(onnx_model, {METADATA_KEY: json.dumps(meta)})
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(onnx_model.SerializeToString())
    return out


def _convert(sym, params: dict, shape: tuple, in_type):
    """MXNet's exporter on ``sym`` (dynamic batch)."""
    from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return MXNetGraph().create_onnx_graph_proto(
            sym,
            params,
            in_shapes=[(1, *shape)],
            in_types=[in_type],
            opset_version=OPSET,
            dynamic=True,
            dynamic_input_shapes=[(None, *shape)],
        )


def _gluoncv_graph(symbol_json: str, params: dict, size: int, model: object):
    """odp's GluonCV export up to its ``box_nms``; the NMS attributes as metadata."""
    import mxnet as mx
    from onnx import TensorProto

    graph_json = json.loads(symbol_json)
    nodes = graph_json["nodes"]
    index, nms = _nms_params(nodes, model)
    source = nodes[index]["inputs"][0]
    head = nodes[source[0]]["name"] + "_output"
    sym = mx.sym.load_json(symbol_json).get_internals()[head]
    _match_batchnorms(nodes, params)
    if takes_pixels(graph_json):
        shape, in_type = (size, size, 3), TensorProto.UINT8
    else:
        shape, in_type = (3, size, size), TensorProto.FLOAT
    return _convert(sym, params, shape, in_type), {"nms": nms.to_json()}


def _sagemaker_graph(symbol_json: str, params: dict, size: int, model: object):
    """SageMaker's graph behind the pixel input, up to its class probabilities and box
    offsets; its anchors (fixed for the input size) as a constant output; the
    ``MultiBoxDetection`` attributes as metadata (numpy decodes and suppresses)."""
    from onnx import TensorProto, helper, numpy_helper

    from ..sagemaker_ssd.detection import MultiBoxParams
    from ..sagemaker_ssd.graph import (
        MEAN_NAME,
        anchors_for,
        load_symbol,
        mean_pixels,
        scores_symbol,
    )

    saved = load_symbol(symbol_json)
    detection = [n for n in json.loads(symbol_json)["nodes"] if n.get("name") == "detection"]
    attrs = detection[0].get("attrs", {}) if detection else {}
    multibox = MultiBoxParams(nms_threshold=float(attrs.get("nms_threshold", "0.45")), nms_topk=400)
    graph_json = json.loads(symbol_json)
    _match_batchnorms(graph_json["nodes"], params)
    params = {**params, MEAN_NAME: mean_pixels()}
    graph = _convert(scores_symbol(saved), params, (size, size, 3), TensorProto.UINT8)
    anchors = anchors_for(saved, size)
    graph.initializer.append(numpy_helper.from_array(anchors, "odp_anchors_value"))
    graph.node.append(helper.make_node("Identity", ["odp_anchors_value"], ["anchors"]))
    graph.output.append(
        helper.make_tensor_value_info("anchors", TensorProto.FLOAT, list(anchors.shape))
    )
    return graph, {"format": SAGEMAKER, "multibox": multibox.to_json()}


__all__ = ["OPSET", "export_onnx"]
