"""The completion manifest: written last over the job's files, verified before any use."""

from __future__ import annotations

import json

import pytest

from pipeline_lib.training.completion import (
    CompletionError,
    clear_completion,
    verify_completion,
    write_completion,
)


@pytest.fixture
def task_dir(tmp_path):
    (tmp_path / "model.tar.gz").write_bytes(b"model bytes")
    (tmp_path / "metrics.json").write_text(json.dumps({"validation:mAP": 0.5}))
    return tmp_path


def test_written_manifest_verifies(task_dir):
    write_completion(str(task_dir), hosts=["algo-1", "algo-2"])
    done = verify_completion(str(task_dir))
    assert done["model_uri"] == str(task_dir / "model.tar.gz")
    assert done["metrics"] == {"validation:mAP": 0.5}
    assert done["manifest"]["hosts"] == ["algo-1", "algo-2"]
    assert done["manifest"]["files"]["model.tar.gz"]["size"] == len(b"model bytes")


def test_missing_manifest_is_not_trusted(task_dir):
    with pytest.raises(CompletionError, match="completion.json not found"):
        verify_completion(str(task_dir))


def test_a_changed_file_fails_verification(task_dir):
    write_completion(str(task_dir))
    (task_dir / "model.tar.gz").write_bytes(b"model bytes, overwritten by another try")
    with pytest.raises(CompletionError, match="model.tar.gz does not match"):
        verify_completion(str(task_dir))


def test_a_missing_file_fails_verification(task_dir):
    write_completion(str(task_dir))
    (task_dir / "metrics.json").unlink()
    with pytest.raises(CompletionError, match="metrics.json listed in .* is missing"):
        verify_completion(str(task_dir))


@pytest.mark.parametrize("text", ["{", "[]", json.dumps({"version": 9, "files": {}})])
def test_a_damaged_manifest_is_one_clear_error(task_dir, text):
    (task_dir / "completion.json").write_text(text)
    with pytest.raises(CompletionError, match="completion.json"):
        verify_completion(str(task_dir))


def test_no_manifest_without_the_files(tmp_path):
    (tmp_path / "metrics.json").write_text("{}")
    with pytest.raises(CompletionError, match="model.tar.gz is missing"):
        write_completion(str(tmp_path))
    assert not (tmp_path / "completion.json").exists()


def test_clear_removes_a_previous_manifest(task_dir):
    write_completion(str(task_dir))
    clear_completion(str(task_dir))
    assert not (task_dir / "completion.json").exists()
    clear_completion(str(task_dir))  # idempotent
