"""Load a trained model artifact of either format and run detection, SageMaker-style.

A ``gluoncv`` artifact is run from its exported inference graph (``model_algo_1-symbol.json``
+ ``-0000.params``): no training code is needed. A ``sagemaker`` artifact holds example/ssd's
training graph: its inference is built on that graph's own heads, as example/ssd infers
(:func:`~pipeline_lib.sagemaker_ssd.graph.predictor_symbol`: pixels minus the mean pixels,
softmax, ``MultiBoxDetection``), after its weights are checked against it (every weight the
graph needs, of the shape it needs). Images are resized to ``image_shape`` squared and
normalised as the model was trained (in the graph, or on the host for a graph exported
before it did: :mod:`pipeline_lib.preprocessing`); boxes come back in the pixels of the
original image.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import mxnet as mx
import numpy as np

from .artifact import (
    HYPERPARAMS,
    PARAMS,
    SAGEMAKER,
    SYMBOL,
    ArtifactError,
    ModelConfig,
    error_summary,
    model_folder,
    read_model_config,
)
from .hyperparameters import HyperparameterError, parse_value
from .preprocessing import detections_in_pixels, normalized_batch, pixel_batch, takes_pixels


@dataclass
class Predictor:
    """A loaded detection network: ``predict_arrays`` for numpy images (requests and their
    formats: :mod:`pipeline_lib.serving`)."""

    net: mx.gluon.SymbolBlock
    image_shape: int
    classes: dict[int, str]
    hyperparameters: dict[str, str]
    ctx: mx.Context
    pixels_in: bool = False  # the graph takes uint8 pixels and normalises them itself
    symbol: dict = field(default_factory=dict, repr=False)  # the inference graph, parsed
    config: ModelConfig | None = None

    @classmethod
    def load(
        cls,
        path: str | Path,
        ctx: mx.Context | None = None,
        class_names: Mapping[int, str] | None = None,
    ) -> Predictor:
        """Load from ``model.tar.gz`` (either format), a folder holding it, or an unpacked
        artifact folder; ``class_names`` replace the model's own (or generated) names."""
        from . import storage

        ctx = ctx or (mx.gpu(0) if mx.context.num_gpus() else mx.cpu())
        with storage.local_file(path) as local, model_folder(local) as model_dir:
            config = read_model_config(model_dir, path, class_names)
            hp = config.hyperparameters
            try:
                image_shape = parse_value("image_shape", hp.get("image_shape", "300"))
            except HyperparameterError as exc:
                raise ArtifactError(f"{path}: {HYPERPARAMS}: {exc}") from None
            try:
                if config.format == SAGEMAKER:
                    net, symbol = _load_sagemaker(model_dir, path, hp, image_shape, ctx)
                else:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        net = mx.gluon.SymbolBlock.imports(
                            str(model_dir / SYMBOL), ["data"], str(model_dir / PARAMS), ctx=ctx
                        )
                    symbol = json.loads((model_dir / SYMBOL).read_text("utf-8"))
            except (mx.base.MXNetError, AssertionError, ValueError, KeyError) as exc:
                if isinstance(exc, ArtifactError):
                    raise
                first = error_summary(exc)
                raise ArtifactError(
                    f"{path}: the inference graph cannot be loaded: {first}"
                ) from None
        net.hybridize(static_alloc=True, static_shape=True)
        return cls(net, image_shape, config.classes, hp, ctx, takes_pixels(symbol), symbol, config)

    def _preprocess(self, images: list[np.ndarray]) -> mx.nd.NDArray:
        """The network's input for ``images`` (uint8 RGB): resized pixels, or for an older
        graph the normalised batch."""
        size = self.image_shape
        if not self.pixels_in:
            return mx.nd.array(normalized_batch(images, size), ctx=self.ctx)
        batch = pixel_batch(images, size)
        if self.ctx.device_type == "cpu":  # the network reads the fresh batch in place
            return mx.nd.from_numpy(batch, zero_copy=True)
        return mx.nd.array(batch, ctx=self.ctx, dtype=batch.dtype)

    def predict_arrays(
        self, images: list[np.ndarray], batch_size: int = 16, net: mx.gluon.Block | None = None
    ) -> list[np.ndarray]:
        """Detections per image: ``(N, 6)`` ``[class_id, score, xmin, ymin, xmax, ymax]`` pixels
        (``net``: a variant of the loaded network sharing its weights, e.g. another NMS)."""
        net = net or self.net
        out: list[np.ndarray] = []
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            ids, scores, boxes = net(self._preprocess(chunk))
            ids, scores, boxes = ids.asnumpy(), scores.asnumpy(), boxes.asnumpy()
            for i, img in enumerate(chunk):
                h, w = img.shape[:2]
                out.append(
                    detections_in_pixels(ids[i], scores[i], boxes[i], h, w, self.image_shape)
                )
        return out


