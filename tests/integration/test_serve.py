"""The real ``odp serve`` process, answering boto3's own ``sagemaker-runtime`` client.

One server for the module (2 workers, the tiny model); the SIGTERM test stops it, last. The
``/opt/ml/model`` + onnx server and the unloadable model start processes of their own.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from process_tree import children
from serve_helpers import png_bomb
from servers import free_port, wait_for_http

from pipeline_lib.cli import main

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
ODP = Path(sys.executable).parent / "odp"
VERBOSE = "application/json;annotation=1"
ATTRIBUTES = "threshold=0.05,max_detections=4,nms_threshold=0.3"


@dataclass
class Server:
    proc: subprocess.Popen
    url: str
    log: Path
    tmp: Path

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait()


def _start(argv: list[str], tmp: Path, env: dict[str, str] | None = None) -> Server:
    port = free_port()
    path = os.pathsep.join([str(REPO), str(REPO / "plugins"), os.environ.get("PYTHONPATH", "")])
    tmp.mkdir(parents=True, exist_ok=True)
    log = tmp / "serve.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(  # noqa: S603  test-built argv
            [str(ODP), "serve", *argv, "--host", "127.0.0.1", "--port", str(port)],
            env={**os.environ, "PYTHONPATH": path, "TMPDIR": str(tmp), **(env or {})},
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Server(proc, f"http://127.0.0.1:{port}", log, tmp)


def _runtime(url: str, pool: int = 8):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "sagemaker-runtime",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",  # noqa: S106  a dummy: the server checks none
        config=Config(
            retries={"total_max_attempts": 1}, max_pool_connections=pool, read_timeout=60
        ),
    )


def _invoke(client, body: bytes, content_type: str = "image/jpeg", **kw) -> tuple[int, bytes]:
    from botocore.exceptions import ClientError

    try:
        out = client.invoke_endpoint(EndpointName="odp", Body=body, ContentType=content_type, **kw)
        return 200, out["Body"].read()
    except ClientError as exc:
        return exc.response["ResponseMetadata"]["HTTPStatusCode"], exc.response["Error"]


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _close(a, b) -> bool:
    """Equal JSON answers, numbers within float rounding (the server's worker runs one
    image per call on one thread; ``odp predict`` batches them)."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return abs(a - b) <= 1e-5 * max(1.0, abs(a))
    return a == b


