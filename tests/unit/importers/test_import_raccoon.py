"""The real raccoon set (VOC XML) imported and validated: exactly the 3 grayscale images fail."""

from __future__ import annotations

from pipeline_lib.cli import main
from pipeline_lib.importers import import_voc
from pipeline_lib.validation import ValidationOptions, validate

GRAY = {"raccoon-150.jpg", "raccoon-152.jpg", "raccoon-161.jpg"}


def test_raccoon_import_and_validate(raccoon, tmp_path):
    out = tmp_path / "raccoon"
    summary = import_voc(str(raccoon), str(out))
    assert "imported 200 images" in summary and "217 boxes" in summary
    report = validate(str(out), ValidationOptions(great_expectations=False))
    flagged = {f.file.split("/")[-1] for f in report.findings if f.rule == "image.channels"}
    assert flagged == GRAY
    assert {f.rule for f in report.errors} == {"image.channels"}
    assert sum(report.images.values()) == 200
    assert sum(report.boxes.values()) == 217


def test_raccoon_convert_to_rgb_then_valid(raccoon, tmp_path, capsys):
    out = tmp_path / "raccoon"
    assert main(["import", "voc", str(raccoon), str(out)]) == 0
    rep = tmp_path / "report"
    code = main(
        ["validate", str(out), "--report", str(rep), "--convert-to-rgb", "--json", "--workers", "2"]
    )
    assert code == 0
    report = validate(str(rep / "converted"), ValidationOptions(great_expectations=False))
    assert report.errors == []
