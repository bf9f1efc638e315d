"""Training classifies failures like SageMaker: ClientError (naming the file) for the job's
input and configuration, before any training; metrics.json never holds NaN."""

from __future__ import annotations

import json
import math
import shutil
import tarfile
import tempfile
from pathlib import Path

import pytest
from training_job import CHANNELS, layout
from training_job import hyperparameters as _hp

from pipeline_lib.training.contract import prepare_ml_root
from pipeline_lib.training.entrypoint import finite_json, run_training


def _failure(paths) -> str:
    text = (paths.output / "failure").read_text()
    assert text.count("\n") == 1  # one paragraph, one line
    return text


@pytest.fixture(autouse=True)
def _private_tempdir(tmp_path_factory, monkeypatch):
    """Scratch folders are counted in a temp dir of this test's own (other processes on
    the machine make and remove theirs in the shared one)."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path_factory.mktemp("scratch")))


def _scratch() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("odp-model-*")}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("{oops", "not valid JSON"),
        ('["num_classes"]', "a JSON list, not an object"),
        ('{"num_classes": "2", "num_training_samples": "16", "colour": "red"}', "'colour'"),
        ('{"num_classes": "2", "num_training_samples": "16", "epochs": "zero"}', "'epochs'"),
    ],
)
def test_bad_hyperparameters_json_is_a_client_error_naming_the_file(
    tmp_path, training_data, text, fragment
):
    paths = layout(tmp_path / "ml", training_data)
    config = paths.config / "hyperparameters.json"
    config.write_text(text)
    assert run_training(str(paths.root)) == 1
    failure = _failure(paths)
    assert failure.startswith("ClientError: invalid hyperparameter: ")
    assert str(config) in failure and fragment in failure


def test_a_batch_larger_than_the_data_fails_before_training(tmp_path, training_data, capsys):
    paths = layout(tmp_path / "ml", training_data, mini_batch_size=64)
    assert run_training(str(paths.root)) == 1
    failure = _failure(paths)
    assert failure.startswith("ClientError: mini_batch_size=64 is larger than the 16 images")
    assert str(paths.channel("train")) in failure and "mini_batch_size <= 16" in failure
    assert not (paths.output / "metrics.json").exists()
    assert not (paths.model / "model_algo_1-0000.params").exists()
    assert "Traceback" not in capsys.readouterr().err


def test_image_shape_beyond_the_network_names_the_range(tmp_path, training_data):
    paths = layout(tmp_path / "ml", training_data, image_shape=4096)
    assert run_training(str(paths.root)) == 1
    failure = _failure(paths)
    assert failure.startswith("ClientError: invalid hyperparameter: ")
    assert "'image_shape'='4096'" in failure and "[300, 1024]" in failure


def _with_model_channel(tmp_path: Path, dataset: Path, archive: bytes):
    seed = tmp_path / "seed"
    seed.mkdir()
    (seed / "model.tar.gz").write_bytes(archive)
    channels = {c: dataset / c for c in CHANNELS}
    channels["model"] = seed
    return prepare_ml_root(tmp_path / "ml", channels, _hp(epochs=1))


@pytest.mark.parametrize("damage", ["corrupt", "truncated", "incomplete"])
def test_a_bad_model_archive_is_a_client_error(tmp_path, training_data, damage, capsys):
    import io

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in ("class_map.json", "hyperparams.json", "filler.bin"):
            data = b"{}" if name.endswith(".json") else bytes(range(256)) * 512
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    good = buf.getvalue()
    archive = {
        "corrupt": b"\x1f\x8b" + bytes(200),
        "truncated": good[: len(good) // 2],
        "incomplete": good,
    }[damage]
    before = _scratch()
    paths = _with_model_channel(tmp_path, training_data, archive)
    assert run_training(str(paths.root)) == 1
    failure = _failure(paths)
    assert failure.startswith("ClientError: bad model archive: ")
    assert "model" in failure and ("model.tar.gz" in failure or "missing" in failure)
    assert "Traceback" not in capsys.readouterr().err
    assert _scratch() == before  # the extraction folder is gone


def test_metrics_json_never_holds_nan():
    summary = {"validation:mAP": float("nan"), "epochs": [{"loss": math.inf, "mAP": 0.5}]}
    clean = finite_json(summary)
    assert clean == {"validation:mAP": None, "epochs": [{"loss": None, "mAP": 0.5}]}
    json.dumps(clean, allow_nan=False)


def test_data_that_validate_refuses_is_a_client_error_before_training(
    tmp_path, training_data, capsys
):
    from PIL import Image

    dataset = Path(shutil.copytree(training_data, tmp_path / "data"))
    path = sorted((dataset / "validation_annotation").glob("*.json"))[0]
    image = dataset / "validation" / json.loads(path.read_text())["file"]
    Image.open(image).convert("L").save(image, format=Image.open(image).format)
    paths = prepare_ml_root(tmp_path / "ml", {c: dataset / c for c in CHANNELS}, _hp(epochs=1))
    assert run_training(str(paths.root)) == 1
    failure = _failure(paths)
    assert failure.startswith("ClientError: invalid input data: ")
    assert f"validation/{image.name}" in failure and "[I004 image.channels]" in failure
    assert "Traceback" not in capsys.readouterr().err
    assert not (paths.output / "metrics.json").exists()


def test_a_cpu_stream_count_that_does_not_divide_the_batch_is_a_client_error(
    tmp_path, training_data, monkeypatch
):
    monkeypatch.setenv("ODP_CPU_STREAMS", "3")
    paths = layout(tmp_path / "ml", training_data)
    assert run_training(str(paths.root)) == 1
    assert _failure(paths) == (
        "ClientError: ODP_CPU_STREAMS='3' is invalid: expected a positive divisor of mini_batch_size=4\n"
    )
    assert not (paths.output / "metrics.json").exists()