@pytest.fixture(scope="module")
def images(training_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two JPEGs and one PNG of the validation images."""
    folder = tmp_path_factory.mktemp("serve-images")
    jpegs = sorted((training_data / "validation").glob("*.jpg"))[:3]
    for p in jpegs[:2]:
        shutil.copy(p, folder / p.name)
    img = cv2.imread(str(jpegs[2]))
    cv2.imwrite(str(folder / f"{jpegs[2].stem}.png"), img)
    return folder


@pytest.fixture(scope="module")
def server(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory):
    srv = _start([str(tiny_model), "--workers", "2"], tmp_path_factory.mktemp("serve"))
    try:
        assert wait_for_http(f"{srv.url}/ping", 120, srv.proc), srv.log.read_text()[-3000:]
        yield srv
    finally:
        srv.stop()


def test_boto3_answers_equal_odp_predict(
    server: Server, tiny_model: Path, images: Path, tmp_path: Path
) -> None:
    client = _runtime(server.url)
    plain, verbose = tmp_path / "plain", tmp_path / "verbose"
    assert main(["predict", str(tiny_model), str(images), str(plain), "--sagemaker-output"]) == 0
    argv = ["--accept", VERBOSE, "--threshold", "0.05", "--max-detections", "4"]
    argv += ["--nms-threshold", "0.3", "--sagemaker-output"]
    assert main(["predict", str(tiny_model), str(images), str(verbose), *argv]) == 0
    files = sorted(p.name for p in images.iterdir())
    assert sorted(p.name for p in plain.glob("*.out")) == [f"{f}.out" for f in files]
    for name in files:
        data = (images / name).read_bytes()
        kinds = ["image/png"] if name.endswith(".png") else ["image/jpeg", "application/x-image"]
        for kind in kinds:
            status, body = _invoke(client, data, kind)
            assert status == 200
            assert _close(json.loads(body), json.loads((plain / f"{name}.out").read_bytes()))
            status, body = _invoke(client, data, kind, Accept=VERBOSE, CustomAttributes=ATTRIBUTES)
            assert status == 200
            doc = json.loads(body)
            assert _close(doc, json.loads((verbose / f"{name}.out").read_bytes()))
            assert len(doc["annotations"]) <= 4
            assert all(a["score"] >= 0.05 for a in doc["annotations"])
    # SageMaker's container path too, and the response type names the layout
    request = urllib.request.Request(  # noqa: S310  the test's own server
        f"{server.url}/invocations",
        (images / files[0]).read_bytes(),
        {"Content-Type": "image/jpeg", "Accept": VERBOSE},
    )
    with urllib.request.urlopen(request, timeout=60) as resp:  # noqa: S310  local server
        assert resp.headers["Content-Type"] == VERBOSE and "annotations" in json.loads(resp.read())


def test_the_sagemaker_sdk_predictor(server: Server, images: Path) -> None:
    """The SDK does not install with the lock's pins (see the report in the README); where
    it is installed, its Predictor talks to odp unchanged."""
    import importlib.util

    if importlib.util.find_spec("sagemaker") is None:
        pytest.skip("the SageMaker SDK is not installed (it does not resolve with our pins)")
    code = (
        "import json, sys, boto3\n"
        "from sagemaker.session import Session\n"
        "from sagemaker.predictor import Predictor\n"
        "from sagemaker.serializers import IdentitySerializer\n"
        "from sagemaker.deserializers import JSONDeserializer\n"
        "b = boto3.Session(aws_access_key_id='t', aws_secret_access_key='t', region_name='us-east-1')\n"
        "rt = b.client('sagemaker-runtime', endpoint_url=sys.argv[1])\n"
        "p = Predictor('odp', sagemaker_session=Session(boto_session=b, sagemaker_runtime_client=rt),\n"
        "              serializer=IdentitySerializer('image/jpeg'), deserializer=JSONDeserializer())\n"
        "out = p.predict(open(sys.argv[2], 'rb').read(), initial_args={'CustomAttributes': 'max_detections=3'})\n"
        "print(json.dumps(out))\n"
    )
    image = sorted(images.glob("*.jpg"))[0]
    env = {**os.environ, "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": "python"}
    out = subprocess.run(  # noqa: S603  test-built argv
        [sys.executable, "-c", code, server.url, str(image)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert len(json.loads(out.stdout)["prediction"]) == 3


def test_every_client_mistake_is_a_4xx(server: Server, images: Path) -> None:
    client = _runtime(server.url)
    jpeg = sorted(images.glob("*.jpg"))[0].read_bytes()
    gray = cv2.imencode(".jpg", np.full((40, 40), 90, np.uint8))[1].tobytes()
    cases = [
        (_invoke(client, b""), 400, "ModelError", "body: empty"),
        (_invoke(client, b"\xff\xd8 not really a jpeg"), 400, "ModelError", "body:"),
        (_invoke(client, gray), 400, "ModelError", "grayscale image"),
        (_invoke(client, png_bomb(10_000), "image/png"), 400, "ModelError", "above the limit"),
        (_invoke(client, jpeg, "text/csv"), 415, "ModelError", "content type 'text/csv'"),
        (_invoke(client, jpeg, Accept="text/csv"), 406, "ModelError", "accept 'text/csv'"),
        (_invoke(client, jpeg, CustomAttributes="threshold=x"), 400, "ModelError", "threshold"),
        (_invoke(client, b"\0" * (7 << 20)), 413, "ValidationError", "exceeded 6291456 bytes"),
        (_invoke(client, b"\0" * (50 << 20)), 413, "ValidationError", "52428800 bytes"),
    ]
    for (status, error), want, code, words in cases:
        assert (status, error["Code"]) == (want, code), error
        assert words in error["Message"] and "Traceback" not in error["Message"], error
    for method, path, want in (("GET", "/invocations", 405), ("POST", "/nowhere", 404)):
        body = b"x" if method == "POST" else None
        request = urllib.request.Request(f"{server.url}{path}", body, method=method)  # noqa: S310  local
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(request, timeout=30)  # noqa: S310  local server
        assert err.value.code == want and json.loads(err.value.read())["message"]
    # a malformed request is refused by the HTTP parser, in the same JSON
    with socket.create_connection(
        ("127.0.0.1", int(server.url.rsplit(":", 1)[1])), timeout=10
    ) as s:
        s.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")
        head, _, body = s.recv(65536).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and json.loads(body)["code"] == "ModelError"
    assert _invoke(client, jpeg)[0] == 200 and server.proc.poll() is None


def test_200_requests_8_at_a_time(server: Server, images: Path) -> None:
    client = _runtime(server.url)
    bodies = [
        (p.read_bytes(), "image/png" if p.suffix == ".png" else "image/jpeg")
        for p in sorted(images.iterdir())
    ]
    with ThreadPoolExecutor(8) as pool:  # warm: every worker has answered, caches filled
        list(pool.map(lambda i: _invoke(client, *bodies[i % len(bodies)]), range(16)))
    pids = [server.proc.pid, *children(server.proc.pid)]
    before = sum(_rss_kb(p) for p in pids)
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: _invoke(client, *bodies[i % len(bodies)]), range(200)))
    elapsed = time.monotonic() - started
    assert [s for s, _ in results] == [200] * 200
    after = sum(_rss_kb(p) for p in pids)
    assert children(server.proc.pid) == pids[1:]  # no worker died or was replaced
    assert after - before < 100_000, (before, after)  # KB: no growth with requests
    assert after < 3_000_000, after  # the master and 2 workers, all in
    assert wait_for_http(f"{server.url}/ping", 10)
    # one access log line per request, with its latency
    lines = [
        line
        for line in server.log.read_text().splitlines()
        if re.fullmatch(
            r'127\.0\.0\.1 "POST /endpoints/odp/invocations HTTP/1\.1" 200 \d+ [\d.]+ ms', line
        )
    ]
    assert len(lines) >= 216, elapsed


def test_the_master_never_loads_mxnet(server: Server) -> None:
    def maps(pid: int) -> str:
        return Path(f"/proc/{pid}/maps").read_text()

    assert "libmxnet" not in maps(server.proc.pid)
    assert all("libmxnet" in maps(w) for w in children(server.proc.pid))


def test_sigterm_during_load_finishes_in_flight_requests(server: Server, images: Path) -> None:
    """Last in the module: it stops the module's server."""
    jpeg = sorted(images.glob("*.jpg"))[0].read_bytes()
    port = int(server.url.rsplit(":", 1)[1])
    # a request in flight for sure: a worker is reading its body when SIGTERM arrives
    slow = socket.create_connection(("127.0.0.1", port), timeout=60)
    head = f"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
    slow.sendall(head.encode() + jpeg[:100])
    client = _runtime(server.url)
    with ThreadPoolExecutor(4) as pool:
        load = [pool.submit(_invoke_or_error, client, jpeg) for _ in range(24)]
        time.sleep(0.5)
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        slow.sendall(jpeg[100:])
        answer = b""
        while chunk := slow.recv(65536):
            answer += chunk
        slow.close()
        outcomes = [f.result() for f in load]
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert "prediction" in json.loads(answer.partition(b"\r\n\r\n")[2])
    # the load: answered, or refused once the server had stopped accepting; never cut off
    assert all(o == 200 or o == "refused" for o in outcomes), outcomes
    assert outcomes.count(200) >= 1
    assert server.proc.wait(timeout=60) == 0
    assert not list(server.tmp.glob("odp-serve-*")), "the scratch folder is left behind"


def _invoke_or_error(client, jpeg: bytes):
    from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError

    try:
        client.invoke_endpoint(EndpointName="odp", Body=jpeg, ContentType="image/jpeg")[
            "Body"
        ].read()
        return 200
    except (EndpointConnectionError, ConnectionClosedError):
        return "refused"
    except ClientError as exc:
        return exc.response["ResponseMetadata"]["HTTPStatusCode"]


def test_opt_ml_model_with_the_onnx_runtime(tiny_model: Path, images: Path, tmp_path: Path) -> None:
    """SageMaker's layout: the artifact extracted into /opt/ml/model (here $ML_ROOT/model),
    ``odp serve`` with no MODEL; the ONNX export is written at start, not into the model."""
    import tarfile

    model_dir = tmp_path / "ml" / "model"
    model_dir.mkdir(parents=True)
    with tarfile.open(tiny_model) as tar:
        tar.extractall(model_dir, filter="data")
    model_dir.chmod(0o555)  # SageMaker's model folder is read-only
    srv = _start(
        ["--runtime", "onnx", "--workers", "1"], tmp_path / "run", {"ML_ROOT": str(tmp_path / "ml")}
    )
    try:
        assert wait_for_http(f"{srv.url}/ping", 180, srv.proc), srv.log.read_text()[-3000:]
        status, body = _invoke(
            _runtime(srv.url),
            sorted(images.glob("*.jpg"))[0].read_bytes(),
            Accept=VERBOSE,
            CustomAttributes="max_detections=3",
        )
        assert status == 200 and len(json.loads(body)["annotations"]) == 3
        assert sorted(p.name for p in model_dir.iterdir()) == sorted(
            tarfile.open(tiny_model).getnames()
        )
        workers = children(srv.proc.pid)
        assert workers and all(
            "libmxnet" not in Path(f"/proc/{w}/maps").read_text() for w in workers
        )
    finally:
        assert srv.stop() == 0
        model_dir.chmod(0o755)


def test_a_model_no_worker_can_load_exits_1_with_one_line(tiny_model: Path, tmp_path: Path) -> None:
    import tarfile

    model_dir = tmp_path / "broken"
    model_dir.mkdir()
    with tarfile.open(tiny_model) as tar:
        tar.extractall(model_dir, filter="data")
    (model_dir / "model_algo_1-0000.params").write_bytes(b"\0" * 1000)
    srv = _start([str(model_dir), "--workers", "1"], tmp_path / "run")
    assert srv.proc.wait(timeout=120) == 1
    last = srv.log.read_text().strip().splitlines()[-1]
    assert last.startswith(
        f"odp serve: error: {model_dir}: the inference graph cannot be loaded"
    ), last
