"""Request pixels -> network input, network boxes -> pixels: shared by every runtime.

No MXNet here, so the ONNX runtime (:mod:`pipeline_lib.serving.onnx_runtime`) and the
MXNet :class:`~pipeline_lib.inference.Predictor` preprocess and scale back identically.

An inference graph exported by this version normalises in the graph itself: it takes the
resized RGB pixels, ``(N, size, size, 3)`` uint8 (:func:`pixel_batch`), and its first nodes
(named ``odp_pixels_...``: :func:`takes_pixels`) cast them to float32, transpose them to
NCHW and compute ``(x - MEAN) / STD``, the float32 operations :func:`normalized_batch`
does on the host for an older graph, which takes that ``(N, 3, size, size)`` batch.
"""

from __future__ import annotations

from collections.abc import Mapping

import cv2
import numpy as np

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32) * 255
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32) * 255
PIXEL_INPUT_PREFIX = "odp_pixels_"  # the names of the in-graph preprocessing's nodes


def takes_pixels(symbol: Mapping) -> bool:
    """Whether an exported graph (its ``-symbol.json``, parsed) takes resized uint8 RGB
    pixels (:func:`pixel_batch`) rather than a normalised batch (:func:`normalized_batch`)."""
    return any(
        str(node.get("name", "")).startswith(PIXEL_INPUT_PREFIX) for node in symbol.get("nodes", [])
    )


def resized(img: np.ndarray, size: int) -> np.ndarray:
    """``img`` at ``size`` squared (bilinear); an image already that size as it is."""
    if img.shape[:2] == (size, size):
        return img  # what cv2.resize would copy
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR)


def pixel_batch(images: list[np.ndarray], size: int) -> np.ndarray:
    """``(N, size, size, 3)`` uint8: each image (uint8 RGB) resized to ``size`` squared."""
    batch = np.empty((len(images), size, size, 3), dtype=np.uint8)
    for i, img in enumerate(images):
        if img.dtype != np.uint8:
            raise ValueError(f"image {i}: {img.dtype} pixels: expected uint8")
        batch[i] = resized(img, size)
    return batch


def normalized_batch(images: list[np.ndarray], size: int) -> np.ndarray:
    """``(N, 3, size, size)`` float32: each image resized to ``size`` squared, normalised
    as in training."""
    batch = np.empty((len(images), 3, size, size), dtype=np.float32)
    for i, img in enumerate(images):
        batch[i] = ((resized(img, size).astype(np.float32) - MEAN) / STD).transpose(2, 0, 1)
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
