"""Augmented manifest <-> image+JSON, and the manifest dataset reader."""

from __future__ import annotations

import filecmp
import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline_lib.annotations import iter_channel
from pipeline_lib.manifest import (
    ManifestDetection,
    ManifestError,
    dataset_to_manifest,
    iter_manifest,
    manifest_to_dataset,
    parse_line,
)
from pipeline_lib.synthetic import SynthConfig, generate


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "data"
    generate(root, SynthConfig(images=12, classes=3, seed=11))
    return root


@pytest.fixture
def dataset(synth, tmp_path) -> Path:
    """The dataset in ``tmp_path/data``: manifests written into ``tmp_path`` may name its
    images (local source-refs must stay inside the manifest's folder)."""
    return Path(shutil.copytree(synth, tmp_path / "data"))


def _same_tree(a: Path, b: Path) -> None:
    cmp = filecmp.dircmp(a, b)
    assert not cmp.left_only and not cmp.right_only, (cmp.left_only, cmp.right_only)
    _, mismatch, errors = filecmp.cmpfiles(a, b, cmp.common_files, shallow=False)
    assert not mismatch and not errors, mismatch


def test_manifest_lines_look_like_sagemaker(dataset, tmp_path):
    out = tmp_path / "train.manifest"
    assert dataset_to_manifest(dataset, out) == 10
    lines = out.read_text().splitlines()
    first = json.loads(lines[0])
    assert list(first) == ["source-ref", "bounding-box", "bounding-box-metadata"]
    assert list(first["bounding-box"]) == ["image_size", "annotations"]
    meta = first["bounding-box-metadata"]
    assert meta["type"] == "groundtruth/object_detection"
    assert meta["class-map"] == {"0": "circle", "1": "square", "2": "triangle"}
    # relative to the manifest's folder, so data and manifest move together
    assert (tmp_path / first["source-ref"]).resolve() == (dataset / "train" / "train_000000.jpg")
    absolute = tmp_path / "abs.manifest"
    dataset_to_manifest(dataset, absolute, channel="validation", relative=False)
    assert Path(json.loads(absolute.read_text().splitlines()[0])["source-ref"]).is_absolute()


def test_round_trip_is_exact(dataset, tmp_path):
    for channel in ("train", "validation"):
        manifest = tmp_path / f"{channel}.jsonl"
        dataset_to_manifest(dataset, manifest, channel=channel)
        back = tmp_path / f"back-{channel}"
        n = manifest_to_dataset(manifest, back, channel=channel, progress=False)
        assert n == len(list((dataset / channel).iterdir()))
        _same_tree(dataset / channel, back / channel)
        _same_tree(dataset / f"{channel}_annotation", back / f"{channel}_annotation")


def test_custom_attribute_name(dataset, tmp_path):
    manifest = tmp_path / "m.jsonl"
    dataset_to_manifest(dataset, manifest, attribute="my-labels", channel="validation")
    assert list(json.loads(manifest.read_text().splitlines()[0])) == [
        "source-ref",
        "my-labels",
        "my-labels-metadata",
    ]
    with pytest.raises(ManifestError, match="line 1: no attribute 'bounding-box'"):
        ManifestDetection(manifest)
    assert len(ManifestDetection(manifest, attribute="my-labels")) == 2


def test_manifest_dataset_items(dataset, tmp_path):
    manifest = tmp_path / "m.jsonl"
    dataset_to_manifest(dataset, manifest)
    ds = ManifestDetection(manifest)
    anns = list(iter_channel(dataset, "train"))
    assert len(ds) == len(anns)
    assert ds.class_ids == (0, 1, 2)
    assert ds.class_map == {0: "circle", 1: "square", 2: "triangle"}
    for i, (_, ann) in enumerate(anns):
        img, label = ds[i]
        assert img.shape == (ann.height, ann.width, 3) and img.dtype == np.uint8
        px = ann.label_array()
        np.testing.assert_array_equal(label, px[:, [1, 2, 3, 4, 0]].astype(np.float32))
    clone = pickle.loads(pickle.dumps(ds))  # noqa: S301  round-trips our own object
    assert np.array_equal(clone[2][1], ds[2][1])


def test_base_dir_resolves_relative_refs(dataset, tmp_path):
    line = {
        "source-ref": "train/train_000000.jpg",
        "bounding-box": {"image_size": [{"width": 1, "height": 1, "depth": 3}], "annotations": []},
    }
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps(line) + "\n\n")  # a trailing blank line is fine
    ds = ManifestDetection(manifest, base_dir=str(dataset))
    assert ds.sources == [str(dataset / "train" / "train_000000.jpg")]
    with pytest.raises(ManifestError, match="line 1: image_size 1x1 does not match"):
        ds[0]


def _good_line(dataset: Path) -> str:
    path, ann = next(iter(iter_channel(dataset, "train")))
    body = ann.to_json()
    return json.dumps(
        {
            "source-ref": str(path),
            "bounding-box": {"image_size": body["image_size"], "annotations": body["annotations"]},
        }
    )


