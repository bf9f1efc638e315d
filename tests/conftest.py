"""Shared fixtures. Tests are self-contained: no network, all state under pytest's tmp_path.

Add new fixtures by appending sections below; keep each section self-contained.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from servers import free_port, wait_for_http

REPO_ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def _render_airflow_cfg() -> None:
    from odp_airflow.local.config import render_config

    render_config()


# Tests never touch the user's local state (.local/, what `make ui` shows): the whole session
# gets its own throw-away ODP_HOME, Airflow home, MLflow store and artifact root, set here,
# before any test module imports Airflow (which reads AIRFLOW_HOME once, at import).
# MXNET_HOME (pretrained-weight cache) is left alone: tests that need weights make their own.
SESSION_HOME = Path(tempfile.mkdtemp(prefix="odp-test-home-"))
os.environ["ODP_HOME"] = str(SESSION_HOME)
os.environ["AIRFLOW_HOME"] = str(SESSION_HOME / "airflow")
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{SESSION_HOME / 'mlflow' / 'mlflow.db'}"
os.environ["ODP_MLFLOW_ARTIFACTS"] = str(SESSION_HOME / "mlflow" / "artifacts")
os.environ["ODP_ARTIFACT_ROOT"] = str(SESSION_HOME / "artifacts")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
for _name in ("MLFLOW_REGISTRY_URI", "ODP_MLFLOW_EXPERIMENT", "ODP_DEFAULT_DATASET"):
    os.environ.pop(_name, None)
# airflow.cfg exists before anything imports Airflow, so the in-process Airflow (dag.test())
# reads the same settings as the local stack: dags/ and plugins/ from this checkout, SQLite.
_render_airflow_cfg()


def pytest_unconfigure(config: pytest.Config) -> None:  # noqa: ARG001
    shutil.rmtree(SESSION_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """The session's Airflow home (the one Airflow was imported with): airflow.cfg rendered,
    SQLite DB migrated, once."""
    home = SESSION_HOME / "airflow"
    stamp = home / ".odp-db-migrated"
    if not stamp.exists():
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
        env.update(ODP_HOME=str(SESSION_HOME), AIRFLOW_HOME=str(home))
        env["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
        airflow = VENV_BIN / "airflow"
        subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True, env=env)  # noqa: S603  test-built argv, no shell
        stamp.touch()
    return home


# ------------------------------------------------------------------ local state in tmp_path


@dataclass(frozen=True)
class OdpHome:
    """Locations of a throw-away ODP_HOME (what :mod:`pipeline_lib.settings` resolves)."""

    home: Path
    airflow_home: Path
    mlflow_tracking_uri: str
    mlflow_artifacts: Path
    artifact_root: Path


@pytest.fixture
def odp_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> OdpHome:
    """Point ODP_HOME, MLFLOW_TRACKING_URI, AIRFLOW_HOME, ... at a fresh folder in tmp_path.

    Only the environment changes: Airflow, once imported, keeps the AIRFLOW_HOME it was
    imported with, so use this for pipeline_lib code and for subprocesses.
    """
    home = tmp_path / "odp-home"
    home.mkdir()
    env = OdpHome(
        home=home,
        airflow_home=home / "airflow",
        mlflow_tracking_uri=f"sqlite:///{home / 'mlflow' / 'mlflow.db'}",
        mlflow_artifacts=home / "mlflow" / "artifacts",
        artifact_root=home / "artifacts",
    )
    monkeypatch.setenv("ODP_HOME", str(env.home))
    monkeypatch.setenv("AIRFLOW_HOME", str(env.airflow_home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", env.mlflow_tracking_uri)
    monkeypatch.setenv("ODP_MLFLOW_ARTIFACTS", str(env.mlflow_artifacts))
    monkeypatch.setenv("ODP_ARTIFACT_ROOT", str(env.artifact_root))
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.delenv("ODP_MLFLOW_EXPERIMENT", raising=False)
    return env


# ------------------------------------------------------------------ a real MLflow server


@dataclass(frozen=True)
class MlflowServer:
    """A running ``mlflow server`` (SQLite backend, artifacts proxied to a local folder)."""

    url: str
    backend_store_uri: str
    artifacts_destination: Path
    log_path: Path


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """Start ``mlflow server`` on a free 127.0.0.1 port for the whole session.

    Clients talk to it over HTTP only (``tracking_uri=mlflow_server.url``); artifacts are
    uploaded through the server (``mlflow-artifacts:/``), as with a production server.
    """
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    backend = f"sqlite:///{root / 'mlflow.db'}"
    artifacts = root / "artifacts"
    log_path = root / "server.log"
    mlflow_bin = VENV_BIN / "mlflow"
    cmd = [
        str(mlflow_bin) if mlflow_bin.exists() else shutil.which("mlflow") or "mlflow",
        "server",
        "--backend-store-uri",
        backend,
        "--artifacts-destination",
        str(artifacts),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"  # no background job workers
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(  # noqa: S603  test-built argv, no shell
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_for_http(f"{url}/health", timeout=180, proc=proc):
            tail = log_path.read_text(errors="replace")[-4000:]
            pytest.fail(f"mlflow server did not start (exit {proc.poll()}):\n{tail}")
        yield MlflowServer(url, backend, artifacts, log_path)
    finally:
        # the whole process group: the server and its uvicorn workers
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# ------------------------------------------------------------------ a real S3 endpoint (moto)


@dataclass(frozen=True)
class S3Endpoint:
    """A moto S3 server on 127.0.0.1 and a fresh, empty bucket for this test."""

    endpoint_url: str
    bucket: str

    def uri(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{key.lstrip('/')}" if key else f"s3://{self.bucket}"

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name="us-east-1")

    def keys(self, prefix: str = "") -> list[str]:
        resp = self.client().list_objects_v2(Bucket=self.bucket, Prefix=prefix)
        return sorted(obj["Key"] for obj in resp.get("Contents", []))


@pytest.fixture(scope="session")
def moto_server_url() -> Iterator[str]:
    """Start ``moto.server.ThreadedMotoServer`` (real HTTP) on a free 127.0.0.1 port."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(moto_server_url: str, monkeypatch: pytest.MonkeyPatch) -> S3Endpoint:
    """Point boto3 (``AWS_ENDPOINT_URL``, fake credentials) at the moto server; new bucket."""
    import uuid

    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL_S3", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    endpoint = S3Endpoint(moto_server_url, f"odp-test-{uuid.uuid4().hex[:12]}")
    endpoint.client().create_bucket(Bucket=endpoint.bucket)
    return endpoint


