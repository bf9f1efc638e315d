"""The ``odp`` command's error surface: one line per failure, exit codes, ``--debug``."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import pytest

from pipeline_lib.cli import bad_input_line, main
from pipeline_lib.synthetic import SynthConfig, generate


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli-data")
    generate(root, SynthConfig(images=6, classes=2, seed=1, max_objects=2, val_fraction=0.5))
    return root


def _stderr_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def _raised(fn) -> BaseException:
    try:
        fn()
    except BaseException as exc:  # noqa: BLE001  the exception itself is the test's input
        return exc
    raise AssertionError("nothing raised")


def test_each_exception_family_becomes_one_line_naming_what_was_expected(tmp_path: Path) -> None:
    junk = tmp_path / "model.tar.gz"
    junk.write_bytes(b"not a tarball" * 40)
    missing = tmp_path / "nowhere" / "x.json"
    lines = {
        "json": bad_input_line(_raised(lambda: json.loads('{"a": '))),
        "utf8": bad_input_line(_raised(lambda: b"caf\xe9".decode("utf-8"))),
        "tar": bad_input_line(_raised(lambda: tarfile.open(junk))),
        "key": bad_input_line(_raised(lambda: {}["image_size"])),
        "memory": bad_input_line(_raised(lambda: bytearray(1 << 62))),
        "deep": bad_input_line(_raised(lambda: json.loads("[" * 200_000))),
        "missing": bad_input_line(_raised(lambda: open(missing))),
        "folder": bad_input_line(_raised(lambda: open(tmp_path))),
        "value": bad_input_line(ValueError("a.json: field 'x': expected y, got 'z'")),
    }
    assert lines["json"] == "line 1 column 7: Expecting value: expected valid JSON"
    assert lines["utf8"].startswith("byte 3: not utf-8 text") and "expected UTF-8" in lines["utf8"]
    assert lines["tar"].startswith("not a readable tar archive") and "model.tar.gz" in lines["tar"]
    assert lines["key"] == "missing key 'image_size': expected a complete JSON record"
    assert lines["memory"].startswith("out of memory")
    assert lines["deep"].startswith("nested too deeply")
    assert (
        lines["missing"]
        == f"{missing}: No such file or directory: expected an existing file or folder"
    )
    assert lines["folder"] == f"{tmp_path}: Is a directory: expected a file, found a folder"
    assert lines["value"] == "a.json: field 'x': expected y, got 'z'"
    assert bad_input_line(RuntimeError("ours")) is None  # not the user's input: internal


def test_a_permission_error_names_the_path_and_what_was_expected(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("this user writes anywhere (root): no PermissionError to provoke")
        exc = _raised(lambda: (locked / "out.json").write_text("{}"))
    finally:
        locked.chmod(0o700)
    assert isinstance(exc, PermissionError)
    line = bad_input_line(exc)
    assert line.startswith(f"{locked / 'out.json'}: Permission denied: expected a path")


def test_bad_input_is_one_line_exit_1_without_traceback(dataset: Path, tmp_path, capsys) -> None:
    gt = tmp_path / "gt"
    (gt / "validation_annotation").mkdir(parents=True)
    (gt / "validation_annotation" / "a.json").write_bytes(b'{"file": "a.jpg", "image_size": [')
    (tmp_path / "dets").mkdir()
    assert main(["map", str(gt), str(tmp_path / "dets")]) == 1
    lines = _stderr_lines(capsys)
    assert len(lines) == 1 and lines[0].startswith("odp map: error: ")
    assert "a.json" in lines[0] and "valid UTF-8 JSON" in lines[0]


def test_an_output_under_a_file_is_one_line(dataset: Path, tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be\n")
    code = main(["convert", "manifest", str(dataset), str(blocker / "out" / "train.jsonl")])
    lines = _stderr_lines(capsys)
    assert code == 1, lines
    assert len(lines) == 1 and lines[0].startswith("odp convert manifest: error: ")
    assert "blocker" in lines[0] and "Traceback" not in lines[0]


def test_a_missing_input_argument_is_exit_2(tmp_path: Path, capsys) -> None:
    assert main(["map", str(tmp_path / "no-gt"), str(tmp_path / "no-dets")]) == 2
    (line,) = _stderr_lines(capsys)
    assert line.startswith("odp map: error: ") and "no-gt" in line


def test_argparse_errors_are_exit_2(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["convert", "recordio"])
    assert info.value.code == 2
    assert "usage: odp convert recordio" in capsys.readouterr().err


def test_debug_shows_the_traceback_then_the_line(tmp_path: Path, capsys) -> None:
    (tmp_path / "gt").mkdir()
    (tmp_path / "gt" / "a.json").write_text("[]")
    (tmp_path / "dets").mkdir()
    assert main(["--debug", "map", str(tmp_path / "gt"), str(tmp_path / "dets")]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert err.splitlines()[-1].startswith("odp map: error: ")


def test_an_invalid_dataset_names_its_first_error(dataset: Path, tmp_path: Path, capsys) -> None:
    import shutil

    from dataset_defects import inject

    bad = tmp_path / "bad"
    shutil.copytree(dataset, bad)
    expected = inject(bad, "class_gap", "train", 0)
    assert main(["validate", str(bad), "--workers", "1"]) == 1
    last = _stderr_lines(capsys)[-1]
    assert last.startswith(f"odp validate: error: {expected.file}: {expected.rule} (C001): ")


def test_an_internal_error_says_how_to_see_the_traceback(tmp_path: Path, capsys, monkeypatch):
    model = tmp_path / "model"
    model.mkdir()
    (model / "class_map.json").write_text('{"0": "a"}')
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "odp-unknown-scheme://nowhere")
    assert main(["register", str(model), "--name", "m"]) == 1
    last = _stderr_lines(capsys)[-1]
    assert last.startswith("odp register: ")
    assert last.endswith("(run with --debug for the traceback)") and "internal error" in last
