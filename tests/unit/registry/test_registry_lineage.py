"""pipeline_lib.registry.lineage and the experiment kind: what runs and versions say about
where they come from."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline_lib import registry
from pipeline_lib.registry import lineage
from pipeline_lib.registry.store import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG


def test_experiments_are_model_training_experiments(store: Path) -> None:
    client = registry.get_client()
    new = registry.ensure_experiment(client, "kind-new")
    assert client.get_experiment(new).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    old = client.create_experiment("kind-old")  # made before the tag existed
    assert registry.ensure_experiment(client, "kind-old") == old
    assert client.get_experiment(old).tags[EXPERIMENT_KIND_TAG] == "custom_model_development"


def test_git_commit_and_dataset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(lineage.GIT_COMMIT_ENV, "abc123")
    assert lineage.git_commit() == "abc123"
    monkeypatch.delenv(lineage.GIT_COMMIT_ENV)
    assert lineage.git_commit(tmp_path) == "unknown"  # not a repository
    dataset = lineage.training_dataset(str(tmp_path / "data"), "f" * 64)
    assert (dataset.name, dataset.digest) == ("data", "f" * 32)
    s3 = lineage.training_dataset("s3://bucket/prefix/data/", "0" * 64)
    assert s3.name == "data" and s3._to_mlflow_entity().source_type == "s3"
