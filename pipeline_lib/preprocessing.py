"""Request pixels -> network input, network boxes -> pixels: shared by every runtime.

No MXNet here, so the ONNX runtime (:mod:`pipeline_lib.serving.onnx_runtime`) and the
MXNet :class:`~pipeline_lib.inference.Predictor` preprocess and scale back identically.
"""

from __future__ import annotations

import cv2
import numpy as np

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32) * 255
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32) * 255


def normalized_batch(images: list[np.ndarray], size: int) -> np.ndarray:
    """``(N, 3, size, size)`` float32: each image resized to ``size`` squared, normalised
    as in training."""
    batch = np.empty((len(images), 3, size, size), dtype=np.float32)
    for i, img in enumerate(images):
        resized = cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR)
        batch[i] = ((resized.astype(np.float32) - MEAN) / STD).transpose(2, 0, 1)
    return batch


def detections_in_pixels(
    ids: np.ndarray, scores: np.ndarray, boxes: np.ndarray, height: int, width: int, size: int
) -> np.ndarray:
    """One image's network outputs (``ids``/``scores`` ``(K, 1)``, ``boxes`` ``(K, 4)`` in
    input pixels, ``id < 0`` = padding) -> ``(N, 6)`` ``[class_id, score, xmin, ymin,
    xmax, ymax]`` in the image's pixels."""
    keep = ids[:, 0] >= 0
    b = boxes[keep].copy()
    b[:, (0, 2)] = np.clip(b[:, (0, 2)] * width / size, 0, width)
    b[:, (1, 3)] = np.clip(b[:, (1, 3)] * height / size, 0, height)
    return np.column_stack([ids[keep, 0], scores[keep, 0], b])
