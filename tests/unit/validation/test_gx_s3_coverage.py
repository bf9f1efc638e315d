"""GX safety net, s3:// inputs and reports, and a check that every rule has a test."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline_lib import storage
from pipeline_lib.validation import RULES, ValidationOptions, gx_suite, validate

HERE = Path(__file__).resolve().parent


def test_gx_failure_without_a_check_error_fails_the_dataset(dataset, monkeypatch):
    real = gx_suite.load_suite

    def stricter(table: str) -> dict:
        suite = real(table)
        if table == "images":
            suite["expectations"].append(
                {"type": "expect_table_row_count_to_be_between", "kwargs": {"max_value": 3}}
            )
        return suite

    monkeypatch.setattr(gx_suite, "load_suite", stricter)
    report = validate(str(dataset), ValidationOptions(workers=1))
    assert [f.rule for f in report.findings] == ["gx.expectation_failed"]
    assert not report.ok


def test_gx_crash_is_reported_not_raised(dataset, monkeypatch):
    def broken(table: str) -> dict:
        raise RuntimeError("suite store unavailable")

    monkeypatch.setattr(gx_suite, "load_suite", broken)
    report = validate(str(dataset), ValidationOptions(workers=1))
    assert report.ok  # the data is fine; the GX trouble is a visible warning
    assert [(f.rule, f.severity) for f in report.findings] == [("gx.expectation_failed", "warning")]
    assert "suite store unavailable" in report.great_expectations["error"]


def test_suites_are_package_data_json():
    for table in ("images", "boxes"):
        suite = gx_suite.load_suite(table)
        assert suite["name"].startswith("odp_") and suite["expectations"]


def test_s3_dataset_and_s3_report(dataset, s3):
    storage.upload_dir(dataset, s3.uri("data"))
    opts = ValidationOptions(great_expectations=False, workers=1)
    report = validate(s3.uri("data"), opts, report_dir=s3.uri("reports/run1"))
    assert report.ok and report.images == {"train": 8, "validation": 2}
    assert "reports/run1/report.json" in s3.keys("reports")
    saved = json.loads(storage.read_bytes(s3.uri("reports/run1/report.json")))
    assert saved["ok"] is True


def test_every_rule_has_a_failing_case():
    text = "".join(p.read_text() for p in HERE.glob("test_*.py"))
    text += (HERE.parents[1] / "dataset_defects.py").read_text()
    untested = [name for name in RULES if f'"{name}"' not in text]
    assert untested == []
