"""pipeline_lib.registry.versions: registration, idempotency per key, the candidate alias."""

from __future__ import annotations

import json
from pathlib import Path

from registry_testdata import CLASS_MAP, make_model_dir, make_tar, write_metrics

from pipeline_lib import registry
from pipeline_lib.settings import load_settings


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

    names = {a.path for a in client.list_artifacts(info["run_id"], "evaluation")}
    assert names == {"evaluation/metrics.json"}
    # the version is the run's pyfunc (a LoggedModel) holding the original model.tar.gz
    model = client.get_logged_model(run.data.tags[registry.MODEL_ID_TAG])
    assert info["source"] == f"models:/{model.model_id}" and model.source_run_id == run.info.run_id
    files = {a.path for a in client.list_logged_model_artifacts(model.model_id, "artifacts")}
    assert {"artifacts/model.tar.gz", "artifacts/class_map.json"} <= files, files
    # artifacts live in the local artifact folder, never in ./mlruns of the current directory
    artifacts = Path(load_settings().mlflow_artifacts).resolve()
    assert model.artifact_location.startswith(artifacts.as_uri())
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


def test_a_model_name_mlflow_refuses_is_refused_before_a_run(store: Path, tmp_path: Path) -> None:
    """Issue 27: a bad name ('a\\nb', '/', ':') is one line before anything is logged."""
    import pytest

    from pipeline_lib.registry.store import get_client

    def runs() -> int:
        ids = [e.experiment_id for e in get_client().search_experiments()]
        return len(get_client().search_runs(ids)) if ids else 0

    model = make_model_dir(tmp_path / "m")
    before = runs()
    for name in ("a\nb", "a/b", "x:y", " padded", "", "n" * 300):
        with pytest.raises(ValueError, match="model name"):
            registry.register_model(model, name=name)
    assert runs() == before  # nothing logged
