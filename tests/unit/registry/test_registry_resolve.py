"""pipeline_lib.registry.resolve: models:/, runs:/, s3:// and local model URIs."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
from registry_testdata import make_model_dir, make_tar

from pipeline_lib import registry


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


def test_s3_model_in_and_out(store: Path, tmp_path: Path, s3) -> None:
    tar_path = make_tar(tmp_path, payload="from-s3")
    s3.client().upload_file(str(tar_path), s3.bucket, "jobs/1/output/model.tar.gz")

    info = registry.register_model(s3.uri("jobs/1/output/model.tar.gz"), "reg-s3")
    local = registry.resolve_model_uri(info["model_uri"], dst=tmp_path / "dl")
    assert local.read_bytes() == tar_path.read_bytes()

    by_key = registry.resolve_model_uri(s3.uri("jobs/1/output/model.tar.gz"), dst=tmp_path / "a")
    by_prefix = registry.resolve_model_uri(s3.uri("jobs/1/output"), dst=tmp_path / "b")
    assert by_key.read_bytes() == by_prefix.read_bytes() == tar_path.read_bytes()