# ------------------------------------------------------------------ the tiny training job


@pytest.fixture(scope="session")
def training_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dataset of ``training_job`` (20 synthetic images), generated once per session."""
    from training_job import make_dataset

    return make_dataset(tmp_path_factory.mktemp("training-data"))


# ------------------------------------------------------------------ trained models (serving)


@pytest.fixture(scope="session")
def tiny_model(training_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real ``model.tar.gz`` of the tiny training job (1 epoch): for code paths, not
    accuracy."""
    from training_job import layout

    from pipeline_lib.artifact import package
    from pipeline_lib.training.entrypoint import run_training

    root = tmp_path_factory.mktemp("tiny-model")
    paths = layout(root / "ml", training_data, epochs=1)
    assert run_training(str(paths.root)) == 0
    return Path(package(paths.model, root / "model.tar.gz"))


def legacy_export(tar: Path, dest: Path) -> Path:
    """The artifact folder of ``tar`` as the export wrote it before the graph normalised its
    input: the same weights (its Gluon parameters), the SSD exported alone, taking the
    normalised NCHW batch."""
    import mxnet as mx

    from pipeline_lib.artifact import GLUON_PARAMS, PREFIX, extract, read_artifact_config
    from pipeline_lib.training.model import build_ssd

    folder = extract(tar, dest)
    hp, classes = read_artifact_config(folder, tar)
    size, nms = int(hp["image_shape"]), float(hp["nms_threshold"])
    net = build_ssd(hp["base_network"], [classes[i] for i in sorted(classes)], size)
    net.load_parameters(str(folder / GLUON_PARAMS))
    net.set_nms(nms_thresh=nms, nms_topk=400, post_nms=100)
    net.hybridize(static_alloc=True, static_shape=True)
    net(mx.nd.zeros((1, 3, size, size)))
    net.export(str(folder / PREFIX), epoch=0)
    return folder


@pytest.fixture(scope="session")
def legacy_model(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny_model`` exported the old way (:func:`legacy_export`), an artifact folder."""
    return legacy_export(tiny_model, tmp_path_factory.mktemp("legacy-model") / "model")


@dataclass(frozen=True)
class LearnedModel:
    """A model that has learned the synthetic shapes, with its dataset and final mAP."""

    tar: Path
    dataset: Path
    mAP: float
    first_epoch_mAP: float  # where training from scratch started


@pytest.fixture(scope="session")
def learned_model(tmp_path_factory: pytest.TempPathFactory) -> LearnedModel:
    """20 epochs of the from-scratch recipe on 96 synthetic images (under a minute on a
    CPU): boxes that overlap the objects, and an mAP a seeded run must start at."""
    import json

    from pipeline_lib.artifact import package
    from pipeline_lib.synthetic import SynthConfig, generate
    from pipeline_lib.training.contract import prepare_ml_root
    from pipeline_lib.training.entrypoint import run_training
    from pipeline_lib.training.recipes import FROM_SCRATCH_CPU

    root = tmp_path_factory.mktemp("learned-model")
    data = root / "data"
    generate(data, SynthConfig(images=120, classes=2, seed=11, max_objects=2))
    hp = {
        **FROM_SCRATCH_CPU,  # climbs steadily (sgd 0.01 from scratch ends anywhere in 0.05-0.5)
        "num_classes": 2,
        "num_training_samples": 96,
        "base_network": "mobilenet-0.25",
        "use_pretrained_model": 0,
        "epochs": 20,
        "seed": 1,
        "num_workers": 0,
    }
    channels = {
        c: data / c for c in ("train", "validation", "train_annotation", "validation_annotation")
    }
    paths = prepare_ml_root(root / "ml", channels, hp)
    assert run_training(str(paths.root)) == 0
    metrics = json.loads((paths.output / "metrics.json").read_text())
    assert metrics["validation:mAP"] > 0.8, metrics
    tar = Path(package(paths.model, root / "model.tar.gz"))
    return LearnedModel(
        tar, data, metrics["validation:mAP"], metrics["epochs"][0]["validation_mAP"]
    )
