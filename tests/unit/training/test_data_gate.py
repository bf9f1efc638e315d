"""Training's image+JSON and manifest channels read only inside their channel folders."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline_lib.gate.rules import GateError
from pipeline_lib.manifest import ManifestDetection, ManifestError, dataset_to_manifest
from pipeline_lib.synthetic import SynthConfig, generate
from pipeline_lib.training.data import ImageJsonDetection

MARKER = b"SECRET-MARKER-0123456789"


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "data"
    generate(root, SynthConfig(images=6, classes=2, seed=3))
    return root


@pytest.fixture
def data(synth, tmp_path) -> Path:
    (tmp_path / "secret.jpg").write_bytes(MARKER)
    return Path(shutil.copytree(synth, tmp_path / "data"))


def _first(data: Path) -> tuple[Path, dict]:
    path = sorted((data / "train_annotation").glob("*.json"))[0]
    return path, json.loads(path.read_text())


def test_image_json_channel_reads_its_images(data):
    ds = ImageJsonDetection(data / "train", data / "train_annotation")
    img, label = ds[0]
    assert img.dtype == np.uint8 and img.ndim == 3 and label.shape[1] == 5


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink", "json_symlink"])
def test_image_json_channel_refuses_to_leave(data, tmp_path, how):
    path, ann = _first(data)
    if how == "dotdot":
        ann["file"] = "../../secret.jpg"
    elif how == "absolute":
        ann["file"] = str(tmp_path / "secret.jpg")
    elif how == "symlink":
        (data / "train" / ann["file"]).unlink()
        os.symlink(tmp_path / "secret.jpg", data / "train" / ann["file"])
    else:
        (tmp_path / "outside.json").write_text(json.dumps(ann))
        path.unlink()
        os.symlink(tmp_path / "outside.json", path)
    if how != "json_symlink":
        path.write_text(json.dumps(ann))
    with pytest.raises(GateError, match=r"\[L005 pairing.path_escape\]"):
        ImageJsonDetection(data / "train", data / "train_annotation")


def test_image_json_channel_refuses_duplicate_keys_and_huge_class_ids(data):
    path, ann = _first(data)
    path.write_text(json.dumps(ann)[:-1] + ', "annotations": []}')
    with pytest.raises(GateError, match=r"\[J004 json.duplicate_key\]"):
        ImageJsonDetection(data / "train", data / "train_annotation")
    ann["annotations"][0]["class_id"] = 10**9
    path.write_text(json.dumps(ann))
    with pytest.raises(GateError, match=r"\[C006 class.id_too_large\]"):
        ImageJsonDetection(data / "train", data / "train_annotation")


def test_a_fifo_image_fails_the_item_without_blocking(data):
    _, ann = _first(data)
    (data / "train" / ann["file"]).unlink()
    os.mkfifo(data / "train" / ann["file"])
    ds = ImageJsonDetection(data / "train", data / "train_annotation")
    with pytest.raises(GateError, match=r"\[L008 path.not_regular_file\]"):
        ds[0]


def test_manifest_channel_refs_stay_inside_the_channel(data, tmp_path):
    channel = tmp_path / "channel"
    channel.mkdir()
    manifest = channel / "train.manifest"
    dataset_to_manifest(data, tmp_path / "train.manifest", relative=False)  # absolute refs
    shutil.move(tmp_path / "train.manifest", manifest)  # that leave the channel
    with pytest.raises(ManifestError, match=r"line 1: .*\[L005 pairing.path_escape\]"):
        ManifestDetection(manifest, base_dir=str(channel))
    with pytest.raises(ValueError, match="outside the manifest's folder"):
        dataset_to_manifest(data, channel / "other.manifest")
