"""The one prediction path: request image bytes -> SageMaker response, with options.

``odp predict``, batch prediction and the MLflow pyfunc all call :class:`Detector`. It
wraps :class:`~pipeline_lib.inference.Predictor` (the exported inference graph, with NMS)
and adds what a request may ask for: a score threshold, fewer boxes, and another NMS IoU
threshold. The NMS threshold is an attribute of the inference graph's NMS node (GluonCV's
``box_nms``, SageMaker's ``MultiBoxDetection``), so a different one is the same graph with
that attribute changed, sharing the weights (exact, not a second NMS pass over the first
one's survivors); a few such variants are cached. Models of either format answer alike.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Mapping, Sequence

import numpy as np

from ..artifact import SYMBOL, ArtifactError
from .request import MAX_DETECTIONS, PredictOptions, RequestImage, decode_request_image
from .response import default_response, verbose_response

#: the NMS operator of each format's inference graph -> its IoU threshold attribute
_NMS_ATTRS = {"_contrib_box_nms": "overlap_thresh", "_contrib_MultiBoxDetection": "nms_threshold"}
_MAX_VARIANTS = 4


class Detector:
    """A loaded model answering requests (see the module docstring)."""

    def __init__(self, predictor, symbol: dict | str | None = None):
        self.predictor = predictor
        if symbol is None:
            symbol = predictor.symbol
        self._symbol = json.loads(symbol) if isinstance(symbol, str) else symbol
        self.default_nms = _nms_threshold(self._symbol)
        self._variants: OrderedDict[float, object] = OrderedDict()

    @classmethod
    def load(
        cls, path: str | os.PathLike, class_names: Mapping[int, str] | None = None
    ) -> Detector:
        """From ``model.tar.gz`` of either format (local or s3://), a folder holding it, or
        an unpacked artifact folder (an MLflow pyfunc's artifacts); ``class_names`` replace
        the model's own."""
        from ..inference import Predictor

        return cls(Predictor.load(path, class_names=class_names))

    @property
    def note(self) -> str | None:
        """A line for the user about the model (its class names were generated), or None."""
        config = getattr(self.predictor, "config", None)
        return config.note if config is not None else None

    @property
    def classes(self) -> dict[int, str]:
        """The model's class map."""
        return self.predictor.classes

    def _net(self, nms: float | None):
        if nms is None or self.default_nms is None or abs(nms - self.default_nms) < 1e-9:
            return self.predictor.net
        key = round(float(nms), 6)
        if key in self._variants:
            self._variants.move_to_end(key)
            return self._variants[key]
        import warnings

        import mxnet as mx

        graph = json.loads(json.dumps(self._symbol))
        for node in graph["nodes"]:
            if node.get("op") in _NMS_ATTRS:
                node.setdefault("attrs", {})[_NMS_ATTRS[node["op"]]] = repr(key)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net = mx.gluon.SymbolBlock(
                mx.sym.load_json(json.dumps(graph)),
                mx.sym.var("data"),
                params=self.predictor.net.collect_params(),
            )
        net.hybridize(static_alloc=True, static_shape=True)
        self._variants[key] = net
        while len(self._variants) > _MAX_VARIANTS:
            self._variants.popitem(last=False)
        return net

    def detect(self, images: Sequence[RequestImage], options: PredictOptions) -> list[np.ndarray]:
        """``(N, 6)`` ``[class_id, score, xmin, ymin, xmax, ymax]`` per image, in the
        original image's pixels, filtered by the options (best first)."""
        net = self._net(options.nms_threshold)
        raw = self.predictor.predict_arrays([im.pixels for im in images], net=net)
        out = []
        for im, det in zip(images, raw, strict=True):
            h, w = im.pixels.shape[:2]
            det = det[det[:, 1] >= options.threshold]
            det = det[np.argsort(-det[:, 1], kind="stable")][: options.max_detections]
            if (w, h) != (im.width, im.height):  # decoded reduced: back to original pixels
                det = det.copy()
                det[:, (2, 4)] *= im.width / w
                det[:, (3, 5)] *= im.height / h
            out.append(det)
        return out

    def respond(self, det: np.ndarray, image: RequestImage, options: PredictOptions) -> dict:
        """The response for one image in the layout the options ask for."""
        if options.verbose:
            return verbose_response(det, image.width, image.height, self.classes)
        return default_response(det, image.width, image.height)

    def predict(
        self,
        images: Sequence[bytes],
        options: PredictOptions | None = None,
        names: Sequence[str] | None = None,
    ) -> list[dict]:
        """SageMaker responses for encoded images (one dict each, in order).

        Raises:
            RequestError: an image cannot be used; the message names it (``names[i]`` or
                ``image i``).
        """
        options = options or PredictOptions()
        names = names or [f"image {i}" for i in range(len(images))]
        size = self.predictor.image_shape
        decoded = [
            decode_request_image(data, name, size) for data, name in zip(images, names, strict=True)
        ]
        detections = self.detect(decoded, options)
        return [self.respond(d, im, options) for d, im in zip(detections, decoded, strict=True)]


def _nms_threshold(symbol: dict) -> float | None:
    """The IoU threshold of the graph's NMS node (either format), ``None`` without one."""
    for node in symbol.get("nodes", []):
        attr = _NMS_ATTRS.get(node.get("op"))
        if attr is not None:
            try:
                return float(node.get("attrs", {}).get(attr, "nan"))
            except ValueError:
                raise ArtifactError(f"{SYMBOL}: {node['op']} has an unreadable {attr}") from None
    return None


__all__ = ["MAX_DETECTIONS", "Detector"]
