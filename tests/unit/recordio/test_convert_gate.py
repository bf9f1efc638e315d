"""``odp convert recordio`` refuses what ``odp validate`` refuses, with the same rule code, and
never reads outside the dataset (a marker file beside it never reaches any output)."""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import pytest
from dataset_defects import inject

from pipeline_lib.cli import main
from pipeline_lib.gate.rules import RULES
from pipeline_lib.recordio.convert import convert_to_recordio
from pipeline_lib.recordio.errors import ConversionError
from pipeline_lib.validation import ValidationOptions, validate

MARKER = b"SECRET-MARKER-0123456789"
# Every defect validate reports as an error that convert checks; the others are warnings,
# or concern files convert never packs (an image without JSON, a stray file), or are
# accepted on purpose: empty images (negatives) and category names (not packed).
REFUSED = [
    "bomb", "class_gap", "exif_rotated_annotation", "format", "grayscale", "malformed_json",
    "missing_field", "missing_image", "name_mismatch", "negative_id", "non_finite",
    "non_positive_box", "out_of_bounds", "path_escape", "rgba", "size_mismatch",
    "train_val_overlap", "truncated", "undecodable", "wrong_type",
]  # fmt: skip
FAST = ValidationOptions(great_expectations=False, workers=1)


@pytest.fixture
def data(dataset, tmp_path) -> Path:
    """A copy of the module's dataset, and a secret marker image beside it."""
    (tmp_path / "secret.jpg").write_bytes(MARKER)
    return Path(shutil.copytree(dataset, tmp_path / "data"))


def _outputs(tmp_path: Path) -> list[str]:
    return sorted(
        p.name for p in tmp_path.iterdir() if p.name not in ("data", "secret.jpg", "outside.json")
    )


def _first_json(data: Path, channel: str = "train") -> tuple[Path, dict]:
    path = sorted((data / f"{channel}_annotation").glob("*.json"))[0]
    return path, json.loads(path.read_text())


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("defect", REFUSED)
def test_convert_refuses_what_validate_refuses_with_its_code(data, tmp_path, defect, workers):
    expected = inject(data, defect, "train", 0)
    code = RULES[expected.rule].code
    assert expected.rule in {f.rule for f in validate(str(data), FAST).errors}
    with pytest.raises(ConversionError, match=rf"\[{code} {expected.rule}\]") as info:
        convert_to_recordio(data, tmp_path / "o", workers=workers, chunk_size=3, progress=False)
    assert "\n" not in str(info.value)
    assert _outputs(tmp_path) == []  # nothing half-written, no scratch


def _escape(data: Path, tmp_path: Path, how: str) -> None:
    path, ann = _first_json(data)
    if how == "absolute":
        ann["file"] = str(tmp_path / "secret.jpg")
    elif how == "dotdot":
        ann["file"] = "../../secret.jpg"
    elif how == "symlink":
        image = data / "train" / ann["file"]
        image.unlink()
        os.symlink(tmp_path / "secret.jpg", image)
    elif how == "dangling":  # the same message as for an existing target
        image = data / "train" / ann["file"]
        image.unlink()
        os.symlink(tmp_path / "nothing.jpg", image)
    elif how == "parent":
        os.symlink(tmp_path, data / "train" / "up")
        ann["file"] = "up/secret.jpg"
    elif how == "json_symlink":
        (tmp_path / "outside.json").write_text(json.dumps(ann))
        path.unlink()
        os.symlink(tmp_path / "outside.json", path)
        return
    path.write_text(json.dumps(ann))


@pytest.mark.parametrize("skip", [False, True])
@pytest.mark.parametrize(
    "how", ["absolute", "dotdot", "symlink", "dangling", "parent", "json_symlink"]
)
def test_nothing_outside_the_dataset_is_read(data, tmp_path, how, skip, capsys):
    _escape(data, tmp_path, how)
    args = ["convert", "recordio", str(data), str(tmp_path / "o"), "--workers", "1"]
    assert main(args + ["--skip-validation"] * skip) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "[L005 pairing.path_escape]" in err
    assert "Traceback" not in err and "SECRET" not in err
    assert _outputs(tmp_path) == []
    for out in tmp_path.rglob("*"):  # the marker's bytes are nowhere but in the marker
        if out.is_file() and not out.is_symlink() and out.name != "secret.jpg":
            assert MARKER not in out.read_bytes(), out


