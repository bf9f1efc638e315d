"""validate through the gate: FIFOs, escaping JSON symlinks, duplicate keys, huge class ids,
tiny boxes and manifest source-refs, each a finding with its code (and nothing read outside)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pipeline_lib.cli import main
from pipeline_lib.validation import ValidationOptions, validate

FAST = ValidationOptions(great_expectations=False, workers=1)
MARKER = b"SECRET-MARKER-0123456789"


def _first(dataset: Path, channel: str = "train") -> tuple[Path, dict]:
    path = sorted((dataset / f"{channel}_annotation").glob("*.json"))[0]
    return path, json.loads(path.read_text())


def _rules(report) -> dict[str, list]:
    out: dict[str, list] = {}
    for f in report.findings:
        out.setdefault(f.rule, []).append(f)
    return out


def test_a_fifo_image_is_a_finding_and_never_blocks(dataset):
    _, ann = _first(dataset)
    image = dataset / "train" / ann["file"]
    image.unlink()
    os.mkfifo(image)
    reports: list = []
    worker = threading.Thread(target=lambda: reports.append(validate(str(dataset), FAST)))
    worker.daemon = True
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "validate blocked on a FIFO"
    (f,) = _rules(reports[0])["path.not_regular_file"]
    assert f.code == "L008" and ann["file"] in f.message and "FIFO" in f.message


def test_an_annotation_symlink_leaving_the_dataset_is_an_escape(dataset, tmp_path):
    path, ann = _first(dataset)
    (tmp_path / "outside.json").write_text(json.dumps(ann))
    path.unlink()
    os.symlink(tmp_path / "outside.json", path)
    report = validate(str(dataset), FAST)
    (f,) = _rules(report)["pairing.path_escape"]
    assert f.file == f"train_annotation/{path.name}" and "symlink that leaves" in f.message


def test_duplicate_keys_are_an_error_naming_the_key(dataset):
    path, ann = _first(dataset)
    path.write_text(json.dumps(ann)[:-1] + ', "file": "elsewhere.jpg"}')
    (f,) = _rules(validate(str(dataset), FAST))["json.duplicate_key"]
    assert f.code == "J004" and f.field == "file" and path.name in f.message


def test_a_class_id_of_a_billion_is_one_finding_in_bounded_memory(dataset, tmp_path):
    path, ann = _first(dataset)
    ann["annotations"][0]["class_id"] = 1_000_000_000
    ann["categories"] = [*ann.get("categories", []), {"class_id": 2_000_000_000, "name": "x"}]
    path.write_text(json.dumps(ann))
    # in a child limited to 3 GiB of address space: sizing anything by the id would fail
    code = (
        "import resource, sys;"
        "resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30));"
        "from pipeline_lib.cli import main;"
        f"sys.exit(main(['validate', {str(dataset)!r}, '--workers', '1', '--json']))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(  # noqa: S603  argv built here: this interpreter and a test script
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["findings_by_rule"]["class.id_too_large"] == 2
    assert "1000000000" not in json.dumps(summary["class_counts"])


def test_tiny_boxes_warn_below_the_configured_minimum(dataset, capsys):
    path, ann = _first(dataset)
    ann["annotations"][0]["width"] = 0.5
    path.write_text(json.dumps(ann))
    report = validate(str(dataset), FAST)
    (f,) = _rules(report)["box.tiny"]
    assert f.severity == "warning" and f.code == "B005" and "0.5x" in f.message
    assert report.ok
    big = ValidationOptions(great_expectations=False, workers=1, min_box_size=10_000)
    assert len(_rules(validate(str(dataset), big))["box.tiny"]) > 1
    assert main(["validate", str(dataset), "--min-box-size", "0.1", "--workers", "1"]) == 0
    assert "B005" not in capsys.readouterr().out


@pytest.mark.parametrize("ref", ["../secret.jpg", "ABSOLUTE", "link.jpg"])
def test_manifest_source_refs_stay_in_the_manifests_folder(tmp_path, dataset, ref):
    (tmp_path / "secret.jpg").write_bytes(MARKER)
    folder = tmp_path / "m"
    folder.mkdir()
    os.symlink(tmp_path / "secret.jpg", folder / "link.jpg")
    _, ann = _first(dataset)
    ref = str(tmp_path / "secret.jpg") if ref == "ABSOLUTE" else ref
    line = {"source-ref": ref, "bounding-box": {k: ann[k] for k in ("image_size", "annotations")}}
    manifest = folder / "train.manifest"
    manifest.write_text(json.dumps(line) + "\n")
    report = validate(str(manifest), FAST)
    (f,) = _rules(report)["pairing.path_escape"]
    assert f.record == "line 1" and f.code == "L005"
    assert "image.decode" not in _rules(report)  # the marker was never read as an image


def test_manifest_duplicate_keys(tmp_path, dataset):
    _, ann = _first(dataset)
    manifest = tmp_path / "train.manifest"
    body = json.dumps({k: ann[k] for k in ("image_size", "annotations")})
    manifest.write_text(f'{{"source-ref": "a.jpg", "bounding-box": {body}, "source-ref": "b"}}\n')
    (f,) = _rules(validate(str(manifest), FAST))["json.duplicate_key"]
    assert f.record == "line 1" and f.field == "source-ref"
