"""The registered champion as an MLflow pyfunc: loaded in a fresh process, and served by
a real ``mlflow models serve`` process answering JPEGs in SageMaker's formats."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from servers import free_port, wait_for_http

from pipeline_lib import registry
from pipeline_lib.serving.detector import Detector
from pipeline_lib.serving.request import PredictOptions

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
MLFLOW = Path(sys.executable).parent / "mlflow"
VERBOSE = "application/json;annotation=1"


def _env(tracking_uri: str, tmp: Path) -> dict[str, str]:
    """The environment of a user's process; its TMPDIR the test's own (MLflow downloads a
    models:/ URI into a temporary folder it never removes)."""
    path = os.pathsep.join([str(REPO), str(REPO / "plugins"), os.environ.get("PYTHONPATH", "")])
    bins = os.pathsep.join([str(MLFLOW.parent), os.environ.get("PATH", "")])  # uvicorn
    return {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "PYTHONPATH": path,
        "PATH": bins,
        "TMPDIR": str(tmp),
    }


def _iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union


def _truth(dataset: Path, image: Path) -> list[list[float]]:
    doc = json.loads((dataset / "validation_annotation" / f"{image.stem}.json").read_text())
    return [
        [a["left"], a["top"], a["left"] + a["width"], a["top"] + a["height"]]
        for a in doc["annotations"]
    ]


def _post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(  # noqa: S310  http://127.0.0.1 URLs the tests build
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as resp:  # noqa: S310  local test server
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture(scope="module")
def champion(mlflow_server, learned_model) -> str:
    info = registry.register_model(
        learned_model.tar,
        "served",
        metrics={"mAP": learned_model.mAP},
        tracking_uri=mlflow_server.url,
    )
    registry.promote_if_better("served", info["version"], tracking_uri=mlflow_server.url)
    return "models:/served@champion"


def test_pyfunc_loads_in_a_fresh_process(mlflow_server, learned_model, champion, tmp_path) -> None:
    image = sorted((learned_model.dataset / "validation").glob("*.jpg"))[0]
    code = (
        "import json, sys, mlflow.pyfunc, pandas as pd\n"
        f"m = mlflow.pyfunc.load_model({champion!r})\n"
        "df = pd.DataFrame({'image': [open(sys.argv[1], 'rb').read()]})\n"
        f"print(json.dumps(m.predict(df, params={{'accept': {VERBOSE!r}}})))\n"
    )
    out = subprocess.run(  # noqa: S603  test-built argv
        [sys.executable, "-c", code, str(image)],
        env=_env(mlflow_server.url, tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    served = json.loads(out.stdout.strip().splitlines()[-1])
    direct = Detector.load(learned_model.tar).predict(
        [image.read_bytes()], PredictOptions(verbose=True)
    )
    assert served == direct
    # the version is the pyfunc, and the SageMaker artifact is recoverable from it
    local = registry.resolve_model_uri(champion, tracking_uri=mlflow_server.url, dst=tmp_path / "t")
    assert local.read_bytes() == learned_model.tar.read_bytes()


def test_mlflow_models_serve_answers_a_jpeg(
    mlflow_server, learned_model, champion, tmp_path
) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(  # noqa: S603  test-built argv
            [
                str(MLFLOW),
                "models",
                "serve",
                "-m",
                champion,
                "--env-manager",
                "local",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            env=_env(mlflow_server.url, tmp_path),
            stdout=fh,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_for_http(f"{url}/ping", 300, proc), log.read_text()[-4000:]
        images = sorted((learned_model.dataset / "validation").glob("*.jpg"))[:8]
        rows = [[base64.b64encode(p.read_bytes()).decode()] for p in images]
        status, body = _post(
            f"{url}/invocations",
            {
                "dataframe_split": {"columns": ["image"], "data": rows},
                "params": {"accept": VERBOSE, "max_detections": 3},
            },
        )
        assert status == 200, body
        answers = body["predictions"]
        assert len(answers) == len(images)
        hits = 0
        for image, answer in zip(images, answers, strict=True):
            assert [c["class_id"] for c in answer["categories"]] == [0, 1]
            assert len(answer["annotations"]) == 3
            boxes = [
                [a["left"], a["top"], a["left"] + a["width"], a["top"] + a["height"]]
                for a in answer["annotations"]
            ]
            truth = _truth(learned_model.dataset, image)
            hits += max(_iou(b, t) for b in boxes for t in truth) > 0.5
        # a weakly trained model (mAP ~0.4): most images have an object under a top-3 box
        assert hits >= len(images) // 2, answers

        status, plain = _post(
            f"{url}/invocations",
            {
                "dataframe_split": {"columns": ["image"], "data": rows[:1]},
                "params": {"max_detections": 5},
            },
        )
        assert status == 200
        prediction = np.array(plain["predictions"][0]["prediction"])
        assert (
            prediction.shape == (5, 6)
            and (prediction[:, 2:] >= 0).all()
            and (prediction[:, 2:] <= 1).all()
        )

        import cv2

        gray = cv2.imencode(".jpg", np.full((40, 40), 90, np.uint8))[1].tobytes()
        status, error = _post(
            f"{url}/invocations",
            {
                "dataframe_split": {
                    "columns": ["image"],
                    "data": [[base64.b64encode(gray).decode()]],
                }
            },
        )
        assert status == 400 and "grayscale image: expected a 3-channel" in error["message"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
