"""Augmented manifest validation: attribute order, source-ref, class-map, video manifests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline_lib.validation import ValidationOptions, validate

FAST = ValidationOptions(great_expectations=False, workers=1)


def _lines(root: Path, channel: str = "train", attr: str = "bounding-box") -> list[dict]:
    out = []
    for p in sorted((root / f"{channel}_annotation").glob("*.json")):
        ann = json.loads(p.read_text())
        cmap = {str(c["class_id"]): c["name"] for c in ann["categories"]}
        out.append(
            {
                "source-ref": f"{channel}/{ann['file']}",
                attr: {"image_size": ann["image_size"], "annotations": ann["annotations"]},
                f"{attr}-metadata": {
                    "class-map": cmap,
                    "type": "groundtruth/object-detection",
                    "human-annotated": "yes",
                },
            }
        )
    return out


def _write(root: Path, lines: list, name: str = "train.manifest") -> Path:
    path = root / name
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def _rules(report) -> set[str]:
    return {f.rule for f in report.findings}


def test_clean_manifest(dataset):
    report = validate(str(_write(dataset, _lines(dataset))), FAST)
    assert report.ok and report.findings == [], report.human_summary()
    assert report.format == "manifest" and report.images == {"manifest": 8}
    assert {c["name"] for c in report.class_counts.values()} == {"circle", "square", "triangle"}


def test_clean_manifest_with_workers_and_gx(dataset, tmp_path):
    path = _write(dataset, _lines(dataset) * 1)
    report = validate(str(path), ValidationOptions(workers=2), report_dir=str(tmp_path / "r"))
    assert report.ok and report.great_expectations["success"]


def test_custom_attribute_name(dataset):
    path = _write(dataset, _lines(dataset, attr="boxes"))
    assert "manifest.label_attribute" in _rules(validate(str(path), FAST))
    opts = ValidationOptions(great_expectations=False, manifest_attributes=("source-ref", "boxes"))
    assert validate(str(path), opts).ok


@pytest.mark.parametrize(
    "mutate,rule",
    [
        (lambda d: "{not json", "manifest.malformed_line"),
        (lambda d: [1, 2], "manifest.malformed_line"),
        (lambda d: {k: v for k, v in d.items() if k != "source-ref"}, "manifest.source_ref"),
        (lambda d: {**d, "source-ref": 7}, "manifest.source_ref"),
        (lambda d: {k: v for k, v in d.items() if k != "bounding-box"}, "manifest.label_attribute"),
        (lambda d: dict(reversed(list(d.items()))), "manifest.label_attribute"),
        (lambda d: {**d, "source-ref": "train/none.jpg"}, "pairing.missing_image"),
        (
            lambda d: {**d, "bounding-box-metadata": {"class-map": {"x": "cat"}}},
            "manifest.class_map",
        ),
        (
            lambda d: {**d, "bounding-box-metadata": {"class-map": {"0": "dog"}}},
            "class.categories_inconsistent",
        ),
        (
            lambda d: {**d, "bounding-box-metadata": {"type": "groundtruth/video-object-tracking"}},
            "manifest.video",
        ),
        (lambda d: {**d, "source-ref": "s3://b/seq/frames.json"}, "manifest.video"),
        (lambda d: {**d, "bounding-box": {**d["bounding-box"], "annotations": []}}, "image.empty"),
        (
            lambda d: {
                **d,
                "bounding-box": {
                    **d["bounding-box"],
                    "image_size": [{"width": 1, "height": 1, "depth": 3}],
                },
            },
            "image.size_mismatch",
        ),
    ],
)
def test_line_defects(dataset, mutate, rule):
    lines = _lines(dataset)
    lines[3] = mutate(lines[3])
    report = validate(str(_write(dataset, lines)), FAST)
    hits = [f for f in report.findings if f.rule == rule]
    assert hits, report.human_summary()
    assert hits[0].record == "line 4"
    assert not report.ok


def test_duplicate_source_ref_and_grayscale(dataset):
    lines = _lines(dataset)
    lines.append(lines[0])
    from PIL import Image

    img = dataset / lines[1]["source-ref"]
    Image.open(img).convert("L").save(img, format="JPEG")
    report = validate(str(_write(dataset, lines)), FAST)
    rules = {(f.rule, f.record) for f in report.findings}
    assert ("pairing.duplicate_reference", "line 9") in rules
    assert ("image.channels", "line 2") in rules


def test_empty_manifest(dataset):
    report = validate(str(_write(dataset, [])), FAST)
    assert "manifest.malformed_line" in _rules(report)
