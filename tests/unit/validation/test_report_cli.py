"""report.json, summary.txt, GX Data Docs and the ``odp validate`` exit codes."""

from __future__ import annotations

import json

from dataset_defects import DEFECTS, inject

from pipeline_lib.cli import main
from pipeline_lib.validation import ValidationOptions, validate
from pipeline_lib.validation.gx_suite import load_suite

FAST = ValidationOptions(great_expectations=False, workers=1)
FINDING_KEYS = {
    "file",
    "record",
    "field",
    "rule",
    "code",
    "severity",
    "expected",
    "actual",
    "message",
}


def test_summary_dict_is_json_and_complete(dataset, tmp_path):
    inject(dataset, "grayscale", "train", 0)
    inject(dataset, "duplicate_box", "train", 2)
    report = validate(str(dataset), FAST, report_dir=str(tmp_path / "r"))
    summary = json.loads(json.dumps(report.summary_dict()))
    assert summary["ok"] is False
    assert summary["counts"]["images"] == {"train": 8, "validation": 2}
    assert summary["counts"]["errors"] == 1 and summary["counts"]["warnings"] == 1
    assert summary["findings_by_rule"] == {"box.duplicate": 1, "image.channels": 1}
    assert summary["label_width"] == 2 + 5 * summary["max_objects_per_image"]
    assert set(summary["class_counts"]["0"]) == {"name", "train", "validation"}
    assert set(summary["first_findings"][0]) == FINDING_KEYS
    full = json.loads((tmp_path / "r" / "report.json").read_text())
    assert len(full["findings"]) == 2
    text = (tmp_path / "r" / "summary.txt").read_text()
    assert "INVALID" in text and "image.channels" in text
    assert report.human_summary().splitlines()[0].startswith(str(dataset))


def test_cli_exit_codes(dataset, tmp_path, capsys):
    assert main(["validate", str(dataset), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is True
    assert main(["validate", str(tmp_path / "missing")]) == 2
    assert "no such file" in capsys.readouterr().err
    inject(dataset, "class_gap", "train", 0)
    assert main(["validate", str(dataset)]) == 1
    assert "class.not_contiguous" in capsys.readouterr().out


def test_twenty_defects_cli_report_and_data_docs(tmp_path, synth_cache, capsys):
    """The acceptance scenario: 20 defects, all reported with rule and file, exit 1, GX docs."""
    root = synth_cache(tmp_path / "d", images=40, classes=3, seed=3)
    names = sorted(DEFECTS)[:20]
    assert len(names) == 20
    expected = [inject(root, name, "train", i + 1) for i, name in enumerate(names)]
    report_dir = tmp_path / "report"
    code = main(["validate", str(root), "--report", str(report_dir), "--json"])
    assert code == 1
    printed = json.loads(capsys.readouterr().out)
    assert printed["ok"] is False
    full = json.loads((report_dir / "report.json").read_text())
    found = {(f["rule"], f["file"]) for f in full["findings"]}
    assert [e for e in expected if (e.rule, e.file) not in found] == []
    gx = full["great_expectations"]
    assert gx["success"] is False  # the tables show the same defects
    assert set(gx["suites"]) == {"images", "boxes"}
    assert (report_dir / "data_docs" / "index.html").is_file()
    assert list((report_dir / "data_docs" / "validations").rglob("*.html"))


def test_clean_dataset_passes_great_expectations(dataset, tmp_path):
    report = validate(str(dataset), ValidationOptions(workers=1), report_dir=str(tmp_path / "r"))
    assert report.ok
    gx = report.great_expectations
    assert gx["success"] is True, gx
    assert gx["suites"]["images"]["evaluated"] == len(load_suite("images")["expectations"])
    assert gx["suites"]["boxes"]["evaluated"] == len(load_suite("boxes")["expectations"])
    assert (tmp_path / "r" / "data_docs" / "index.html").is_file()
