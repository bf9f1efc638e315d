"""The ONNX path (export up to box_nms, onnxruntime + numpy NMS) equals MXNet's detections."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import mxnet as mx
import numpy as np
import pytest

from pipeline_lib.artifact import ArtifactError
from pipeline_lib.inference import Predictor
from pipeline_lib.preprocessing import normalized_batch, pixel_batch
from pipeline_lib.serving.onnx_export import export_onnx
from pipeline_lib.serving.onnx_runtime import NmsParams, OnnxPredictor, box_nms

if TYPE_CHECKING:
    from conftest import LearnedModel

REPO = Path(__file__).resolve().parents[3]


def _rows(rng: np.random.Generator, kind: str, k: int = 300) -> np.ndarray:
    xy = rng.uniform(0, 100, (2, k, 2))
    wh = rng.uniform(-2 if kind == "inverted boxes" else 1, 40, (2, k, 2))
    ids = rng.integers(-1 if kind == "no-class rows" else 0, 3, (2, k, 1))
    if kind == "score ties":
        scores = rng.choice([0.0, 0.005, 0.01, 0.3, 0.5, 0.7], (2, k, 1))
    else:
        scores = rng.uniform(0, 1, (2, k, 1))
    return np.concatenate([ids, scores, xy, xy + wh], -1).astype(np.float32)


@pytest.mark.parametrize("kind", ["plain", "no-class rows", "score ties", "inverted boxes"])
@pytest.mark.parametrize("force_suppress", [False, True])
@pytest.mark.parametrize(("topk", "keep"), [(-1, -1), (50, -1), (400, 100)])
def test_box_nms_equals_mxnets(kind: str, force_suppress: bool, topk: int, keep: int) -> None:
    rng = np.random.default_rng([len(kind), int(force_suppress), topk + 1])
    for _ in range(3):
        data = _rows(rng, kind)
        ref = mx.nd.contrib.box_nms(
            mx.nd.array(data),
            overlap_thresh=0.45,
            topk=topk,
            valid_thresh=0.01,
            id_index=0,
            score_index=1,
            coord_start=2,
            force_suppress=force_suppress,
        ).asnumpy()
        if keep > 0:
            ref = ref[:, :keep]
        got = box_nms(data, NmsParams(0.45, topk, 0.01, force_suppress, keep))
        np.testing.assert_array_equal(got, ref)


def _images(training_data: Path) -> list[np.ndarray]:
    files = sorted(
        p for p in (training_data / "validation").iterdir() if p.suffix in (".jpg", ".png")
    )
    return [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in files]


def test_onnx_detections_equal_mxnets(learned_model: LearnedModel, tmp_path: Path) -> None:
    # A model that has learned: a 1-epoch one scores neighbouring anchors alike, and
    # scores equal up to float rounding may swap places in either runtime's sort, so NMS
    # keeps the other box of an overlapping pair.
    onnx_file = export_onnx(learned_model.tar, tmp_path / "model.onnx")
    ours, theirs = OnnxPredictor.load(onnx_file), Predictor.load(learned_model.tar)
    assert ours.classes == theirs.classes and ours.image_shape == theirs.image_shape
    images = _images(learned_model.dataset)
    assert images
    for img, got, ref in zip(
        images,
        ours.predict_arrays(images, batch_size=3),
        theirs.predict_arrays(images),
        strict=True,
    ):
        assert len(ref) > 0 and got.shape == ref.shape
        np.testing.assert_allclose(got[:, 1], ref[:, 1], rtol=0, atol=1e-4)  # both best first
        h, w = img.shape[:2]
        _assert_same_detections(got, ref, np.array([w, h, w, h], dtype=np.float32))


def _assert_same_detections(got: np.ndarray, ref: np.ndarray, scale: np.ndarray) -> None:
    """One-to-one: each reference row has its own row of the same class, score within 1e-4
    and box (as a fraction of the image) within 1e-4. Rows whose scores tie up to float
    rounding may come in either order."""
    free = np.ones(len(got), dtype=bool)
    for row in ref:
        close = (
            free
            & (got[:, 0] == row[0])
            & (np.abs(got[:, 1] - row[1]) <= 1e-4)
            & (np.abs(got[:, 2:] - row[2:]) / scale <= 1e-4).all(axis=1)
        )
        assert close.any(), f"no ONNX detection matches MXNet's {row.tolist()}"
        free[np.flatnonzero(close)[0]] = False


def test_an_older_export_takes_the_normalised_batch(
    tiny_model: Path, legacy_model: Path, training_data: Path, tmp_path: Path
) -> None:
    new = OnnxPredictor.load(export_onnx(tiny_model, tmp_path / "new.onnx"))
    old = OnnxPredictor.load(export_onnx(legacy_model, tmp_path / "old.onnx"))
    assert new.pixels_in and not old.pixels_in
    images = _images(training_data)
    size = new.image_shape
    got, ref = new.raw(pixel_batch(images, size)), old.raw(normalized_batch(images, size))
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4)


def test_a_file_that_is_not_an_odp_export_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ArtifactError, match=r"model\.onnx: the ONNX model cannot be loaded"):
        OnnxPredictor.load(bad)


def test_onnx_serving_runs_where_mxnet_cannot_be_imported(
    tiny_model: Path, training_data: Path, tmp_path: Path
) -> None:
    onnx_file = export_onnx(tiny_model, tmp_path / "model.onnx")
    image = sorted((training_data / "validation").glob("*.jpg"))[0]
    script = (
        "import sys, cv2, numpy as np\n"
        "sys.modules['mxnet'] = None  # any import of MXNet now fails\n"
        "from pipeline_lib.serving.onnx_runtime import OnnxPredictor\n"
        f"det = OnnxPredictor.load({str(onnx_file)!r}).predict_arrays([cv2.imread({str(image)!r})])"
        "[0]\n"
        f"np.save({str(tmp_path / 'det.npy')!r}, det)\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(  # noqa: S603  test-built argv, no shell
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    expected = OnnxPredictor.load(onnx_file).predict_arrays([cv2.imread(str(image))])[0]
    np.testing.assert_array_equal(np.load(tmp_path / "det.npy"), expected)
