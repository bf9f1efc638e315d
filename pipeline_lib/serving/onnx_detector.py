"""The :class:`~.detector.Detector` over onnxruntime: the same requests and answers, no MXNet.

:class:`OnnxDetector` is a :class:`~.detector.Detector` whose network is an
:class:`~.onnx_runtime.OnnxPredictor`: decoding, the options (threshold, max detections),
the response layouts and the errors are the detector's own code; another NMS threshold is
the exported NMS (``box_nms`` or SageMaker's ``MultiBoxDetection``) with its IoU threshold
changed (NMS runs in numpy, so that is exact, as the MXNet graph variant is). A model carries its ONNX export as
:data:`ONNX_FILE` beside the artifact files (``odp serve --runtime onnx`` writes one when it
is missing and MXNet is there to export it).
"""

from __future__ import annotations

import os
from collections import OrderedDict

import numpy as np

from .detector import Detector
from .onnx_runtime import OnnxPredictor

#: The ONNX export's file name in a model folder (beside ``model_algo_1-symbol.json``).
ONNX_FILE = "model.onnx"


class _Network:
    """What :class:`~.detector.Detector` calls on its predictor, over an OnnxPredictor: the
    "network variant" it passes is the NMS IoU threshold to use."""

    config = None  # no archive behind it: the export carries its class names

    def __init__(self, onnx: OnnxPredictor):
        self.onnx = onnx
        self.image_shape = onnx.image_shape
        self.classes = onnx.classes

    def predict_arrays(
        self, images: list[np.ndarray], batch_size: int = 16, net: float | None = None
    ) -> list[np.ndarray]:
        return self.onnx.predict_arrays(images, batch_size, nms_threshold=net)


class OnnxDetector(Detector):
    """A loaded ONNX export answering requests (see the module docstring)."""

    def __init__(self, onnx: OnnxPredictor):  # noqa: D107  (the parent's state, no symbol)
        self.predictor = _Network(onnx)
        self._symbol = {}
        self.default_nms = onnx.default_nms
        self._variants: OrderedDict[float, object] = OrderedDict()

    @classmethod
    def load(cls, path: str | os.PathLike, threads: int | None = None) -> OnnxDetector:  # type: ignore[override]
        """From an ONNX file (``threads``: onnxruntime's intra-op threads)."""
        return cls(OnnxPredictor.load(path, threads))

    def _net(self, nms: float | None) -> float | None:
        if nms is None or abs(nms - self.default_nms) < 1e-9:
            return None
        return round(float(nms), 6)


__all__ = ["ONNX_FILE", "OnnxDetector"]
