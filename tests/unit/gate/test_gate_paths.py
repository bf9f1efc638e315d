"""The path gate: names confined to their folder, only regular files, nothing revealed."""

from __future__ import annotations

import os
import threading

import pytest

from pipeline_lib.gate.paths import Confined, check_relative, read_regular
from pipeline_lib.gate.rules import RULES, GateError


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "train"
    (root / "sub").mkdir(parents=True)
    (root / "a.jpg").write_bytes(b"inside")
    (root / "sub" / "b.jpg").write_bytes(b"nested")
    (tmp_path / "secret.jpg").write_bytes(b"SECRET-MARKER")
    return root


def _refusal(fn, *args) -> GateError:
    with pytest.raises(GateError) as info:
        fn(*args)
    return info.value


@pytest.mark.parametrize("name", ["/etc/passwd", "../secret.jpg", "sub/../../secret.jpg", ""])
def test_absolute_and_dotdot_names_are_refused_lexically(folder, name):
    err = _refusal(Confined(folder).read, name, "ann.json")
    assert err.rule == "pairing.path_escape" and err.code == RULES[err.rule].code == "L005"
    assert str(err).startswith("ann.json: file ") and str(err).endswith(
        "[L005 pairing.path_escape]"
    )
    assert "\n" not in str(err) and "SECRET" not in str(err)


def test_symlinks_leaving_the_folder_read_the_same_whether_the_target_exists(folder, tmp_path):
    os.symlink(tmp_path / "secret.jpg", folder / "exists.jpg")
    os.symlink(tmp_path / "nothing.jpg", folder / "missing.jpg")
    os.symlink(tmp_path, folder / "sub" / "up")  # a parent folder that leaves
    gate = Confined(folder)
    messages = [str(_refusal(gate.read, n, "j")) for n in ("exists.jpg", "missing.jpg")]
    assert messages[0].replace("exists", "missing") == messages[1]
    assert "symlink that leaves" in messages[0] and str(tmp_path) not in messages[0]
    assert _refusal(gate.read, "sub/up/secret.jpg", "j").rule == "pairing.path_escape"
    assert _refusal(gate.resolve, "sub/up/secret.jpg", "j").rule == "pairing.path_escape"


def test_symlinks_inside_the_folder_and_nested_files_are_fine(folder):
    os.symlink(folder / "sub" / "b.jpg", folder / "link.jpg")
    gate = Confined(folder)
    assert gate.read("a.jpg", "j") == b"inside"
    assert gate.read("sub/b.jpg", "j") == b"nested"
    assert gate.read("link.jpg", "j") == b"nested"
    with pytest.raises(FileNotFoundError):
        gate.read("none.jpg", "j")


def test_a_fifo_or_folder_is_refused_without_blocking(folder):
    os.mkfifo(folder / "pipe.jpg")
    result: list = []
    worker = threading.Thread(
        target=lambda: result.append(_refusal(Confined(folder).read, "pipe.jpg", "j")),
        daemon=True,
    )
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "reading a FIFO blocked"
    assert result[0].rule == "path.not_regular_file" and "a FIFO" in str(result[0])
    assert _refusal(Confined(folder).read, "sub", "j").rule == "path.not_regular_file"
    assert _refusal(read_regular, folder / "pipe.jpg").rule == "path.not_regular_file"


def test_absolute_refs_inside_the_folder_are_accepted_for_manifests(folder, tmp_path):
    gate = Confined(folder)
    assert gate.resolve_ref(str(folder / "a.jpg"), "m") == os.path.realpath(folder / "a.jpg")
    assert _refusal(gate.resolve_ref, str(tmp_path / "secret.jpg"), "m").rule == (
        "pairing.path_escape"
    )
    assert check_relative("x/y.jpg", "s") == "x/y.jpg"
    assert _refusal(check_relative, "x/../y.jpg", "s").code == "L005"
