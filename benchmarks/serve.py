"""Serving latency, CPU, batch 1: the bare exported network vs the pyfunc vs HTTP.

For one model and one JPEG, side by side (p50 / p95 over ``--iterations`` after
``--warmup`` calls; the MXNet rows are timed interleaved, one call of each in turn, so a
slow spell of the machine hits all of them alike; onnx and http after them):

  bare       the exported inference graph (``SymbolBlock``, NMS included) on its already
             prepared input, results copied to numpy: the network alone. A model exported
             by this version normalises in its graph (uint8 -> float32, NHWC -> NCHW,
             ``(x - mean) / std``), so its bare row includes that and its input is the
             resized 1xSxSx3 uint8 pixels; an older model's input is the normalised 1x3xSxS
             batch (see ``pipeline_lib.preprocessing``)
  decode     the JPEG bytes to RGB pixels alone (``decode_request_image``: OpenCV's decoder)
  predictor  ``Predictor.predict_arrays`` on the decoded image: + resize (and for an older
             model the normalisation on the host), boxes back to pixels
  detector   ``Detector.predict`` on the JPEG bytes: + decode, options, the SageMaker
             response: everything the pyfunc does but MLflow's part
  pyfunc     ``mlflow.pyfunc`` ``predict`` on a one-row DataFrame of JPEG bytes: + MLflow's
             per-call input handling (schema and params enforcement) (what ``odp predict``
             and the server run)
  onnx       the same as ``predictor`` without MXNet: the graph up to its NMS exported to
             ONNX, run by ``onnxruntime``, NMS in numpy (``pipeline_lib.serving.onnx_runtime``)
  http       ``POST /invocations`` to ``mlflow models serve --env-manager local`` (base64
             JSON, the scoring server's parsing and its JSON response), over loopback

The goal is pyfunc overhead <= 10% over bare (the ``vs bare`` column); the HTTP overhead is
reported, and the pyfunc's overhead is split into its parts (decode, resize and boxes, our
request/response code, MLflow's).

Then ``odp serve`` (SageMaker's contract, the raw JPEG in ``POST
/endpoints/bench/invocations``) as it runs by default (one worker per usable CPU, one compute
thread each), over both runtimes (``mxnet``, ``onnx``), beside ``mlflow models serve``:

  one client   p50 / p95; goal p50 <= 1.10 x (decode + bare) + 1 ms. ``bare`` runs with every
               CPU's OpenMP threads, a default worker with one: the ``vs 1 core`` column
               compares with decode + forward on one thread, and the ``mxnet 1 worker`` row
               (``--workers 1``: one worker with every CPU's threads) is the layout for
               latency over throughput
  throughput   requests/s with 1, 2, 4 and 8 concurrent clients (``--duration`` s each);
               goals at saturation (the best of them): >= 0.85 x (usable CPUs x one core's
               decode + forward rate, measured in a process with one OpenMP thread) and
               >= 2 x ``mlflow models serve``'s

The clients are threads of this process, on the same CPUs as the server (a few percent of
them): on a small machine the throughput ratios are a lower bound. MXNet's operators get every usable CPU, as ``odp predict``
and the served pyfunc give them. The model is a ``model.tar.gz`` (``--model``; default: a
1-epoch model trained here on a tiny synthetic dataset, for a smoke run only); the image is
a synthetic validation image unless ``--image`` names one. Numbers depend on the machine:
run on a quiet one.

    .venv/bin/python benchmarks/serve.py --model .local/demo/model.tar.gz [--iterations 200]
        [--duration 10] [--no-http] [--no-odp-serve]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _percentiles(times: list[float]) -> tuple[float, float]:
    return float(np.percentile(times, 50)) * 1e3, float(np.percentile(times, 95)) * 1e3


def _interleaved(
    fns: dict[str, Callable[[], object]], warmup: int, iterations: int
) -> dict[str, tuple[float, float]]:
    """p50/p95 ms of each function, called in turn (one call of each per round)."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(iterations):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: _percentiles(t) for name, t in times.items()}


def _timed(fn: Callable[[], object], warmup: int, iterations: int) -> tuple[float, float]:
    return _interleaved({"fn": fn}, warmup, iterations)["fn"]


