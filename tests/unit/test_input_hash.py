"""The content hash of a training input, in each of the three formats."""

from __future__ import annotations

import pytest

from pipeline_lib.input_hash import input_content_hash
from pipeline_lib.manifest import dataset_to_manifest
from pipeline_lib.recordio.convert import convert_to_recordio
from pipeline_lib.synthetic import SynthConfig, generate


@pytest.fixture
def data(tmp_path):
    root = tmp_path / "dataset"
    generate(root, SynthConfig(images=6, classes=2, seed=4, min_size=64, max_size=80))
    convert_to_recordio(root, tmp_path / "rec" / "d", progress=False)
    for channel in ("train", "validation"):
        dataset_to_manifest(root, root / f"{channel}.manifest", channel=channel)
    return root, tmp_path / "rec"


def _hashes(root, rec):
    return {
        "image+json": input_content_hash("image+json", dataset_uri=str(root)),
        "recordio": input_content_hash(
            "recordio",
            train_uri=str(rec / "d_train.rec"),
            validation_uri=str(rec / "d_validation.rec"),
        ),
        "augmented-manifest": input_content_hash(
            "augmented-manifest",
            train_uri=str(root / "train.manifest"),
            validation_uri=str(root / "validation.manifest"),
        ),
    }


def test_stable_and_distinct_per_format(data):
    first, again = _hashes(*data), _hashes(*data)
    assert first == again
    assert len(set(first.values())) == 3 and all(len(h) == 64 for h in first.values())


def test_an_image_changed_under_a_manifest_changes_its_hash(data):
    root, rec = data
    before = _hashes(root, rec)
    image = sorted((root / "validation").glob("*.jpg"))[0]
    image.write_bytes(image.read_bytes() + b"\0")
    after = _hashes(root, rec)
    assert after["augmented-manifest"] != before["augmented-manifest"]
    assert after["image+json"] != before["image+json"]
    assert after["recordio"] == before["recordio"]  # the .rec files did not change


def test_manifest_hash_reads_the_label_attribute_it_is_given(data):
    root, _ = data
    uris = {
        "train_uri": str(root / "train.manifest"),
        "validation_uri": str(root / "validation.manifest"),
    }
    default = input_content_hash("augmented-manifest", **uris)
    with pytest.raises(ValueError, match="manifest"):
        input_content_hash("augmented-manifest", **uris, attribute_names=("source-ref", "other"))
    assert default == input_content_hash(
        "augmented-manifest", **uris, attribute_names=("source-ref", "bounding-box")
    )


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="input_format must be one of"):
        input_content_hash("parquet", dataset_uri="x")
