"""``odp serve``'s contract and WSGI app (in process, on the tiny model), its configuration,
and the command's exits before a server starts. The real server: tests/integration/
test_serve.py."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from serve_helpers import call_wsgi, png_bomb

from pipeline_lib.cli import main
from pipeline_lib.serving.detector import Detector
from pipeline_lib.serving.http import contract
from pipeline_lib.serving.http.app import InferenceApp
from pipeline_lib.serving.http.config import plan_config
from pipeline_lib.serving.http.contract import HttpError
from pipeline_lib.serving.request import PredictOptions

LIMIT = 1 << 20
VERBOSE = "application/json;annotation=1"
ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"


@pytest.fixture(scope="module")
def detector(tiny_model: Path) -> Detector:
    return Detector.load(tiny_model)


@pytest.fixture(scope="module")
def app(detector: Detector) -> InferenceApp:
    return InferenceApp(detector, max_payload_bytes=LIMIT, workers=3)


@pytest.fixture(scope="module")
def jpeg(training_data: Path) -> bytes:
    return sorted((training_data / "validation").glob("*.jpg"))[0].read_bytes()


def _post(app, body: bytes, content_type: str | None = "image/jpeg", **headers: str):
    if content_type:
        headers["Content-Type"] = content_type
    return call_wsgi(app, "POST", "/invocations", body, headers)


def _error(status: int, headers: dict, body: bytes) -> dict:
    assert headers["Content-Type"] == "application/json"
    assert body.count(b"\n") == 0 and b"Traceback" not in body
    return json.loads(body)


# ------------------------------------------------------------------ the contract


def test_routes() -> None:
    assert contract.route("GET", "/ping") == contract.PING
    assert contract.route("POST", "/invocations") == contract.INVOCATIONS
    assert contract.route("POST", "/endpoints/my-endpoint/invocations") == contract.INVOCATIONS
    assert contract.route("GET", "/execution-parameters") == contract.EXECUTION_PARAMETERS
    with pytest.raises(HttpError) as err:
        contract.route("GET", "/invocations")
    assert err.value.status == 405 and ("Allow", "POST") in err.value.headers
    for path in ("/", "/endpoints//invocations", "/endpoints/a/b/invocations", "/pingx"):
        with pytest.raises(HttpError) as err:
            contract.route("POST", path)
        assert err.value.status == 404


@pytest.mark.parametrize(
    ("accept", "verbose"),
    [
        (None, False),
        ("", False),
        ("*/*", False),
        ("application/*", False),
        ("application/json", False),
        ("application/json; annotation=1", True),
        (VERBOSE, True),
        ("text/csv, application/json;annotation=1;q=0.5", True),
        ("application/json;q=0.2, application/json;annotation=1;q=0.9", True),
        ("application/json;annotation=1;q=0, */*", False),
    ],
)
def test_accept_negotiation(accept: str | None, verbose: bool) -> None:
    assert contract.negotiate_accept(accept) is verbose


@pytest.mark.parametrize("accept", ["text/csv", "application/json;verbose=1", "image/*"])
def test_unacceptable_accept_is_406(accept: str) -> None:
    with pytest.raises(HttpError) as err:
        contract.negotiate_accept(accept)
    assert err.value.status == 406 and accept in err.value.message


def test_custom_attributes_become_options() -> None:
    options = contract.request_options(
        "threshold=0.3,max_detections=50; nms_threshold=0.2,trace-id=abc,flag", None
    )
    assert options == PredictOptions(threshold=0.3, max_detections=50, nms_threshold=0.2)
    assert contract.request_options(None, VERBOSE) == PredictOptions(verbose=True)
    for bad, words in (
        ("threshold=abc", "threshold='abc': expected a number"),
        ("threshold=1.5", "expected a number in [0.0, 1.0]"),
        ("max_detections=0", "max_detections"),
        ("nms_threshold=nan", "nms_threshold"),
        ("threshold=0.1,threshold=0.2", "threshold given twice"),
        ("x=" + "y" * 1100, "expected at most 1024"),
    ):
        with pytest.raises(HttpError) as err:
            contract.request_options(bad, None)
        assert err.value.status == 400 and words in err.value.message, err.value.message
        assert err.value.message.startswith(ATTRIBUTES)


def test_error_bodies_are_one_line_of_json_boto3_can_name() -> None:
    assert json.loads(contract.error_body(415, "no\ncontent type")) == {
        "code": "ModelError",
        "message": "no content type",
        "OriginalStatusCode": 415,
    }
    assert json.loads(contract.error_body(413, "x"))["code"] == "ValidationError"
    assert json.loads(contract.error_body(500, "x"))["code"] == "InternalFailure"


# ------------------------------------------------------------------ the app


def test_ping_and_execution_parameters(app: InferenceApp) -> None:
    status, headers, body = call_wsgi(app, "GET", "/ping")
    assert status == 200 and json.loads(body) == {"status": "healthy"}
    status, _, body = call_wsgi(app, "GET", "/execution-parameters")
    assert status == 200
    assert json.loads(body) == {
        "MaxConcurrentTransforms": 3,
        "BatchStrategy": "SINGLE_RECORD",
        "MaxPayloadInMB": 1,
    }


def test_invocations_answer_as_odp_predict(app: InferenceApp, detector, jpeg: bytes) -> None:
    png = cv2.imencode(".png", cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR))[1]
    for path in ("/invocations", "/endpoints/ep/invocations"):
        for body, kind in (
            (jpeg, "image/jpeg"),
            (png.tobytes(), "image/png"),
            (jpeg, "application/x-image"),
        ):
            status, headers, out = call_wsgi(app, "POST", path, body, {"Content-Type": kind})
            assert status == 200 and headers["Content-Type"] == "application/json"
            assert json.loads(out) == detector.predict([body])[0]
            assert int(headers["Content-Length"]) == len(out)
    status, headers, out = _post(app, jpeg, Accept=VERBOSE, **{ATTRIBUTES: "max_detections=2"})
    assert status == 200 and headers["Content-Type"] == VERBOSE
    assert (
        json.loads(out)
        == detector.predict([jpeg], PredictOptions(max_detections=2, verbose=True))[0]
    )
    # the same bytes `odp predict --sagemaker-output` writes
    options = PredictOptions(threshold=0.2, nms_threshold=0.3)
    status, _, out = _post(app, jpeg, **{ATTRIBUTES: "threshold=0.2,nms_threshold=0.3"})
    from pipeline_lib.serving.response import response_body

    assert out == response_body(detector.predict([jpeg], options)[0])


def test_client_mistakes_are_4xx_with_one_line(app: InferenceApp, jpeg: bytes) -> None:
    gray = cv2.imencode(".png", np.full((32, 32), 90, np.uint8))[1].tobytes()
    rgba = cv2.imencode(".png", np.full((32, 32, 4), 90, np.uint8))[1].tobytes()
    cases = [
        (_post(app, b""), 400, "body: empty"),
        (_post(app, b"not an image at all"), 400, "expected JPEG or PNG"),
        (_post(app, jpeg[: len(jpeg) // 3]), 400, "truncated [I002 image.truncated]"),
        (_post(app, gray, "image/png"), 400, "grayscale image: expected a 3-channel"),
        (_post(app, rgba, "image/png"), 400, "4-channel"),
        (_post(app, png_bomb(10_000), "image/png"), 400, "above the limit"),
        (_post(app, jpeg, "text/csv"), 415, "content type 'text/csv'"),
        (_post(app, jpeg, None), 415, "no content type"),
        (_post(app, jpeg, Accept="text/csv"), 406, "accept 'text/csv'"),
        (_post(app, jpeg, **{ATTRIBUTES: "threshold=2"}), 400, ATTRIBUTES),
        (_post(app, b"x" * (LIMIT + 1)), 413, f"exceeded {LIMIT} bytes"),
        (call_wsgi(app, "GET", "/invocations"), 405, "expected POST"),
        (call_wsgi(app, "POST", "/predict", jpeg), 404, "no route '/predict'"),
    ]
    for (status, headers, body), want, words in cases:
        doc = _error(status, headers, body)
        assert status == want and words in doc["message"], (status, doc)
    # a body without a declared length is counted as it is read
    status, headers, body = call_wsgi(
        app,
        "POST",
        "/invocations",
        b"x" * (2 * LIMIT),
        {"Content-Type": "image/jpeg"},
        declare_length=False,
    )
    assert status == 413 and _error(status, headers, body)["code"] == "ValidationError"


def test_a_fault_of_ours_is_a_logged_500(jpeg: bytes, caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def predict(self, *args, **kwargs):
            raise RuntimeError("the network fell over")

    app = InferenceApp(Broken(), max_payload_bytes=LIMIT)
    with caplog.at_level(logging.ERROR, logger="odp.serve"):
        status, headers, body = _post(app, jpeg)
    doc = _error(status, headers, body)
    assert status == 500 and doc["code"] == "InternalFailure"
    assert "fell over" not in doc["message"]
    assert "the network fell over" in caplog.text and "Traceback" in caplog.text


def test_onnx_runtime_answers_in_the_same_format(
    tiny_model: Path, tmp_path: Path, jpeg: bytes
) -> None:
    from pipeline_lib.serving.onnx_detector import OnnxDetector
    from pipeline_lib.serving.onnx_export import export_onnx

    onnx = OnnxDetector.load(export_onnx(tiny_model, tmp_path / "model.onnx"), threads=1)
    app = InferenceApp(onnx, max_payload_bytes=LIMIT)
    status, _, body = _post(app, jpeg, Accept=VERBOSE, **{ATTRIBUTES: "max_detections=5"})
    doc = json.loads(body)
    assert status == 200 and len(doc["annotations"]) == 5 and len(doc["categories"]) == 2
    plain = onnx.predict([jpeg])[0]["prediction"]
    strict = onnx.predict([jpeg], PredictOptions(nms_threshold=0.05))[0]["prediction"]
    assert 0 < len(strict) < len(plain)  # another NMS threshold is honoured
    assert _post(app, b"")[0] == 400


# ------------------------------------------------------------------ configuration


def test_workers_times_threads_fit_the_cpus() -> None:
    plan = plan_config(cpus=8, env={})
    assert (plan.workers, plan.threads) == (8, 1)
    plan = plan_config(cpus=8, workers=3, env={})
    assert (plan.workers, plan.threads) == (3, 2)
    plan = plan_config(cpus=8, env={"OMP_NUM_THREADS": "4"})
    assert (plan.workers, plan.threads) == (2, 4)
    plan = plan_config(cpus=8, workers=4, env={"OMP_NUM_THREADS": "4"})
    assert (plan.workers, plan.threads) == (4, 2)  # never more threads than CPUs
    plan = plan_config(
        cpus=4,
        env={
            "SAGEMAKER_MODEL_SERVER_WORKERS": "2",
            "SAGEMAKER_MAX_PAYLOAD_IN_MB": "20",
            "SAGEMAKER_MODEL_SERVER_TIMEOUT": "90",
            "SAGEMAKER_BIND_TO_PORT": "9000",
        },
    )
    assert (plan.workers, plan.threads, plan.port, plan.timeout) == (2, 2, 9000, 90)
    assert plan.max_payload_bytes == 20 << 20
    assert (
        plan_config(
            cpus=4, port=8081, max_payload_mb=1, env={"SAGEMAKER_BIND_TO_PORT": "9000"}
        ).port
        == 8081
    )
    with pytest.raises(ValueError, match="SAGEMAKER_MODEL_SERVER_WORKERS='zero'"):
        plan_config(cpus=4, env={"SAGEMAKER_MODEL_SERVER_WORKERS": "zero"})


def test_serve_exits_before_a_server_starts(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("ML_ROOT", str(tmp_path / "ml"))
    assert main(["serve"]) == 1  # no MODEL, nothing in $ML_ROOT/model
    assert (
        capsys.readouterr().err.strip()
        == f"odp serve: error: no model at {tmp_path / 'ml' / 'model'}"
    )
    (tmp_path / "empty").mkdir()
    assert main(["serve", str(tmp_path / "empty")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no model_algo_1-symbol.json" in err
    assert main(["serve", str(tmp_path / "missing")]) == 2
    for argv in (["--port", "0"], ["--port", "70000"], ["--workers", "-1"], ["--runtime", "tf"]):
        with pytest.raises(SystemExit) as exit_:
            main(["serve", str(tmp_path), *argv])
        assert exit_.value.code == 2
    import io
    import tarfile

    evil = tmp_path / "evil" / "model.tar.gz"  # a member aiming outside the extraction
    evil.parent.mkdir()
    with tarfile.open(evil, "w:gz") as tar:
        info = tarfile.TarInfo("../../escaped.txt")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # the scratch folder's
    capsys.readouterr()
    assert main(["serve", str(evil)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("odp serve: error:") and "model.tar.gz" in err and "\n" not in err
    assert not list(tmp_path.rglob("escaped.txt")) and not list((tmp_path / "tmp").iterdir())
    monkeypatch.setenv("SAGEMAKER_MODEL_SERVER_WORKERS", "many")
    assert main(["serve", str(tmp_path / "empty")]) == 1
    assert "SAGEMAKER_MODEL_SERVER_WORKERS='many'" in capsys.readouterr().err


def test_the_master_prepares_every_model_form(tiny_model: Path, tmp_path: Path, s3) -> None:
    from pipeline_lib.artifact import SYMBOL
    from pipeline_lib.serving.http.server import prepare_model

    holder = tmp_path / "holder"
    holder.mkdir()
    shutil.copy(tiny_model, holder / "model.tar.gz")
    s3.client().upload_file(str(tiny_model), s3.bucket, "models/v1/model.tar.gz")
    for i, source in enumerate(
        (tiny_model, holder, s3.uri("models/v1"), s3.uri("models/v1/model.tar.gz"))
    ):
        prepared = prepare_model(source, "mxnet", tmp_path / f"scratch{i}")
        assert (prepared.folder / SYMBOL).is_file() and prepared.onnx_file is None
    assert prepare_model(prepared.folder, "mxnet", tmp_path / "s").folder == prepared.folder
