"""The MLflow pyfunc on a real (tiny) model, saved without a tracking store: signature,
input example, artifacts, params, and request errors as INVALID_PARAMETER_VALUE."""

from __future__ import annotations

import base64
import tarfile
from pathlib import Path

import mlflow.pyfunc
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from pipeline_lib.serving.detector import Detector
from pipeline_lib.serving.mlflow_model import save_detector
from pipeline_lib.serving.request import PredictOptions, RequestError


@pytest.fixture(scope="module")
def saved(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_detector(tiny_model, tmp_path_factory.mktemp("pyfunc") / "model")


def test_saved_pyfunc_layout(saved: Path, tiny_model: Path) -> None:
    artifacts = saved / "artifacts"
    assert (artifacts / "model.tar.gz").read_bytes() == tiny_model.read_bytes()
    with tarfile.open(tiny_model) as tar:
        exported = {
            "model_algo_1-symbol.json",
            "model_algo_1-0000.params",
            "class_map.json",
            "hyperparams.json",
        }
        assert exported <= set(tar.getnames())
    assert exported <= {p.name for p in artifacts.iterdir()}
    model = mlflow.pyfunc.load_model(str(saved))
    schema = model.metadata.get_input_schema()
    assert [(c.name, c.type.name) for c in schema.inputs] == [("image", "binary")]
    params = {p.name: p.default for p in model.metadata.get_params_schema().params}
    assert params["accept"] == "application/json" and params["max_detections"] == 100
    assert params["nms_threshold"] == pytest.approx(0.45)
    assert (saved / "input_example.json").exists() and (
        saved / "serving_input_example.json"
    ).exists()


def test_pyfunc_predicts_like_the_detector(
    saved: Path, tiny_model: Path, training_data: Path
) -> None:
    model = mlflow.pyfunc.load_model(str(saved))
    images = sorted((training_data / "validation").glob("*.jpg"))[:2]
    data = [p.read_bytes() for p in images]
    out = model.predict(
        pd.DataFrame({"image": data}), params={"threshold": 0.01, "max_detections": 4}
    )
    direct = Detector.load(tiny_model).predict(
        data, PredictOptions(threshold=0.01, max_detections=4)
    )
    assert out == direct and len(out) == 2
    # base64 text (as JSON carries bytes) reads the same
    text = model.predict(
        pd.DataFrame({"image": [base64.b64encode(data[0]).decode()]}),
        params={"threshold": 0.01, "max_detections": 4},
    )
    assert text == direct[:1]
    verbose = model.predict(
        pd.DataFrame({"image": data[:1]}), params={"accept": "application/json;annotation=1"}
    )
    assert {"image_size", "annotations", "categories"} <= set(verbose[0])


def test_the_pyfunc_parses_each_set_of_params_once(saved: Path) -> None:
    model = mlflow.pyfunc.load_model(str(saved)).unwrap_python_model()
    params = {"threshold": 0.5, "max_detections": 3, "nms_threshold": 0.3, "accept": "*/*"}
    first = model.options(params)
    assert first == PredictOptions.from_params(params)
    assert model.options(dict(reversed(params.items()))) is first
    assert model.options({**params, "threshold": 0.6}).threshold == 0.6
    with pytest.raises(RequestError, match="max_detections"):
        model.options({"max_detections": [1]})  # unhashable: parsed, and refused
    with pytest.raises(RequestError, match="threshold"):
        model.options({"threshold": 2.0})
    with pytest.raises(RequestError, match="threshold"):
        model.options({"threshold": 2.0})  # a refusal is not kept


def test_pyfunc_request_errors(saved: Path) -> None:
    model = mlflow.pyfunc.load_model(str(saved))
    with pytest.raises(MlflowException, match=r"row 0 \(image\): .* expected JPEG or PNG") as info:
        model.predict(pd.DataFrame({"image": [b"not an image"]}))
    assert info.value.error_code == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException, match="accept 'text/csv'"):
        model.predict(pd.DataFrame({"image": [b"x"]}), params={"accept": "text/csv"})


def test_a_fresh_process_loading_the_pyfunc_gives_mxnet_every_usable_cpu(saved: Path) -> None:
    """``mlflow models serve`` loads the model in a process without MXNet: the model sizes
    MXNet's operator threads before importing it (a user's OMP_NUM_THREADS wins)."""
    import os
    import subprocess
    import sys

    from pipeline_lib.cpus import available_cpus

    code = (
        "import os, sys, mlflow.pyfunc; m = mlflow.pyfunc.load_model(sys.argv[1]); "
        "import mxnet; print(os.environ['OMP_NUM_THREADS'])"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}

    def threads(**extra: str) -> str:
        done = subprocess.run(  # noqa: S603  test-built argv, no shell
            [sys.executable, "-c", code, str(saved)],
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout.split()[-1]

    assert threads() == str(available_cpus())
    assert threads(OMP_NUM_THREADS="1") == "1"
