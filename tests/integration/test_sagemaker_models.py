"""SageMaker's own models both ways, through real processes: `odp train` with
model_format=sagemaker writes what a SageMaker job writes (the same training graph as
example/ssd builds, arg:/aux: weights, SageMaker's hyperparameter names); a SageMaker
job's archive seeds training (its format wins; frozen layers stay); registered with
`odp register --class-map`, it is served by `mlflow models serve`."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest
import sagemaker_models
from servers import free_port, wait_for_http
from training_job import CHANNELS

from pipeline_lib.artifact import (
    CLASS_MAP,
    HYPERPARAMS,
    INFERENCE_SYMBOL,
    PARAMS,
    SYMBOL,
    archive_config,
    package,
)
from pipeline_lib.hyperparameters import SAGEMAKER_NAMES
from pipeline_lib.serving.detector import Detector
from pipeline_lib.serving.request import PredictOptions
from pipeline_lib.training.contract import prepare_ml_root

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
ODP = [sys.executable, "-m", "pipeline_lib.cli"]


def _hp(**over) -> dict:
    return {
        "num_classes": 2,
        "num_training_samples": 16,
        "use_pretrained_model": 0,
        "epochs": 1,
        "mini_batch_size": 8,  # two CPU replicas of 4 on 2 cores
        "optimizer": "adam",
        "learning_rate": 0.0001,
        "augmentation": "flip",
        "num_workers": 0,
        "seed": 2,
        **over,
    }


def _train(ml_root: Path) -> subprocess.CompletedProcess:
    # the CPU layout odp train plans itself (an in-process `odp` command of another test may
    # have set OMP_NUM_THREADS in this process, which training would respect)
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "ODP_CPU_STREAMS")}
    result = subprocess.run(  # noqa: S603  our own CLI, argv built by this test
        [*ODP, "train", "--ml-root", str(ml_root)],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def _nodes(symbol_json: str) -> list[tuple]:
    data = json.loads(symbol_json)
    return [(n["op"], n["name"], n["inputs"], n.get("attrs", {})) for n in data["nodes"]] + [
        data["heads"]
    ]


def _is_sagemakers_artifact(model: Path, base: str, classes: int, nms: float = 0.45) -> dict:
    """The files SageMaker writes, its graph node for node, weights named and shaped by it;
    returns the weights."""
    names = {p.name for p in model.iterdir()}
    assert {SYMBOL, PARAMS, HYPERPARAMS, CLASS_MAP, INFERENCE_SYMBOL} == names, names
    symbol = sagemaker_models.training_symbol(base, 300, classes, nms_threshold=nms)
    assert _nodes((model / SYMBOL).read_text()) == _nodes(symbol.tojson())
    weights = mx.nd.load(str(model / PARAMS))
    args, _, aux = symbol.infer_shape(data=(1, 3, 300, 300), label=(1, 1, 5))
    want = {f"arg:{n}": s for n, s in zip(symbol.list_arguments(), args, strict=True)} | {
        f"aux:{n}": s for n, s in zip(symbol.list_auxiliary_states(), aux, strict=True)
    }
    del want["arg:data"], want["arg:label"]
    assert {k: v.shape for k, v in weights.items()} == want
    hp = json.loads((model / HYPERPARAMS).read_text())
    assert set(hp) <= set(SAGEMAKER_NAMES) and hp["base_network"] == base, hp
    assert all(isinstance(v, str) for v in hp.values())
    return weights


def test_odp_train_writes_sagemakers_vgg16_graph(training_data: Path, tmp_path: Path) -> None:
    channels = {c: training_data / c for c in CHANNELS}
    hp = _hp(base_network="vgg-16", model_format="sagemaker")
    paths = prepare_ml_root(tmp_path / "ml", channels, hp)
    result = _train(paths.root)
    assert "CPU: 2 training streams of 4 images" in result.stdout + result.stderr
    assert "#quality_metric: host=algo-1, epoch=0, validation mAP" in result.stdout
    _is_sagemakers_artifact(paths.model, "vgg-16", 2)
    assert json.loads((paths.model / CLASS_MAP).read_text()) == {"0": "circle", "1": "square"}
    # the inference extra loads with plain MXNet on the same weights
    net = mx.gluon.SymbolBlock.imports(
        str(paths.model / INFERENCE_SYMBOL), ["data"], str(paths.model / PARAMS)
    )
    assert net(mx.nd.zeros((1, 3, 300, 300))).shape == (1, 8732, 6)


def test_a_sagemaker_archive_seeds_training_and_its_format_wins(
    training_data: Path, tmp_path: Path
) -> None:
    seed = tmp_path / "seed"
    tar = sagemaker_models.write_artifact(seed, "resnet-50", 300, 2, seed=5)
    seed_weights = {
        k.split(":")[1]: v for k, v in mx.nd.load(_member(tar, PARAMS, tmp_path)).items()
    }
    channels = {**{c: training_data / c for c in CHANNELS}, "model": seed}
    # model_format is left at gluoncv: the seed's own format wins
    hp = _hp(base_network="resnet-50", freeze_layer_pattern="^(bn_data|conv0|stage1_)")
    paths = prepare_ml_root(tmp_path / "ml", channels, hp)
    result = _train(paths.root)
    out = result.stdout + result.stderr
    assert (
        "the model channel holds a sagemaker-format model: training model_format=sagemaker" in out
    )
    assert "validation mAP of the seed model before training" in out
    metrics = json.loads((paths.output / "metrics.json").read_text())
    assert metrics["initial_validation:mAP"] is not None
    weights = {
        k.split(":")[1]: v for k, v in _is_sagemakers_artifact(paths.model, "resnet-50", 2).items()
    }
    if metrics["best_epoch"] == -1:  # the seed stayed the best: written as it was
        changed = []
    else:
        changed = [
            n
            for n in weights
            if not np.array_equal(weights[n].asnumpy(), seed_weights[n].asnumpy())
        ]
        assert changed, "training changed nothing"
    frozen = [
        n for n in weights if n.startswith(("bn_data", "conv0", "stage1_")) and "moving" not in n
    ]
    assert frozen and not set(frozen) & set(changed)
    # the data named its classes: the written archive carries them
    assert archive_config(package(paths.model, tmp_path / "model.tar.gz")).classes == {
        0: "circle",
        1: "square",
    }


def _member(tar: Path, name: str, tmp: Path) -> str:
    import tarfile

    with tarfile.open(tar) as archive:
        archive.extract(name, tmp / "members", filter="data")
    return str(tmp / "members" / name)


def test_a_registered_sagemaker_archive_is_served_by_mlflow(
    mlflow_server, training_data: Path, tmp_path: Path
) -> None:
    tar = sagemaker_models.write_artifact(tmp_path / "job", "resnet-50", 300, 2, seed=4)
    names = tmp_path / "class_map.json"
    names.write_text(json.dumps({"0": "circle", "1": "square"}))
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server.url, "TMPDIR": str(tmp_path)}
    registered = subprocess.run(  # noqa: S603  our own CLI, argv built by this test
        [*ODP, "register", str(tar), "--name", "from-sagemaker", "--class-map", str(names)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert registered.returncode == 0, registered.stderr[-3000:]
    version = json.loads(registered.stdout.strip().splitlines()[-1])[
        "version"
    ]  # after MLflow's lines

    mlflow = Path(sys.executable).parent / "mlflow"
    port = free_port()
    path = os.pathsep.join([str(REPO), str(REPO / "plugins"), os.environ.get("PYTHONPATH", "")])
    serve_env = {**env, "PYTHONPATH": path, "PATH": f"{mlflow.parent}:{os.environ['PATH']}"}
    log = tmp_path / "serve.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(  # noqa: S603  test-built argv
            [str(mlflow), "models", "serve", "-m", f"models:/from-sagemaker/{version}"]
            + ["--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
            env=serve_env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        assert wait_for_http(f"{url}/ping", 300, proc), log.read_text()[-4000:]
        image = sorted((training_data / "validation").glob("*.jpg"))[0]
        body = {
            "dataframe_split": {
                "columns": ["image"],
                "data": [[base64.b64encode(image.read_bytes()).decode()]],
            },
            "params": {"accept": "application/json;annotation=1", "max_detections": 5},
        }
        import urllib.request

        request = urllib.request.Request(  # noqa: S310  http://127.0.0.1 URL the test built
            f"{url}/invocations", json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=120) as resp:  # noqa: S310  local server
            served = json.loads(resp.read())["predictions"][0]
        direct = Detector.load(tar, class_names={0: "circle", 1: "square"}).predict(
            [image.read_bytes()], PredictOptions(max_detections=5, verbose=True)
        )[0]
        assert served == direct
        assert served["categories"][1] == {"class_id": 1, "name": "square"}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    shutil.rmtree(tmp_path / "job", ignore_errors=True)