@pytest.mark.parametrize(
    "bad, message",
    [
        ("{not json", r"line 2: not valid JSON"),
        ('["a list"]', r"line 2: expected a JSON object"),
        (
            '{"bounding-box": {"image_size": [{"width": 2, "height": 2}], "annotations": []},'
            ' "source-ref": "x.jpg"}',
            r"line 2: attributes in the wrong order: expected 'source-ref' before 'bounding-box'",
        ),
        ('{"source-ref": "x.jpg"}', r"line 2: no attribute 'bounding-box'"),
        (
            '{"source-ref": "x.jpg", "bounding-box": [1]}',
            r"line 2: 'bounding-box' must be an object",
        ),
        (
            '{"source-ref": "x.jpg", "bounding-box": {"image_size": [{"width": 2, "height": 2}],'
            ' "annotations": [{"class_id": 0, "left": "a", "top": 0, "width": 1, "height": 1}]}}',
            r"line 2: 'bounding-box'.*annotations\[0\]\.left",
        ),
    ],
)
def test_bad_lines_name_the_line_and_leave_nothing(dataset, tmp_path, bad, message):
    manifest = tmp_path / "bad.jsonl"
    manifest.write_text(_good_line(dataset) + "\n" + bad + "\n")
    with pytest.raises(ManifestError, match=message):
        ManifestDetection(manifest)
    out = tmp_path / "out"
    with pytest.raises(ManifestError, match=message):
        manifest_to_dataset(manifest, out, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl", "data"]


def test_missing_image_names_the_line(dataset, tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        _good_line(dataset) + "\n" + _good_line(dataset).replace(".jpg", "_x.jpg") + "\n"
    )
    with pytest.raises(ManifestError, match="line 2: image not found"):
        manifest_to_dataset(manifest, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    with pytest.raises(ManifestError, match="line 2: image not found"):
        ManifestDetection(manifest)[1]


def test_same_basename_in_two_folders_gets_unique_names(dataset, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    path, ann = next(iter(iter_channel(dataset, "train")))
    shutil.copy(path, tmp_path / "a" / "img.jpg")
    shutil.copy(path, tmp_path / "b" / "img.jpg")
    body = ann.to_json()
    lines = [
        json.dumps(
            {"source-ref": ref, "bounding-box": {k: body[k] for k in ("image_size", "annotations")}}
        )
        for ref in ("a/img.jpg", "b/img.jpg")
    ]
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    assert manifest_to_dataset(tmp_path / "m.jsonl", tmp_path / "out", progress=False) == 2
    assert sorted(p.name for p in (tmp_path / "out" / "train").iterdir()) == [
        "img.jpg",
        "img_1.jpg",
    ]
    files = [
        json.loads(p.read_text())["file"]
        for p in sorted((tmp_path / "out" / "train_annotation").iterdir())
    ]
    assert files == ["img.jpg", "img_1.jpg"]


def test_parse_line_class_map_and_iter(dataset, tmp_path):
    line = parse_line(
        '{"source-ref": "s3://b/k/1.jpg", "bounding-box": {"image_size": [{"width": 4, "height": 3,'
        ' "depth": 3}], "annotations": [{"class_id": 1, "left": 0, "top": 0, "width": 2, "height": 1}]},'
        ' "bounding-box-metadata": {"class-map": {"1": "cat"}, "type": "groundtruth/object_detection"}}'
    )
    assert line.source_ref == "s3://b/k/1.jpg" and line.annotation.file == "1.jpg"
    assert line.class_map == {1: "cat"} and line.annotation.boxes[0].width == 2
    manifest = tmp_path / "m.jsonl"
    dataset_to_manifest(dataset, manifest, channel="validation")
    assert [x.lineno for x in iter_manifest(manifest)] == [1, 2]


def test_cli_convert_manifest_and_back(dataset, tmp_path, capsys):
    from pipeline_lib.cli import main

    manifest = tmp_path / "val.manifest"
    args = ["convert", "manifest", str(dataset), str(manifest), "--channel", "validation"]
    assert main([*args, "--attribute", "boxes"]) == 0
    assert "wrote 2 lines" in capsys.readouterr().out
    assert (
        main(["convert", "json", str(manifest), str(tmp_path / "back"), "--attribute", "boxes"])
        == 0
    )
    assert "wrote 2 images" in capsys.readouterr().out
    # the CLI writes one channel per manifest, as train
    assert len(list((tmp_path / "back" / "train_annotation").glob("*.json"))) == 2
    assert main(["convert", "json", str(manifest), str(tmp_path / "never")]) == 1
    assert "line 1: no attribute 'bounding-box'" in capsys.readouterr().err


@pytest.mark.parametrize("ref", ["../secret.jpg", "ABSOLUTE", "link.jpg"])
def test_convert_json_never_copies_a_file_from_outside(dataset, tmp_path, ref, capsys):
    from pipeline_lib.cli import main

    marker = b"SECRET-MARKER-0123456789"
    (tmp_path / "secret.jpg").write_bytes(marker)
    folder = tmp_path / "m"
    folder.mkdir()
    os.symlink(tmp_path / "secret.jpg", folder / "link.jpg")
    _, ann = next(iter(iter_channel(dataset, "train")))
    body = ann.to_json()
    ref = str(tmp_path / "secret.jpg") if ref == "ABSOLUTE" else ref
    line = {"source-ref": ref, "bounding-box": {k: body[k] for k in ("image_size", "annotations")}}
    (folder / "x.manifest").write_text(json.dumps(line) + "\n")
    assert main(["convert", "json", str(folder / "x.manifest"), str(tmp_path / "out")]) == 1
    (err,) = [x for x in capsys.readouterr().err.splitlines() if x.startswith("odp convert")]
    assert "line 1" in err and err.endswith("[L005 pairing.path_escape]")
    assert not (tmp_path / "out").exists()
    with pytest.raises(ManifestError, match="L005"):
        ManifestDetection(folder / "x.manifest")


def test_duplicate_keys_in_a_manifest_line(tmp_path):
    text = '{"source-ref": "a.jpg", "bounding-box": {"image_size": [], "annotations": []}}'
    with pytest.raises(ManifestError, match=r"line 3: key 'source-ref' appears twice.*J004"):
        parse_line(text[:-1] + ', "source-ref": "b.jpg"}', 3, "m.jsonl")
