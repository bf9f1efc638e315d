"""pipeline_lib.registry.store: tracking URI, experiment and artifact root."""

from __future__ import annotations

from pathlib import Path

import pytest
from registry_testdata import make_model_dir, make_tar

from pipeline_lib import registry


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


def test_artifact_root_may_be_s3(tmp_path: Path, s3, monkeypatch: pytest.MonkeyPatch) -> None:
    """A SQLite (or other database) store used without a server can keep artifacts in S3."""
    monkeypatch.setenv("ODP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ODP_MLFLOW_ARTIFACTS", s3.uri("mlflow"))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tar_path = make_tar(tmp_path, payload="s3-artifacts")
    info = registry.register_model(tar_path, "reg-s3-root", tracking_uri=uri, metrics={"mAP": 1})
    assert info["source"].startswith("models:/m-")
    assert any(k.endswith("artifacts/model.tar.gz") for k in s3.keys("mlflow/"))
    local = registry.resolve_model_uri("models:/reg-s3-root/1", tracking_uri=uri)
    assert local.read_bytes() == tar_path.read_bytes()
