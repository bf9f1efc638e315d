"""pipeline_lib.registry against a throw-away SQLite MLflow store."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline_lib import registry
from pipeline_lib.settings import load_settings

CLASS_MAP = {"0": "circle", "1": "square"}


def make_model_dir(folder: Path, payload: str = "weights") -> Path:
    """A folder shaped like ML_ROOT/model (contents are stand-ins, not a real network)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model_algo_1-symbol.json").write_text('{"nodes": []}')
    (folder / "model_algo_1-0000.params").write_text(payload)
    (folder / "hyperparams.json").write_text(json.dumps({"epochs": "2"}))
    (folder / "class_map.json").write_text(json.dumps(CLASS_MAP))
    return folder


def make_tar(folder: Path, payload: str = "weights") -> Path:
    src = make_model_dir(folder / "src", payload)
    tar_path = folder / "model.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        for f in sorted(src.iterdir()):
            tar.add(f, arcname=f.name)
    return tar_path


def write_metrics(path: Path, value: float) -> Path:
    path.write_text(json.dumps({"metrics": {"mAP": value, "AP": {"circle": value, "square": 0}}}))
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One SQLite store for the module (MLflow's schema set-up costs seconds); cwd elsewhere."""
    home = tmp_path_factory.mktemp("registry-home")
    cwd = tmp_path_factory.mktemp("registry-cwd")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ODP_HOME", str(home))
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow' / 'mlflow.db'}")
        mp.setenv("ODP_MLFLOW_ARTIFACTS", str(home / "mlflow" / "artifacts"))
        mp.delenv("MLFLOW_REGISTRY_URI", raising=False)
        mp.delenv("ODP_MLFLOW_EXPERIMENT", raising=False)
        mp.chdir(cwd)
        yield cwd


def test_flatten_metrics_unwraps_and_skips_non_numbers() -> None:
    flat = registry.flatten_metrics(
        {
            "metrics": {
                "mAP": 0.5,
                "AP": {"circle": 0.25, "sq uare!": 1},
                "n": True,
                "name": "x",
                "nan": float("nan"),
                "curve": [1, 2],
            }
        }
    )
    assert flat == {"mAP": 0.5, "AP/circle": 0.25, "AP/sq uare_": 1.0}


def test_register_logs_run_and_creates_candidate_version(store: Path, tmp_path: Path) -> None:
    model_dir = make_model_dir(tmp_path / "model")
    info = registry.register_model(
        model_dir,
        "reg-basic",
        metrics_path=write_metrics(tmp_path / "metrics.json", 0.5),
        run_name="train-1",
        params={"epochs": 2, "base_network": "mobilenet-0.25"},
        epoch_metrics=[
            {"epoch": 0, "train_cross_entropy": 2.0, "validation_mAP": 0.1},
            {"epoch": 1, "train_cross_entropy": 1.5, "validation_mAP": 0.4},
        ],
        tags={"dataset_uri": "/data/x"},
    )
    assert info["name"] == "reg-basic"
    assert info["version"] == 1
    assert info["created"] is True
    assert info["aliases"] == ["candidate"]
    assert info["model_uri"] == "models:/reg-basic/1"
    assert info["metrics"]["mAP"] == 0.5

    client = registry.get_client()
    run = client.get_run(info["run_id"])
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "train-1"
    assert run.data.params["epochs"] == "2"
    assert run.data.params["base_network"] == "mobilenet-0.25"
    assert run.data.metrics["mAP"] == 0.5
    assert run.data.metrics["AP/circle"] == 0.5
    assert run.data.tags["dataset_uri"] == "/data/x"
    history = client.get_metric_history(info["run_id"], "validation_mAP")
    assert [(m.step, m.value) for m in history] == [(0, 0.1), (1, 0.4)]

    names = {a.path for a in client.list_artifacts(info["run_id"], "model")}
    assert names == {
        "model/model.tar.gz",
        "model/class_map.json",
        "model/hyperparams.json",
        "model/metrics.json",
    }
    # artifacts live in the local artifact folder, never in ./mlruns of the current directory
    artifacts = Path(load_settings().mlflow_artifacts).resolve()
    assert info["source"].startswith(artifacts.as_uri())
    assert not (store / "mlruns").exists()
    experiment = client.get_experiment_by_name(registry.DEFAULT_EXPERIMENT)
    assert experiment.artifact_location.startswith(artifacts.as_uri())
    assert client.get_experiment("0").artifact_location.startswith(artifacts.as_uri())


def test_register_accepts_a_tarball(store: Path, tmp_path: Path) -> None:
    tar_path = make_tar(tmp_path)
    info = registry.register_model(tar_path, "reg-tar", metrics={"mAP": 0.25})
    local = registry.resolve_model_uri(info["model_uri"])
    assert local.read_bytes() == tar_path.read_bytes()
    downloaded = local.parent
    assert json.loads((downloaded / "class_map.json").read_text()) == CLASS_MAP
    assert info["metrics"] == {"mAP": 0.25}


def test_register_is_idempotent_per_key(store: Path, tmp_path: Path) -> None:
    model_dir = make_model_dir(tmp_path / "model")
    key = "object_detection_training/manual__2024-01-01T00:00:00+00:00"
    first = registry.register_model(
        model_dir, "reg-idem", metrics={"mAP": 0.3}, idempotency_key=key
    )
    again = registry.register_model(
        model_dir, "reg-idem", metrics={"mAP": 0.3}, idempotency_key=key
    )
    assert again["created"] is False
    assert again["aliases"] == ["candidate"]
    assert (again["version"], again["run_id"]) == (first["version"], first["run_id"])
    # the key may also come in as a tag
    tagged = registry.register_model(
        model_dir, "reg-idem", tags={registry.IDEMPOTENCY_TAG: key}, metrics={"mAP": 0.3}
    )
    assert tagged["version"] == first["version"]

    client = registry.get_client()
    assert len(client.search_model_versions("name = 'reg-idem'")) == 1
    exp = client.get_experiment_by_name(registry.DEFAULT_EXPERIMENT)
    runs = client.search_runs([exp.experiment_id], f"tags.`{registry.IDEMPOTENCY_TAG}` = '{key}'")
    assert len(runs) == 1

    other = registry.register_model(model_dir, "reg-idem", idempotency_key="dag/other-run")
    assert other["created"] is True and other["version"] == first["version"] + 1


def test_retry_after_crash_reuses_finished_run(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    model_dir = make_model_dir(tmp_path / "model")
    original = MlflowClient.create_model_version
    calls = {"n": 0}

    def crash_once(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("worker died")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "create_model_version", crash_once)
    with pytest.raises(RuntimeError, match="worker died"):
        registry.register_model(model_dir, "reg-crash", metrics={"mAP": 0.1}, idempotency_key="k1")
    info = registry.register_model(
        model_dir, "reg-crash", metrics={"mAP": 0.1}, idempotency_key="k1"
    )
    assert info["created"] is True and info["version"] == 1

    client = registry.get_client()
    exp = client.get_experiment_by_name(registry.DEFAULT_EXPERIMENT)
    runs = client.search_runs([exp.experiment_id], f"tags.`{registry.IDEMPOTENCY_TAG}` = 'k1'")
    assert [r.info.run_id for r in runs] == [info["run_id"]]


def test_live_run_from_training_is_completed_by_registration(store: Path, tmp_path: Path) -> None:
    """start_run opens the run training logs into; a retry gets it back; register_model with
    the same key fills that run (no second run, no duplicated epoch metrics)."""
    from mlflow.entities import Metric

    key = "object_detection_training/live__1"
    run_id = registry.start_run(key, run_name="live", tags={"odp.dataset_uri": "/data"})
    assert registry.start_run(key) == run_id  # the train task retried
    client = registry.get_client()
    client.log_batch(
        run_id, metrics=[Metric("validation_mAP", v, 0, e) for e, v in [(0, 0.2), (1, 0.4)]]
    )
    epochs = [{"epoch": 0, "validation_mAP": 0.2}, {"epoch": 1, "validation_mAP": 0.4}]
    info = registry.register_model(
        make_model_dir(tmp_path / "model"),
        "reg-live",
        metrics={"mAP": 0.4},
        epoch_metrics=epochs,
        idempotency_key=key,
        params={"epochs": "2"},
    )
    assert info["created"] is True and info["run_id"] == run_id
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.params["epochs"] == "2"
    assert run.data.tags["odp.dataset_uri"] == "/data" and run.data.metrics["mAP"] == 0.4
    history = client.get_metric_history(run_id, "validation_mAP")
    assert [(m.step, m.value) for m in history] == [(0, 0.2), (1, 0.4)]

    # the whole DAG run again: the version exists, and the new live run does not linger
    rerun = registry.start_run(key)
    assert rerun != run_id
    again = registry.register_model(
        make_model_dir(tmp_path / "model"), "reg-live", metrics={"mAP": 0.4}, idempotency_key=key
    )
    assert again["created"] is False and again["run_id"] == run_id
    assert client.get_run(rerun).info.status == "KILLED"


def test_candidate_moves_and_champion_follows_the_metric(store: Path, tmp_path: Path) -> None:
    name = "reg-promote"
    model_dir = make_model_dir(tmp_path / "model")

    def reg(value: float | None) -> int:
        metrics = {"mAP": value} if value is not None else None
        return registry.register_model(model_dir, name, metrics=metrics)["version"]

    assert registry.get_champion(name) is None
    v1 = reg(0.40)
    first = registry.promote_if_better(name, v1)
    assert first["promoted"] is True and first["reason"] == "no champion yet"
    assert registry.get_champion(name)["version"] == v1
    assert registry.promote_if_better(name, v1)["promoted"] is False  # already champion

    v2 = reg(0.35)
    assert registry.get_candidate(name)["version"] == v2
    worse = registry.promote_if_better(name, v2)
    assert worse["promoted"] is False
    assert (worse["candidate_value"], worse["champion_value"]) == (0.35, 0.40)
    assert worse["champion"] == v1

    v3 = reg(0.42)
    assert registry.promote_if_better(name, v3, margin=0.05)["promoted"] is False
    better = registry.promote_if_better(name, v3, margin=0.01)
    assert better["promoted"] is True and better["previous_champion"] == v1
    champion = registry.get_champion(name)
    assert champion["version"] == v3
    assert champion["aliases"] == ["candidate", "champion"]
    assert champion["metrics"]["mAP"] == 0.42

    v4 = reg(None)  # no metric: never replaces a champion that has one
    assert registry.promote_if_better(name, v4)["promoted"] is False

    client = registry.get_client()
    versions = {v: client.get_model_version(name, str(v)) for v in (v1, v2, v3, v4)}
    assert versions[v1].aliases == []
    assert versions[v3].aliases == ["champion"]
    assert versions[v4].aliases == ["candidate"]
    assert all(v.current_stage in ("None", None) for v in versions.values())  # no stages


def test_resolve_model_uri_forms(store: Path, tmp_path: Path) -> None:
    tar_path = make_tar(tmp_path / "a", payload="A")
    info = registry.register_model(tar_path, "reg-resolve", metrics={"mAP": 0.9})
    registry.promote_if_better("reg-resolve", info["version"])

    by_alias = registry.resolve_model_uri("models:/reg-resolve@champion")
    assert by_alias.name == "model.tar.gz"
    assert by_alias.read_bytes() == tar_path.read_bytes()
    assert registry.resolve_model_uri("models:/reg-resolve@champion") == by_alias  # cached
    by_version = registry.resolve_model_uri("models:/reg-resolve/1", dst=tmp_path / "dl")
    assert by_version.read_bytes() == tar_path.read_bytes()
    assert tmp_path / "dl" in by_version.parents
    by_run = registry.resolve_model_uri(f"runs:/{info['run_id']}/model", dst=tmp_path / "dl2")
    assert by_run.read_bytes() == tar_path.read_bytes()

    assert registry.resolve_model_uri(tar_path) == tar_path
    assert registry.resolve_model_uri(tar_path.parent) == tar_path
    bare = make_model_dir(tmp_path / "bare")
    tarred = registry.resolve_model_uri(bare, dst=tmp_path / "out")
    with tarfile.open(tarred) as tar:
        assert "class_map.json" in tar.getnames()
    with pytest.raises(FileNotFoundError):
        registry.resolve_model_uri(tmp_path / "missing")
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException):
        registry.resolve_model_uri("models:/reg-resolve@nope")


def test_experiment_and_tracking_uri_overrides(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = f"sqlite:///{tmp_path / 'other.db'}"
    monkeypatch.setenv("ODP_MLFLOW_EXPERIMENT", "custom-exp")
    info = registry.register_model(
        make_model_dir(tmp_path / "m"), "reg-other", tracking_uri=other, metrics={"mAP": 0.1}
    )
    client = registry.get_client(other)
    assert client.get_run(info["run_id"]).info.experiment_id == info["experiment_id"]
    assert client.get_experiment(info["experiment_id"]).name == "custom-exp"
    assert registry.get_candidate("reg-other") is None  # not in the default store
    assert registry.get_candidate("reg-other", tracking_uri=other)["version"] == 1


def test_s3_model_in_and_out(store: Path, tmp_path: Path, s3) -> None:
    tar_path = make_tar(tmp_path, payload="from-s3")
    s3.client().upload_file(str(tar_path), s3.bucket, "jobs/1/output/model.tar.gz")

    info = registry.register_model(s3.uri("jobs/1/output/model.tar.gz"), "reg-s3")
    local = registry.resolve_model_uri(info["model_uri"], dst=tmp_path / "dl")
    assert local.read_bytes() == tar_path.read_bytes()

    by_key = registry.resolve_model_uri(s3.uri("jobs/1/output/model.tar.gz"), dst=tmp_path / "a")
    by_prefix = registry.resolve_model_uri(s3.uri("jobs/1/output"), dst=tmp_path / "b")
    assert by_key.read_bytes() == by_prefix.read_bytes() == tar_path.read_bytes()


def test_artifact_root_may_be_s3(tmp_path: Path, s3, monkeypatch: pytest.MonkeyPatch) -> None:
    """A SQLite (or other database) store used without a server can keep artifacts in S3."""
    monkeypatch.setenv("ODP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ODP_MLFLOW_ARTIFACTS", s3.uri("mlflow"))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tar_path = make_tar(tmp_path, payload="s3-artifacts")
    info = registry.register_model(tar_path, "reg-s3-root", tracking_uri=uri, metrics={"mAP": 1})
    assert info["source"].startswith(f"s3://{s3.bucket}/mlflow/")
    assert any(k.endswith("model/model.tar.gz") for k in s3.keys("mlflow/"))
    local = registry.resolve_model_uri("models:/reg-s3-root/1", tracking_uri=uri)
    assert local.read_bytes() == tar_path.read_bytes()
