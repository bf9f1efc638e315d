"""pipeline_lib.inference: a new export normalises in its graph, an older one on the host;
both predict the same."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from pipeline_lib.images import decode_rgb
from pipeline_lib.inference import Predictor


def _images(training_data: Path, size: int) -> list[np.ndarray]:
    files = sorted((training_data / "validation").glob("*.jpg"))
    images = [decode_rgb(p.read_bytes()) for p in files]
    assert images and all(im.shape[:2] != (size, size) for im in images)
    return [*images, cv2.resize(images[0], (size, size))]  # one needs no resize


def test_the_graph_normalises_as_the_host_did(
    tiny_model: Path, legacy_model: Path, training_data: Path
) -> None:
    new, old = Predictor.load(tiny_model), Predictor.load(legacy_model)
    assert new.pixels_in and not old.pixels_in
    size = new.image_shape
    images = _images(training_data, size)
    assert images[-1].shape[:2] == (size, size)
    inputs = new._preprocess(images), old._preprocess(images)
    assert inputs[0].dtype == np.uint8 and inputs[0].shape == (len(images), size, size, 3)
    assert inputs[1].dtype == np.float32 and inputs[1].shape == (len(images), 3, size, size)
    # the same weights, the same float32 normalisation in the graph or on the host: the
    # same outputs, bit for bit
    for got, ref in zip(new.net(inputs[0]), old.net(inputs[1]), strict=True):
        np.testing.assert_array_equal(got.asnumpy(), ref.asnumpy())
    for got, ref in zip(new.predict_arrays(images), old.predict_arrays(images), strict=True):
        np.testing.assert_array_equal(got, ref)
