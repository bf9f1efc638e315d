"""Serving a trained detector: SageMaker's request and response formats, an MLflow pyfunc
around the inference export, and batch prediction.

Modules: :mod:`.request` (image bytes in, prediction options), :mod:`.response` (the two
SageMaker response layouts), :mod:`.detector` (the one predict path: ``odp predict``, the
pyfunc and batch prediction all call :class:`~.detector.Detector`), :mod:`.pyfunc` (the
``mlflow.pyfunc.PythonModel``), :mod:`.mlflow_model` (logging it: artifacts, signature,
input example), :mod:`.batch` (``odp predict`` over folders, ``.rec``, manifests, s3://).
Importing the package imports neither MXNet nor MLflow.
"""

from __future__ import annotations

from .request import (
    ACCEPT_DEFAULT,
    ACCEPT_VERBOSE,
    PredictOptions,
    RequestError,
    decode_request_image,
)

__all__ = [
    "ACCEPT_DEFAULT",
    "ACCEPT_VERBOSE",
    "PredictOptions",
    "RequestError",
    "decode_request_image",
]
