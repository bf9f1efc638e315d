"""SageMaker's two response layouts for one image's detections.

* ``application/json``: ``{"prediction": [[class_id, score, xmin, ymin, xmax, ymax], ...]}``
  with corners normalised to [0, 1] by the image's width and height;
* ``application/json;annotation=1``: the image+JSON annotation layout (``image_size``,
  ``annotations`` with ``class_id, score, left, top, width, height`` in pixels) plus the
  class names as ``categories``: the detection-file layout ``odp map`` reads.

:func:`response_body` is the one encoding of either as bytes: what ``odp serve`` answers and
``odp predict --sagemaker-output`` writes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np

from ..annotations import detections_json


def default_response(detections: np.ndarray, width: int, height: int) -> dict:
    """``{"prediction": [...]}`` for ``(N, 6)`` pixel detections on a ``width x height`` image."""
    norm = np.asarray(detections, dtype=np.float64).reshape(-1, 6).copy()
    norm[:, (2, 4)] /= width
    norm[:, (3, 5)] /= height
    return {"prediction": norm.tolist()}  # float64 -> Python floats, as float(v) each


def verbose_response(
    detections: np.ndarray, width: int, height: int, classes: Mapping[int, str]
) -> dict:
    """The ``annotation=1`` layout, with ``categories`` naming the model's classes."""
    return {
        **detections_json(np.asarray(detections).reshape(-1, 6), width, height),
        "categories": [{"class_id": k, "name": v} for k, v in sorted(classes.items())],
    }


def response_body(response: Mapping) -> bytes:
    """The HTTP body of one response: compact JSON, UTF-8 (one line)."""
    return json.dumps(response, separators=(",", ":")).encode()