def _tiny_model(root: Path) -> tuple[Path, Path]:
    from pipeline_lib.artifact import package
    from pipeline_lib.synthetic import SynthConfig, generate
    from pipeline_lib.training.contract import prepare_ml_root
    from pipeline_lib.training.entrypoint import run_training

    data = root / "data"
    generate(data, SynthConfig(images=20, classes=2, seed=3))
    channels = {
        c: data / c for c in ("train", "validation", "train_annotation", "validation_annotation")
    }
    hp = {
        "num_classes": 2,
        "num_training_samples": 16,
        "base_network": "mobilenet-0.25",
        "use_pretrained_model": 0,
        "epochs": 1,
        "mini_batch_size": 4,
        "num_workers": 0,
    }
    paths = prepare_ml_root(root / "ml", channels, hp)
    if run_training(str(paths.root)) != 0:
        raise SystemExit("training the smoke-test model failed")
    return Path(package(paths.model, root / "model.tar.gz")), data


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(model_dir: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    venv_bin = Path(sys.executable).parent  # mlflow starts uvicorn from PATH
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "PATH": os.pathsep.join([str(venv_bin), os.environ.get("PATH", "")]),
    }
    mlflow = venv_bin / "mlflow"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(  # noqa: S603  fixed argv
            [
                str(mlflow),
                "models",
                "serve",
                "-m",
                str(model_dir),
                "--env-manager",
                "local",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"mlflow models serve exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2):  # noqa: S310  loopback
                return proc, url
        except OSError:
            time.sleep(0.5)
    raise SystemExit("mlflow models serve did not start in 300 s")


def _onnx_row(onnx_file: Path, image: Path, args: argparse.Namespace) -> tuple[float, float]:
    argv = [sys.executable, __file__, "--_onnx", str(onnx_file), "--image", str(image)]
    argv += ["--warmup", str(args.warmup), "--iterations", str(args.iterations)]
    out = subprocess.run(argv, check=True, capture_output=True, text=True)  # noqa: S603  our own script
    p50, p95 = json.loads(out.stdout.strip().splitlines()[-1])
    return p50, p95


def _onnx_child(args: argparse.Namespace) -> None:
    from pipeline_lib.serving.onnx_runtime import OnnxPredictor
    from pipeline_lib.serving.request import decode_request_image

    onnx = OnnxPredictor.load(args._onnx)
    pixels = decode_request_image(args.image.read_bytes(), "image", onnx.image_shape).pixels
    print(json.dumps(_timed(lambda: onnx.predict_arrays([pixels]), args.warmup, args.iterations)))


def _one_core_child(args: argparse.Namespace) -> None:
    """p50 ms of decode + the bare forward pass with one OpenMP thread (run with
    OMP_NUM_THREADS=1 set before MXNet loads)."""
    from pipeline_lib.inference import Predictor
    from pipeline_lib.serving.request import decode_request_image

    predictor = Predictor.load(args._one_core)
    jpeg = args.image.read_bytes()
    size = predictor.image_shape

    def decode_forward() -> None:
        pixels = decode_request_image(jpeg, "image", size).pixels
        ids, scores, boxes = predictor.net(predictor._preprocess([pixels]))
        ids.asnumpy(), scores.asnumpy(), boxes.asnumpy()

    print(json.dumps(_timed(decode_forward, args.warmup, args.iterations)))


def _one_core_ms(model: Path, image: Path, args: argparse.Namespace) -> float:
    argv = [sys.executable, __file__, "--_one_core", str(model), "--image", str(image)]
    argv += ["--warmup", str(args.warmup), "--iterations", str(args.iterations)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MXNET_CPU_WORKER_NTHREADS": "1"}
    out = subprocess.run(argv, check=True, capture_output=True, text=True, env=env)  # noqa: S603  our own script
    return json.loads(out.stdout.strip().splitlines()[-1])[0]


def _odp_serve(
    model_dir: Path, runtime: str, log: Path, extra: tuple[str, ...] = ()
) -> tuple[subprocess.Popen, str]:
    """``odp serve`` as it runs by default (workers and threads from the usable CPUs), or
    with ``extra`` flags."""
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    for name in ("OMP_NUM_THREADS", "MXNET_CPU_WORKER_NTHREADS"):  # set for this process's
        env.pop(name, None)  # MXNet above; the server plans its own
    odp = Path(sys.executable).parent / "odp"
    argv = [str(odp), "serve", str(model_dir), "--runtime", runtime]
    argv += ["--host", "127.0.0.1", "--port", str(port), *extra]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(  # noqa: S603  fixed argv
            argv, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"odp serve exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2):  # noqa: S310  loopback
                return proc, url
        except OSError:
            time.sleep(0.5)
    raise SystemExit("odp serve did not start in 300 s")


def _poster(url: str, path: str, body: bytes, headers: dict[str, str]) -> Callable[[], None]:
    """One request per call, a new connection each (as odp serve's workers close them)."""
    import http.client
    from urllib.parse import urlsplit

    host = urlsplit(url)

    def post() -> None:
        conn = http.client.HTTPConnection(host.hostname, host.port, timeout=60)
        try:
            conn.request("POST", path, body, headers)
            resp = conn.getresponse()
            data = resp.read()
            if resp.status != 200:
                raise SystemExit(f"{url}{path}: {resp.status} {data[:300]!r}")
        finally:
            conn.close()

    return post


def _throughput(post: Callable[[], None], clients: int, duration: float) -> float:
    """Requests per second with ``clients`` threads posting back to back."""
    import threading

    done = [0] * clients
    start = threading.Barrier(clients + 1)
    stop = time.monotonic() + duration + 1.0

    def client(i: int) -> None:
        post()  # warm
        start.wait()
        while time.monotonic() < stop:
            post()
            done[i] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.monotonic()
    for t in threads:
        t.join()
    return sum(done) / (time.monotonic() - t0)


def _server_rows(
    post: Callable[[], None], args: argparse.Namespace
) -> tuple[tuple[float, float], dict[int, float]]:
    latency = _timed(post, args.warmup, args.iterations)
    rates = {n: _throughput(post, n, args.duration) for n in CLIENTS}
    return latency, rates


CLIENTS = (1, 2, 4, 8)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, help="model.tar.gz (default: a smoke-test model)")
    parser.add_argument("--image", type=Path, help="a JPEG (default: a synthetic one)")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--no-http", action="store_true", help="skip mlflow models serve")
    parser.add_argument("--no-odp-serve", action="store_true", help="skip the odp serve rows")
    parser.add_argument(
        "--duration", type=float, default=5.0, help="seconds per throughput measurement"
    )
    parser.add_argument("--_onnx", help=argparse.SUPPRESS)
    parser.add_argument("--_one_core", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._onnx:
        _onnx_child(args)
        return
    if args._one_core:
        _one_core_child(args)
        return

    from pipeline_lib.cpus import size_compute_threads

    threads = size_compute_threads()  # before MXNet is imported, as odp predict and the server

    import mlflow.pyfunc
    import pandas as pd

    from pipeline_lib.serving.mlflow_model import save_detector
    from pipeline_lib.serving.onnx_export import export_onnx
    from pipeline_lib.serving.request import PredictOptions, decode_request_image

    with tempfile.TemporaryDirectory(prefix="odp-bench-serve-") as tmp:
        root = Path(tmp)
        model, data = args.model, None
        if model is None:
            model, data = _tiny_model(root / "tiny")
        image = args.image or sorted((data or Path(".")).glob("validation/*.jpg"))[0]
        jpeg = image.read_bytes()

        pyfunc_dir = save_detector(model, root / "pyfunc")
        pyfunc = mlflow.pyfunc.load_model(str(pyfunc_dir))
        detector = pyfunc.unwrap_python_model().detector
        predictor = detector.predictor
        size = predictor.image_shape
        pixels = decode_request_image(jpeg, "image", size).pixels
        batch = predictor._preprocess([pixels])
        options = PredictOptions()

        def bare() -> None:
            ids, scores, boxes = predictor.net(batch)
            ids.asnumpy(), scores.asnumpy(), boxes.asnumpy()

        frame = pd.DataFrame({"image": [jpeg]})
        rows = _interleaved(
            {
                "bare": bare,
                "decode": lambda: decode_request_image(jpeg, "image", size),
                "predictor": lambda: predictor.predict_arrays([pixels]),
                "detector": lambda: detector.predict([jpeg], options),
                "pyfunc": lambda: pyfunc.predict(frame),
            },
            args.warmup,
            args.iterations,
        )
        # in a process of its own: onnxruntime's threads and MXNet's spin-wait for work
        # between calls, and each runtime's would slow the other's
        onnx_file = export_onnx(model, root / "model.onnx")
        rows["onnx"] = _onnx_row(onnx_file, image, args)
        servers: dict[str, tuple[tuple[float, float], dict[int, float]]] = {}
        one_core = None
        if not args.no_odp_serve:
            import shutil

            from pipeline_lib.artifact import extract

            served = extract(model, root / "served")  # the artifact and its ONNX export
            shutil.copy(onnx_file, served / "model.onnx")
            headers = {"Content-Type": "image/jpeg"}
            layouts = {
                "odp serve mxnet": ("mxnet", ()),
                "odp serve onnx": ("onnx", ()),
                "mxnet 1 worker": ("mxnet", ("--workers", "1")),  # every CPU's threads in one
            }
            for name, (runtime, extra) in layouts.items():
                log = root / f"{name.replace(' ', '-')}.log"
                proc, url = _odp_serve(served, runtime, log, extra)
                try:
                    post = _poster(url, "/endpoints/bench/invocations", jpeg, headers)
                    servers[name] = _server_rows(post, args)
                finally:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(timeout=60)
            one_core = _one_core_ms(model, image, args)
        if not args.no_http:
            proc, url = _serve(pyfunc_dir, root / "serve.log")
            body = json.dumps(
                {
                    "dataframe_split": {
                        "columns": ["image"],
                        "data": [[base64.b64encode(jpeg).decode()]],
                    }
                }
            ).encode()

            def http() -> None:
                req = urllib.request.Request(  # noqa: S310  loopback
                    f"{url}/invocations", body, {"Content-Type": "application/json"}
                )
                with urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310  loopback
                    resp.read()

            try:
                rows["http"] = _timed(http, args.warmup, args.iterations)
                if not args.no_odp_serve:
                    mlflow_post = _poster(
                        url, "/invocations", body, {"Content-Type": "application/json"}
                    )
                    servers["mlflow serve"] = (
                        rows["http"],
                        {n: _throughput(mlflow_post, n, args.duration) for n in CLIENTS},
                    )
            finally:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=30)

    print(
        f"model {model.name if args.model else 'smoke-test (1 epoch)'}, image {image.name}, "
        f"input {size}x{size}, CPU ({threads} operator threads), batch 1, "
        f"{args.iterations} calls after {args.warmup} warm-up"
    )
    base50, base95 = rows["bare"]
    print(f"{'path':<10} {'p50 ms':>9} {'p95 ms':>9} {'vs bare p50':>12} {'vs bare p95':>12}")
    for name, (p50, p95) in rows.items():
        print(
            f"{name:<10} {p50:9.2f} {p95:9.2f} {p50 / base50 - 1:+11.1%} {p95 / base95 - 1:+11.1%}"
        )
    p50 = {name: value[0] for name, value in rows.items()}
    parts = {
        "JPEG decode": p50["decode"],
        "resize, input, boxes to pixels": p50["predictor"] - p50["bare"],
        "our request/response code": p50["detector"] - p50["predictor"] - p50["decode"],
        "MLflow's per-call input handling": p50["pyfunc"] - p50["detector"],
    }
    print("pyfunc overhead over bare at p50, by part (differences of medians):")
    for name, ms in parts.items():
        print(f"  {name:<34} {ms:6.2f} ms  {ms / base50:+6.1%}")
    overhead = p50["pyfunc"] / base50 - 1
    print(f"pyfunc overhead at p50: {overhead:+.1%} (goal <= +10%)")
    if servers:
        _print_servers(servers, p50["decode"] + p50["bare"], one_core)


def _print_servers(
    servers: dict[str, tuple[tuple[float, float], dict[int, float]]],
    decode_bare: float,
    one_core_ms: float | None,
) -> None:
    from pipeline_lib.cpus import available_cpus

    cpus = available_cpus()
    goal = 1.10 * decode_bare + 1.0
    print(
        f"\nHTTP servers, one JPEG per request (decode + bare = {decode_bare:.2f} ms; "
        f"latency goal p50 <= 1.10x + 1 ms = {goal:.2f} ms)"
    )
    print(
        f"{'server':<16} {'p50 ms':>8} {'p95 ms':>8} {'p50 / (decode+bare)':>20} {'goal':>5}"
        f" {'vs 1 core':>10}"
    )
    for name, ((s50, s95), _) in servers.items():
        ok = "ok" if s50 <= goal else "miss"
        core = f"{s50 / one_core_ms:9.2f}x" if one_core_ms else f"{'-':>10}"
        print(f"{name:<16} {s50:8.2f} {s95:8.2f} {s50 / decode_bare:19.2f}x {ok:>5} {core}")
    ideal = cpus * 1e3 / one_core_ms if one_core_ms else None
    head = "".join(f"{f'{n} cl':>9}" for n in CLIENTS)
    print(f"\nthroughput, requests/s{'':<4}{head} {'best / ideal':>13} {'best / mlflow':>14}")
    mlflow_best = max(servers["mlflow serve"][1].values()) if "mlflow serve" in servers else None
    for name, (_, rates) in servers.items():
        best = max(rates.values())
        cells = "".join(f"{rates[n]:9.1f}" for n in CLIENTS)
        vs_ideal = f"{best / ideal:12.2f}x" if ideal else f"{'-':>13}"
        vs_mlflow = f"{best / mlflow_best:13.2f}x" if mlflow_best else f"{'-':>14}"
        print(f"{name:<26}{cells} {vs_ideal} {vs_mlflow}")
    if ideal:
        print(
            f"ideal = {cpus} usable CPUs x one core's decode + forward "
            f"({one_core_ms:.2f} ms, OMP_NUM_THREADS=1) = {ideal:.1f} requests/s; "
            "goals: best >= 0.85x ideal, >= 2x mlflow serve"
        )


if __name__ == "__main__":
    main()