def _load_sagemaker(
    model_dir: Path, path: object, hp: dict[str, str], image_shape: int, ctx: mx.Context
) -> tuple[mx.gluon.SymbolBlock, dict]:
    """example/ssd's inference on a SageMaker graph's own heads, behind the pixel input,
    with its ``arg:``/``aux:`` weights checked against it; ``(block, its graph parsed)``."""
    from .sagemaker_ssd.graph import MEAN_NAME, load_symbol, mean_pixels, predictor_symbol

    text = (model_dir / SYMBOL).read_text("utf-8")
    detection = [n for n in json.loads(text)["nodes"] if n.get("name") == "detection"]
    try:  # the NMS the model was saved with (its detection node), else its hyperparameter
        attrs = detection[0].get("attrs", {}) if detection else {}
        nms = parse_value(
            "nms_threshold", attrs.get("nms_threshold", hp.get("nms_threshold", "0.45"))
        )
    except HyperparameterError as exc:
        raise ArtifactError(f"{path}: {SYMBOL} / {HYPERPARAMS}: {exc}") from None
    saved = load_symbol(text)
    symbol = predictor_symbol(saved, image_shape, nms)
    weights = load_weights(model_dir / PARAMS, path)
    weights[MEAN_NAME] = mean_pixels()
    check_weights(symbol, weights, {"data": (1, image_shape, image_shape, 3)}, path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = mx.gluon.SymbolBlock(symbol, mx.sym.var("data", dtype="uint8"))
    net.collect_params().load_dict(weights, ctx=ctx, ignore_extra=True, cast_dtype=True)
    return net, json.loads(symbol.tojson())


def load_weights(params_file: Path, path: object) -> dict[str, mx.nd.NDArray]:
    """An ``arg:``/``aux:`` params file as ``{name: array}`` (prefixes dropped)."""
    try:
        saved = mx.nd.load(str(params_file))
    except mx.base.MXNetError as exc:
        first = (str(exc).strip().splitlines() or ["unreadable"])[0][:200]
        raise ArtifactError(f"{path}: {PARAMS} is not an MXNet params file ({first})") from None
    if not isinstance(saved, dict):
        raise ArtifactError(f"{path}: {PARAMS} holds no named weights")
    return {k.split(":", 1)[-1]: v for k, v in saved.items()}


def check_weights(
    symbol: mx.sym.Symbol,
    weights: Mapping[str, mx.nd.NDArray],
    inputs: Mapping[str, tuple[int, ...]],
    path: object,
) -> None:
    """Every weight ``symbol`` needs is in ``weights`` with the shape the graph gives it
    for ``inputs``; :class:`ArtifactError` names the first that is missing or wrong."""
    needed = [n for n in symbol.list_arguments() if n not in inputs]
    needed += symbol.list_auxiliary_states()
    missing = [n for n in needed if n not in weights]
    if missing:
        raise ArtifactError(
            f"{path}: {PARAMS} lacks {len(missing)} of the {len(needed)} weights the graph "
            f"needs (first: {missing[:3]})"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            args, _, aux = symbol.infer_shape(**inputs)
    except mx.base.MXNetError as exc:
        first = (str(exc).strip().splitlines() or ["?"])[0][:200]
        raise ArtifactError(f"{path}: the graph's shapes do not work out ({first})") from None
    names = symbol.list_arguments() + symbol.list_auxiliary_states()
    for name, shape in zip(names, list(args) + list(aux), strict=True):
        if name in inputs:
            continue
        if tuple(weights[name].shape) != tuple(shape):
            raise ArtifactError(
                f"{path}: {PARAMS}: {name} has shape {tuple(weights[name].shape)} but the "
                f"graph in {SYMBOL} needs {tuple(shape)}"
            )
