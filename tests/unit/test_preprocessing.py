"""pipeline_lib.preprocessing: resized pixels, the normalised batch, which one a graph takes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipeline_lib.preprocessing import (
    MEAN,
    STD,
    normalized_batch,
    pixel_batch,
    resized,
    takes_pixels,
)


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_resized_is_cv2s_bilinear_resize_and_skips_a_same_size_image() -> None:
    img = _image(37, 53)
    expected = cv2.resize(img, (32, 32), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(resized(img, 32), expected)
    square = _image(32, 32, seed=1)
    assert resized(square, 32) is square
    np.testing.assert_array_equal(
        cv2.resize(square, (32, 32), interpolation=cv2.INTER_LINEAR), square
    )


def test_pixel_and_normalized_batches_hold_the_same_resized_pixels() -> None:
    images = [_image(37, 53), _image(32, 32, seed=1)]
    pixels = pixel_batch(images, 32)
    assert pixels.shape == (2, 32, 32, 3) and pixels.dtype == np.uint8
    norm = normalized_batch(images, 32)
    assert norm.shape == (2, 3, 32, 32) and norm.dtype == np.float32
    expected = ((pixels.astype(np.float32) - MEAN) / STD).transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(norm, expected)
    with pytest.raises(ValueError, match="image 1: float32 pixels: expected uint8"):
        pixel_batch([images[0], images[1].astype(np.float32)], 32)


def test_a_graph_takes_pixels_when_it_begins_with_the_normalisation() -> None:
    legacy = {"nodes": [{"op": "null", "name": "data"}, {"op": "Convolution", "name": "c0"}]}
    assert not takes_pixels(legacy)
    assert not takes_pixels({})
    ours = {"nodes": [{"op": "null", "name": "data"}, {"op": "Cast", "name": "odp_pixels_cast0"}]}
    assert takes_pixels(ours)
