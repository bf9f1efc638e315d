"""--convert-to-rgb: RGB copies in a separate folder; the input is never touched."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline_lib.validation import ValidationOptions, validate


def _tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def _rewrite(root: Path, index: int, make) -> str:
    path = sorted((root / "train_annotation").glob("*.json"))[index]
    ann = json.loads(path.read_text())
    img_path = root / "train" / ann["file"]
    rgb = Image.open(img_path).convert("RGB")
    im, fmt = make(rgb)
    im.save(img_path, format=fmt)
    return f"train/{ann['file']}"


def test_convert_to_rgb_writes_a_clean_copy(dataset, tmp_path):
    bad = set()
    cases = [
        lambda im: (im.convert("L"), "JPEG"),
        lambda im: (im.convert("CMYK"), "JPEG"),
        lambda im: (im.convert("RGBA"), "PNG"),
        lambda im: (im.convert("P"), "PNG"),
        lambda im: (im.convert("1"), "PNG"),
        lambda im: (
            Image.fromarray(np.asarray(im.convert("L")).astype(np.uint16) * 257),
            "PNG",
        ),
    ]
    for i, make in enumerate(cases):
        bad.add(_rewrite(dataset, i, make))
    before = _tree_hash(dataset)

    plain = validate(str(dataset), ValidationOptions(great_expectations=False))
    assert {f.file for f in plain.errors if f.rule == "image.channels"} == bad

    report_dir = tmp_path / "report"
    opts = ValidationOptions(great_expectations=False, convert_to_rgb=True)
    report = validate(str(dataset), opts, report_dir=str(report_dir))
    assert report.ok, report.human_summary()
    assert {f.file for f in report.warnings if f.rule == "image.channels"} == bad
    assert report.converted == {"dir": str(report_dir / "converted"), "images": len(bad)}
    assert _tree_hash(dataset) == before  # the input is untouched

    converted = report_dir / "converted"
    again = validate(str(converted), ValidationOptions(great_expectations=False))
    assert again.ok and again.findings == [], again.human_summary()
    assert again.images == report.images
    for name in bad:
        assert Image.open(converted / name).mode == "RGB"


def test_convert_needs_a_destination(dataset):
    with pytest.raises(ValueError, match="report folder"):
        validate(str(dataset), ValidationOptions(great_expectations=False, convert_to_rgb=True))


def test_undecodable_images_are_not_converted(dataset, tmp_path):
    path = sorted((dataset / "train_annotation").glob("*.json"))[0]
    img = dataset / "train" / json.loads(path.read_text())["file"]
    data = Image.open(img).convert("L")
    data.save(img, format="JPEG")
    img.write_bytes(img.read_bytes()[:-200])  # grayscale and truncated
    opts = ValidationOptions(great_expectations=False, convert_to_rgb=True)
    report = validate(str(dataset), opts, report_dir=str(tmp_path / "r"))
    assert {f.rule for f in report.errors} == {"image.channels", "image.truncated"}
    assert report.converted["images"] == 0
