"""A model trained by SageMaker (its model.tar.gz: example/ssd's training graph, arg:/aux:
weights, hyperparams.json, no class map), as the test generator writes one, goes through
every path a model goes in: `odp predict` equals a direct MXNet forward of its own graph
(example/ssd's inference), evaluation, the MLflow pyfunc, the ONNX export; broken archives
are one line and exit 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import cv2
import mxnet as mx
import numpy as np
import pytest
import sagemaker_models

from pipeline_lib.serving.detector import Detector
from pipeline_lib.serving.request import PredictOptions

RACCOON = Path(__file__).resolve().parents[4] / "shared" / "datasets" / "raccoon" / "images"
ODP = [sys.executable, "-m", "pipeline_lib.cli"]


def soft_artifact(dest: Path, base: str, shape: int, classes: int, **kw) -> Path:
    """A SageMaker artifact whose class scores are spread (random weights scaled down), so
    that detections have distinct scores and a stable order."""
    symbol = sagemaker_models.training_symbol(base, shape, classes)
    params = sagemaker_models.initial_params(symbol, shape, seed=3)
    for name in params:
        if "_cls_pred_conv_weight" in name:
            params[name] = params[name] * 0.02
    return sagemaker_models.write_artifact(dest, base, shape, classes, params=params, **kw)


@pytest.fixture(scope="module", params=[("vgg-16", 300), ("resnet-50", 512)], ids=str)
def sagemaker_tar(request, tmp_path_factory) -> Path:
    base, shape = request.param
    return soft_artifact(tmp_path_factory.mktemp(f"sagemaker-{base}"), base, shape, 2)


@pytest.fixture(scope="module")
def images(training_data: Path, tmp_path_factory) -> Path:
    """A few real JPEGs: synthetic ones, and raccoon photos when ../shared has them."""
    folder = tmp_path_factory.mktemp("images")
    for path in sorted((training_data / "validation").iterdir())[:2]:
        (folder / path.name).write_bytes(path.read_bytes())
    if RACCOON.is_dir():
        for path in sorted(RACCOON.glob("*.jpg"))[:2]:
            (folder / path.name).write_bytes(path.read_bytes())
    return folder


def _rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def _run(*args: str, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    return subprocess.run(  # noqa: S603  our own CLI, argv built by this test
        [*ODP, *args], capture_output=True, text=True, env=env, **kw
    )


def test_odp_predict_equals_a_forward_of_sagemakers_own_graph(
    sagemaker_tar: Path, images: Path
) -> None:
    result = _run("predict", str(sagemaker_tar), str(images), timeout=300)
    assert result.returncode == 0, result.stderr
    # a SageMaker job's archive names no classes: said once, on stderr
    assert result.stderr.count("the model has no class names") == 1, result.stderr
    answers = {json.loads(line)["file"]: json.loads(line) for line in result.stdout.splitlines()}
    paths = sorted(images.iterdir())
    reference = sagemaker_models.reference_detections(sagemaker_tar, [_rgb(p) for p in paths])
    for path, rows in zip(paths, reference, strict=True):
        got = np.array(answers[path.name]["prediction"]).reshape(-1, 6)
        assert len(got) == min(100, len(rows)) > 0
        want = rows[: len(got)]
        assert np.array_equal(got[:, 0], want[:, 0]), path.name  # same classes, same order
        np.testing.assert_allclose(got[:, 1:], want[:, 1:], atol=1e-4, err_msg=path.name)


def test_another_nms_threshold_is_multibox_detections_own(
    sagemaker_tar: Path, images: Path
) -> None:
    path = sorted(images.iterdir())[-1]
    detector = Detector.load(sagemaker_tar)
    for nms in (0.2, 0.7):
        answer = detector.predict([path.read_bytes()], PredictOptions(nms_threshold=nms))[0]
        got = np.array(answer["prediction"]).reshape(-1, 6)
        want = sagemaker_models.reference_detections(sagemaker_tar, [_rgb(path)], nms_threshold=nms)
        want = want[0][: len(got)]
        assert np.array_equal(got[:, 0], want[:, 0]), nms
        np.testing.assert_allclose(got[:, 1:], want[:, 1:], atol=1e-4)


def test_class_names_the_user_gives_name_the_classes(sagemaker_tar: Path, images: Path) -> None:
    names = images.parent / "categories.json"
    names.write_text(json.dumps([{"class_id": 0, "name": "cat"}, {"class_id": 1, "name": "dog"}]))
    image = sorted(images.iterdir())[0]
    result = _run(
        "predict",
        str(sagemaker_tar),
        str(image),
        "--class-map",
        str(names),
        "--accept",
        "application/json;annotation=1",
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "no class names" not in result.stderr
    answer = json.loads(result.stdout)
    assert answer["categories"] == [{"class_id": 0, "name": "cat"}, {"class_id": 1, "name": "dog"}]
    # a class map that does not fit the graph's classes is refused, naming both
    names.write_text(json.dumps({"0": "cat", "1": "dog", "2": "bird"}))
    result = _run("predict", str(sagemaker_tar), str(image), "--class-map", str(names))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "odp predict: error: the class map given names class ids [0, 1, 2] but the model "
        "predicts 2 classes (ids 0..1)"
    ]


def test_evaluation_of_a_sagemaker_model_names_the_datasets_classes(
    sagemaker_tar: Path, training_data: Path, tmp_path: Path
) -> None:
    from pipeline_lib.evaluation.evaluate import evaluate_model

    result = evaluate_model(sagemaker_tar, training_data, tmp_path / "eval")
    assert 0.0 <= result["metrics"]["mAP"] <= 1.0
    # class_0.. stand in for the archive's missing names: the dataset's name the classes
    assert [c["name"] for c in result["per_class"]] == ["circle", "square"]
    assert (tmp_path / "eval" / "pr_curves.png").is_file()


def test_the_pyfunc_of_a_sagemaker_model_answers_like_odp_predict(
    sagemaker_tar: Path, images: Path, tmp_path: Path
) -> None:
    import mlflow.pyfunc
    import pandas as pd

    from pipeline_lib.serving.mlflow_model import save_detector

    path = save_detector(sagemaker_tar, tmp_path / "pyfunc", class_names={0: "cat", 1: "dog"})
    model = mlflow.pyfunc.load_model(str(path))
    data = [p.read_bytes() for p in sorted(images.iterdir())[:2]]
    got = model.predict(pd.DataFrame({"image": data}), params={"accept": "application/json"})
    want = Detector.load(sagemaker_tar).predict(data, PredictOptions())
    assert got == want
    verbose = model.predict(
        pd.DataFrame({"image": data[:1]}), params={"accept": "application/json;annotation=1"}
    )
    assert verbose[0]["categories"][1] == {"class_id": 1, "name": "dog"}


def test_the_onnx_export_of_a_sagemaker_model_detects_as_mxnet_does(
    sagemaker_tar: Path, images: Path, tmp_path: Path
) -> None:
    from pipeline_lib.inference import Predictor
    from pipeline_lib.serving.onnx_export import export_onnx
    from pipeline_lib.serving.onnx_runtime import OnnxPredictor

    onnx = OnnxPredictor.load(export_onnx(sagemaker_tar, tmp_path / "model.onnx"))
    pixels = [_rgb(p) for p in sorted(images.iterdir())[:2]]
    mxnet_rows = Predictor.load(sagemaker_tar).predict_arrays(pixels)
    for ours, theirs, image in zip(onnx.predict_arrays(pixels), mxnet_rows, pixels, strict=True):
        h, w = image.shape[:2]
        assert len(ours) == len(theirs) > 0
        scale = np.array([1, 1, w, h, w, h])
        # the same rows; two of a class whose scores agree to float rounding may swap places
        for row in ours / scale:
            assert np.abs(theirs / scale - row).max(axis=1).min() < 1e-4, row
        np.testing.assert_allclose(ours[:, 1], theirs[:, 1], atol=1e-4)  # the same ranking


# --------------------------------------------------------------------------- hostile archives


def _tampered(tmp_path: Path, change) -> Path:
    """A small SageMaker archive (resnet-50, 300) with one thing changed by ``change``,
    which gets the extracted folder."""
    folder = sagemaker_models.write_artifact(tmp_path / "model", "resnet-50", 300, 2, tar=False)
    change(folder)
    tar = tmp_path / "model.tar.gz"
    with tarfile.open(tar, "w:gz", compresslevel=1) as archive:
        for path in sorted(folder.iterdir()):
            archive.add(path, arcname=path.name)
    return tar


def _unknown_op(folder: Path) -> None:
    graph = json.loads((folder / "model_algo_1-symbol.json").read_text())
    graph["nodes"][3]["op"] = "_sg_mkldnn_conv"
    (folder / "model_algo_1-symbol.json").write_text(json.dumps(graph))


def _missing_weights(folder: Path) -> None:
    params = mx.nd.load(str(folder / "model_algo_1-0000.params"))
    del params["arg:conv0_weight"], params["arg:_plus15_cls_pred_conv_bias"]
    mx.nd.save(str(folder / "model_algo_1-0000.params"), params)


def _wrong_shape(folder: Path) -> None:
    params = mx.nd.load(str(folder / "model_algo_1-0000.params"))
    params["arg:_plus12_loc_pred_conv_weight"] = mx.nd.zeros((8, 1024, 3, 3))
    mx.nd.save(str(folder / "model_algo_1-0000.params"), params)


def _huge_class_count(folder: Path) -> None:
    hp = json.loads((folder / "hyperparams.json").read_text())
    hp["num_classes"] = "1000000000"
    (folder / "hyperparams.json").write_text(json.dumps(hp))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_unknown_op, "operator '_sg_mkldnn_conv' is not part of SageMaker's SSD graph"),
        (_missing_weights, "model_algo_1-0000.params lacks 2 of the"),
        (_wrong_shape, "_plus12_loc_pred_conv_weight has shape (8, 1024, 3, 3) but the graph"),
        (_huge_class_count, "hyperparams.json says num_classes='1000000000' but the graph"),
    ],
    ids=["unknown operator", "missing weights", "wrong shape", "1e9 classes"],
)
def test_a_broken_sagemaker_archive_is_one_line_and_exit_1(
    change, message: str, tmp_path: Path, images: Path
) -> None:
    tar = _tampered(tmp_path, change)
    result = _run("predict", str(tar), str(sorted(images.iterdir())[0]), timeout=300)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("odp predict: error: "), lines
    assert message in lines[0]
    assert "Traceback" not in result.stderr and not result.stdout


def test_odp_serves_a_sagemaker_model_in_both_runtimes(
    sagemaker_tar: Path, images: Path, tmp_path: Path
) -> None:
    """`odp serve`'s app answers a SageMaker job's archive as `odp predict` does, and its
    ONNX runtime (MultiBoxDetection in numpy) the same within float rounding, another NMS
    threshold included."""
    from serve_helpers import call_wsgi

    from pipeline_lib.serving.http.app import InferenceApp
    from pipeline_lib.serving.onnx_detector import OnnxDetector
    from pipeline_lib.serving.onnx_export import export_onnx

    jpeg = sorted(images.iterdir())[0].read_bytes()
    headers = {
        "Content-Type": "image/jpeg",
        "X-Amzn-SageMaker-Custom-Attributes": "nms_threshold=0.3",
    }
    mxnet = Detector.load(sagemaker_tar)
    want = mxnet.predict([jpeg], PredictOptions(nms_threshold=0.3))[0]["prediction"]
    status, _, body = call_wsgi(
        InferenceApp(mxnet, max_payload_bytes=1 << 22), "POST", "/invocations", jpeg, headers
    )
    assert status == 200 and json.loads(body)["prediction"] == want
    onnx = OnnxDetector.load(export_onnx(sagemaker_tar, tmp_path / "model.onnx"), threads=1)
    status, _, body = call_wsgi(
        InferenceApp(onnx, max_payload_bytes=1 << 22), "POST", "/invocations", jpeg, headers
    )
    got = np.array(json.loads(body)["prediction"])
    assert status == 200 and got.shape == np.array(want).shape
    assert np.array_equal(got[:, 0], np.array(want)[:, 0])
    np.testing.assert_allclose(got[:, 1:], np.array(want)[:, 1:], atol=1e-4)