def test_an_escape_reads_the_same_whether_the_outside_file_exists(dataset, tmp_path):
    messages = []
    for how in ("symlink", "dangling"):
        root = tmp_path / how
        root.mkdir()
        (root / "secret.jpg").write_bytes(MARKER)
        data = Path(shutil.copytree(dataset, root / "data"))
        _escape(data, root, how)
        with pytest.raises(ConversionError) as info:
            convert_to_recordio(data, root / "o", workers=1, progress=False)
        messages.append(str(info.value).replace(str(root), "ROOT"))
    assert messages[0] == messages[1]
    assert str(len(MARKER)) not in messages[0]


@pytest.mark.parametrize("what", ["image", "json"])
def test_a_fifo_named_like_an_input_is_refused_without_blocking(data, tmp_path, what):
    path, ann = _first_json(data)
    victim = data / "train" / ann["file"] if what == "image" else path
    victim.unlink()
    os.mkfifo(victim)
    errors: list[Exception] = []

    def run() -> None:
        try:
            convert_to_recordio(data, tmp_path / "o", workers=1, progress=False, validate=False)
        except ConversionError as exc:
            errors.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(30)
    assert not worker.is_alive(), "the converter blocked on a FIFO"
    assert "[L008 path.not_regular_file]" in str(errors[0])
    assert _outputs(tmp_path) == []


def test_a_huge_class_id_and_duplicate_keys_are_refused_by_rule(data, tmp_path):
    path, ann = _first_json(data)
    ann["annotations"][0]["class_id"] = 1_000_000_000
    path.write_text(json.dumps(ann))
    with pytest.raises(ConversionError, match=r"1000000000.*\[C006 class.id_too_large\]"):
        convert_to_recordio(data, tmp_path / "o", workers=1, progress=False)
    ann["annotations"][0]["class_id"] = 0
    path.write_text(json.dumps(ann)[:-1] + ', "file": "x.jpg"}')
    with pytest.raises(ConversionError, match=r"'file'.*\[J004 json.duplicate_key\]"):
        convert_to_recordio(data, tmp_path / "o", workers=1, progress=False)
    assert _outputs(tmp_path) == []


def test_skip_validation_packs_a_truncated_image_but_keeps_the_path_gate(data, tmp_path, capsys):
    inject(data, "truncated", "train", 0)
    args = ["convert", "recordio", str(data), str(tmp_path / "o"), "--workers", "1"]
    assert main(args) == 1
    assert "[I002 image.truncated]" in capsys.readouterr().err
    assert main([*args, "--skip-validation"]) == 0
    assert (tmp_path / "o_train.rec").is_file()


def test_same_size_and_edges_but_other_bytes_is_not_an_overlap(data, tmp_path):
    _, train = _first_json(data, "train")
    _, val = _first_json(data, "validation")
    raw = bytearray((data / "train" / train["file"]).read_bytes())
    assert len(raw) > 3 * 4096
    raw[len(raw) // 2] ^= 0xFF  # a different middle: the cheap keys collide, the bytes differ
    (data / "validation" / val["file"]).write_bytes(bytes(raw))
    val_json = data / "validation_annotation" / f"{Path(val['file']).stem}.json"
    val_json.write_text(json.dumps({**train, "file": val["file"]}))
    assert "dataset.train_validation_overlap" not in {
        f.rule for f in validate(str(data), FAST).findings
    }
    convert_to_recordio(data, tmp_path / "o", workers=1, progress=False)
    raw[len(raw) // 2] ^= 0xFF  # now the very same bytes
    (data / "validation" / val["file"]).write_bytes(bytes(raw))
    with pytest.raises(ConversionError, match=r"\[D001 dataset.train_validation_overlap\]"):
        convert_to_recordio(data, tmp_path / "p", workers=1, progress=False)
