"""Training's image+JSON and manifest channels read only inside their channel folders, and
are refused up front for what ``odp validate`` refuses (image rules, overlap, linked channels)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline_lib.gate.images import MAX_PIXELS
from pipeline_lib.gate.rules import GateError
from pipeline_lib.manifest import ManifestDetection, ManifestError, dataset_to_manifest
from pipeline_lib.synthetic import SynthConfig, generate
from pipeline_lib.training.data import ImageJsonDetection, check_channel_folder, gate_channels

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


# ------------------------------------------------------------------ the up-front gate


def _cmyk(data: Path, channel: str = "train") -> Path:
    """Re-encode the first image of ``channel`` as a CMYK JPEG; returns its path."""
    import io

    from PIL import Image

    path = sorted((data / f"{channel}_annotation").glob("*.json"))[0]
    ann = json.loads(path.read_text())
    image = data / channel / ann["file"]
    buf = io.BytesIO()
    Image.open(image).convert("CMYK").save(buf, format="JPEG")
    image.unlink()
    ann["file"] = image.with_suffix(".jpg").name
    (data / channel / ann["file"]).write_bytes(buf.getvalue())
    path.write_text(json.dumps(ann))
    return data / channel / ann["file"]


def _image_json(data: Path) -> dict:
    return {
        c: ImageJsonDetection(data / c, data / f"{c}_annotation") for c in ("train", "validation")
    }


def test_the_gate_passes_a_valid_dataset(data):
    n = len(list((data / "train_annotation").glob("*.json")))
    n += len(list((data / "validation_annotation").glob("*.json")))
    assert gate_channels(_image_json(data), MAX_PIXELS) == n


def test_the_gate_refuses_an_image_rule_naming_the_file(data):
    image = _cmyk(data, "validation")
    with pytest.raises(
        GateError, match=rf"validation/{image.name} is CMYK.*\[I004 image\.channels\]"
    ):
        gate_channels(_image_json(data), MAX_PIXELS)


def test_the_gate_refuses_a_declared_size_that_differs(data):
    path, ann = _first(data)
    ann["image_size"][0]["width"] += 1
    path.write_text(json.dumps(ann))
    with pytest.raises(GateError, match=r"\[I005 image\.size_mismatch\]"):
        gate_channels(_image_json(data), MAX_PIXELS)


def test_the_gate_refuses_a_train_validation_overlap_by_content(data):
    _, ann = _first(data)
    val = sorted((data / "validation_annotation").glob("*.json"))[0]
    val_ann = json.loads(val.read_text())
    shutil.copy(data / "train" / ann["file"], data / "validation" / val_ann["file"])
    val_ann["image_size"] = ann["image_size"]
    val.write_text(json.dumps(val_ann))
    with pytest.raises(GateError, match=r"same bytes as train/.*\[D001 "):
        gate_channels(_image_json(data), MAX_PIXELS)


def test_the_gate_refuses_a_missing_image_and_a_fifo(data):
    _, ann = _first(data)
    (data / "train" / ann["file"]).unlink()
    with pytest.raises(GateError, match=r"\[L004 pairing\.missing_image\]"):
        gate_channels(_image_json(data), MAX_PIXELS)
    os.mkfifo(data / "train" / ann["file"])
    with pytest.raises(GateError, match=r"\[L008 path\.not_regular_file\]"):
        gate_channels(_image_json(data), MAX_PIXELS)


def test_the_gate_reads_manifest_channels_too(data, tmp_path):
    _cmyk(data, "train")
    dataset_to_manifest(data, data / "train.manifest", channel="train")
    ds = ManifestDetection(data / "train.manifest", base_dir=str(data))
    with pytest.raises(GateError, match=r"train\.manifest: line 1: .*\[I004 image\.channels\]"):
        gate_channels({"train": ds}, MAX_PIXELS)


def test_a_channel_folder_linked_out_of_its_dataset_is_refused(data, tmp_path):
    ml = tmp_path / "ml"
    ml.mkdir()
    os.symlink(data / "train", ml / "train")  # the job's own link: may point anywhere
    check_channel_folder(ml / "train", "train")
    shutil.move(data / "validation", tmp_path / "elsewhere")
    os.symlink(tmp_path / "elsewhere", data / "validation")  # the dataset's folder leaves it
    os.symlink(data / "validation", ml / "validation")
    with pytest.raises(GateError, match=r"channel 'validation'.*\[L005 pairing\.path_escape\]"):
        check_channel_folder(ml / "validation", "validation")
