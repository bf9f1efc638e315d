"""The MLflow pyfunc: a DataFrame of image bytes in, one SageMaker response per row out.

``mlflow.pyfunc.load_model(...).predict(df, params={...})`` and ``mlflow models serve``
(whose scoring server base64-decodes the ``binary`` column) both end in
:meth:`DetectorModel.predict`, which calls the same :class:`~.detector.Detector` as
``odp predict``. A request that cannot be answered is an ``MlflowException`` with
``INVALID_PARAMETER_VALUE``, which the scoring server answers with HTTP 400.
"""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc

from .request import PredictOptions, RequestError, image_bytes

IMAGE_COLUMN = "image"
_MAX_OPTIONS = 64


def _rows(model_input: Any) -> list[Any]:
    """The request's images: a DataFrame's ``image`` column (or its only column), a list,
    or a single image."""
    import pandas as pd

    if isinstance(model_input, pd.DataFrame):
        if IMAGE_COLUMN in model_input.columns:
            return list(model_input[IMAGE_COLUMN])
        if len(model_input.columns) == 1:
            return list(model_input.iloc[:, 0])
        raise RequestError(
            f"columns {list(model_input.columns)}: expected one column {IMAGE_COLUMN!r} "
            "of image bytes"
        )
    if isinstance(model_input, pd.Series):
        return list(model_input)
    if isinstance(model_input, dict) and IMAGE_COLUMN in model_input:
        value = model_input[IMAGE_COLUMN]
        return list(value) if isinstance(value, list | tuple) else [value]
    if isinstance(model_input, list | tuple):
        return list(model_input)
    return [model_input]


class DetectorModel(mlflow.pyfunc.PythonModel):
    """SSD detector as a pyfunc; the artifacts are the inference export (symbol + params),
    ``class_map.json``, ``hyperparams.json`` and the original ``model.tar.gz``."""

    def load_context(self, context) -> None:
        """Load the inference export from the model's artifacts folder. In a process that
        has not imported MXNet yet (``mlflow models serve``, a fresh ``load_model``), its
        operators get every usable CPU first, as ``odp predict`` gives them."""
        import sys
        from pathlib import Path

        if "mxnet" not in sys.modules:
            from ..cpus import size_compute_threads

            size_compute_threads()
        from .detector import Detector

        self.detector = Detector.load(Path(context.artifacts["symbol"]).parent)
        self._options: dict[tuple, PredictOptions] = {}

    def options(self, params: dict[str, Any] | None) -> PredictOptions:
        """The options ``params`` ask for; MLflow fills in the signature's defaults, so the
        same few sets recur: the parsed ones are kept (a few dozen at most)."""
        try:
            key = tuple(sorted((params or {}).items()))
            cached = self._options.get(key)
        except TypeError:  # an unhashable value: parse it (and fail) every time
            return PredictOptions.from_params(params)
        if cached is None:
            cached = PredictOptions.from_params(params)
            if len(self._options) < _MAX_OPTIONS:
                self._options[key] = cached
        return cached

    def predict(self, context, model_input, params: dict[str, Any] | None = None) -> list[dict]:  # noqa: ARG002  pyfunc's signature
        """One SageMaker response per input image (``params``: ``threshold``,
        ``max_detections``, ``nms_threshold``, ``accept``)."""
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

        try:
            options = self.options(params)
            rows = _rows(model_input)
            names = [f"row {i} ({IMAGE_COLUMN})" for i in range(len(rows))]
            images = [image_bytes(v, n) for v, n in zip(rows, names, strict=True)]
            return self.detector.predict(images, options, names)
        except RequestError as exc:
            raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from None
