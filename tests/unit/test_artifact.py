"""pipeline_lib.artifact: packaging, members, side files and safe extraction of model.tar.gz."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
import tempfile
from pathlib import Path

import pytest

from pipeline_lib import artifact

CLASS_MAP = {"0": "circle", "1": "square"}


def make_model_dir(folder: Path) -> Path:
    """A folder shaped like ML_ROOT/model (stand-in contents, not a real network)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / artifact.SYMBOL).write_text('{"nodes": []}')
    (folder / artifact.PARAMS).write_text("weights")
    (folder / artifact.HYPERPARAMS).write_text(json.dumps({"epochs": "2", "image_shape": "300"}))
    (folder / artifact.CLASS_MAP).write_text(json.dumps(CLASS_MAP))
    return folder


def test_package_is_flat_unless_recursive(tmp_path: Path) -> None:
    model = make_model_dir(tmp_path / "model")
    (model / "sub").mkdir()
    (model / "sub" / "extra.txt").write_text("x")
    flat = artifact.package(model, tmp_path / "flat.tar.gz")
    assert flat == str(tmp_path / "flat.tar.gz")
    assert artifact.member_names(flat) == sorted(p.name for p in model.iterdir() if p.is_file())
    deep = artifact.package(model, tmp_path / "deep.tar.gz", recursive=True)
    assert "sub/extra.txt" in artifact.member_names(deep)
    assert not list(tmp_path.glob(".*.part"))  # written atomically


def test_members_class_map_and_hyperparameters(tmp_path: Path) -> None:
    tar = artifact.package(make_model_dir(tmp_path / "model"), tmp_path / "model.tar.gz")
    assert artifact.class_map_json(tar) == CLASS_MAP
    assert artifact.hyperparameters_json(tar)["epochs"] == "2"
    assert artifact.read_member(tar, artifact.PARAMS) == b"weights"
    with pytest.raises(KeyError):
        artifact.read_member(tar, "missing.json")


def test_copy_side_files_at_any_depth(tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_model_dir(src / "nested")
    tar = artifact.package(src, tmp_path / "model.tar.gz", recursive=True)
    dest = tmp_path / "dest"
    dest.mkdir()
    found = artifact.copy_side_files(tar, dest)
    assert sorted(p.name for p in found) == [artifact.CLASS_MAP, artifact.HYPERPARAMS]
    assert json.loads((dest / artifact.CLASS_MAP).read_text()) == CLASS_MAP
    (tmp_path / "bad.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(artifact.ArtifactError, match="bad.tar.gz is not a readable model.tar.gz"):
        artifact.copy_side_files(tmp_path / "bad.tar.gz", dest)


@pytest.fixture(autouse=True)
def _private_tempdir(tmp_path_factory, monkeypatch):
    """Scratch folders are counted in a temp dir of this test's own (other processes on
    the machine make and remove theirs in the shared one)."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path_factory.mktemp("scratch")))


def _scratch_folders() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("odp-model-*")}


def test_model_folder_and_config(tmp_path: Path) -> None:
    model = make_model_dir(tmp_path / "model")
    with artifact.model_folder(model) as folder:
        assert folder == model
    tar = artifact.package(model, tmp_path / "out" / "model.tar.gz")
    before = _scratch_folders()
    for source in (tar, tmp_path / "out"):  # the tarball, or a folder holding it
        with artifact.model_folder(source) as folder:
            hp, classes = artifact.read_artifact_config(folder)
            assert hp["image_shape"] == "300" and classes == {0: "circle", 1: "square"}
            assert folder.name in _scratch_folders()
    with pytest.raises(RuntimeError), artifact.model_folder(tar):
        raise RuntimeError("the block fails")
    assert _scratch_folders() == before  # removed on every exit path
    (model / artifact.PARAMS).unlink()
    with pytest.raises(FileNotFoundError, match="missing"):
        artifact.read_artifact_config(model)


def _tar_with(path: Path, *members: tuple[tarfile.TarInfo, bytes | None]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


def test_extract_confines_members_to_the_target(tmp_path: Path) -> None:
    escaping = (
        (_file("../escape.txt"), "not a relative path"),
        (_file("/abs.txt"), "not a relative path"),  # refused, not stripped (issue 27)
        (_link("out-link", "../../etc/passwd"), "member refused"),
    )
    for i, (member, why) in enumerate(escaping):
        bad = _tar_with(tmp_path / f"bad{i}.tar.gz", member)
        with pytest.raises(artifact.ArtifactError, match=f"bad{i}.tar.gz: .*{why}"):
            artifact.extract(bad, tmp_path / f"out{i}")
        assert not (tmp_path / f"out{i}").exists()  # the folder it created is gone again
        with pytest.raises(artifact.ArtifactError, match=why):
            artifact.check(bad)  # registration checks the same way
    assert not (tmp_path / "escape.txt").exists()


def test_dot_slash_members_read_the_same_everywhere(tmp_path: Path) -> None:
    """``tar -C model -czf m.tar.gz .`` names members ``./x``: every reader takes them."""
    tar = _tar_with(tmp_path / "m.tar.gz", _file("./class_map.json", b'{"0": "a"}'))
    assert artifact.member_names(tar) == ["class_map.json"]
    assert artifact.check(tar) == ["class_map.json"]
    assert artifact.class_map_json(tar) == {"0": "a"}


def test_extract_keeps_regular_files_only(tmp_path: Path) -> None:
    tar = _tar_with(
        tmp_path / "m.tar.gz",
        _file("a.txt", b"A"),
        _file("dir/b.txt", b"B"),
        _link("inside-link", "a.txt"),
        _link("hard-link", "a.txt", tarfile.LNKTYPE),
    )
    out = artifact.extract(tar, tmp_path / "out")
    assert (out / "a.txt").read_bytes() == b"A" and (out / "dir" / "b.txt").read_bytes() == b"B"
    assert not (out / "inside-link").exists() and not (out / "inside-link").is_symlink()
    assert not (out / "hard-link").exists()


def test_as_tarball_forms(tmp_path: Path) -> None:
    model = make_model_dir(tmp_path / "model")
    with artifact.as_tarball(model) as tar:  # a folder of model files is tarred
        assert sorted(artifact.member_names(tar)) == sorted(p.name for p in model.iterdir())
    packed = Path(artifact.package(model, tmp_path / "out" / artifact.MODEL_FILE))
    with artifact.as_tarball(packed) as tar:
        assert tar == packed
    with artifact.as_tarball(packed.parent) as tar:
        assert tar == packed
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty"), artifact.as_tarball(tmp_path / "empty"):
        pass
    with pytest.raises(FileNotFoundError, match="no model"), artifact.as_tarball(tmp_path / "no"):
        pass


def test_extract_refuses_special_files(tmp_path: Path) -> None:
    fifo = tarfile.TarInfo("pipe")
    fifo.type = tarfile.FIFOTYPE
    tar = _tar_with(tmp_path / "fifo.tar.gz", _file("a.txt"), (fifo, None))
    with pytest.raises(artifact.ArtifactError, match="fifo.tar.gz: member refused"):
        artifact.extract(tar, tmp_path / "out")


def test_member_count_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tar = _tar_with(tmp_path / "many.tar.gz", *(_file(f"f{i}.txt") for i in range(6)))
    monkeypatch.setenv(artifact.MAX_MEMBERS_ENV, "5")
    for read in (artifact.member_names, lambda t: artifact.extract(t, tmp_path / "out")):
        with pytest.raises(artifact.ArtifactError, match="many.tar.gz has more than 5 members"):
            read(tar)
    assert not (tmp_path / "out").exists()
    monkeypatch.setenv(artifact.MAX_MEMBERS_ENV, "6")
    assert len(artifact.member_names(tar)) == 6


def test_total_size_limit_checked_before_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 3 MiB of zeros compress to a few KiB: the declared sizes give the bomb away
    tar = _tar_with(
        tmp_path / "bomb.tar.gz", _file("small.txt", b"s"), _file("big.bin", bytes(3 << 20))
    )
    assert tar.stat().st_size < 64 << 10
    monkeypatch.setenv(artifact.MAX_BYTES_ENV, str(1 << 20))
    dest = tmp_path / "out"
    with pytest.raises(artifact.ArtifactError, match=r"bomb.tar.gz expands to more than 1048576"):
        artifact.extract(tar, dest)
    assert not dest.exists()  # nothing was written, not even the small member
    monkeypatch.setenv(artifact.MAX_BYTES_ENV, "not-a-number")
    with pytest.raises(ValueError, match="ODP_MAX_ARCHIVE_BYTES='not-a-number'"):
        artifact.extract(tar, dest)


def test_side_files_are_bounded(tmp_path: Path) -> None:
    huge = _tar_with(tmp_path / "m.tar.gz", _file(artifact.CLASS_MAP, bytes(17 << 20)))
    with pytest.raises(artifact.ArtifactError, match="class_map.json declares"):
        artifact.class_map_json(huge)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "not-gzip-tar", "empty"])
def test_damaged_archives_are_one_clear_error(tmp_path: Path, damage: str) -> None:
    good = Path(artifact.package(make_model_dir(tmp_path / "model"), tmp_path / "good.tar.gz"))
    bad = tmp_path / f"{damage}.tar.gz"
    data = good.read_bytes()
    bad.write_bytes(
        {
            "truncated": data[: len(data) // 2],
            "garbage": os.urandom(4096),
            "not-gzip-tar": gzip.compress(b"just some text, not a tar archive" * 40),
            "empty": b"",
        }[damage]
    )
    for read in (
        artifact.member_names,
        artifact.class_map_json,
        lambda t: artifact.extract(t, tmp_path / "out"),
    ):
        with pytest.raises(artifact.ArtifactError, match=f"{damage}.tar.gz"):
            read(bad)
    with pytest.raises(artifact.ArtifactError), artifact.model_folder(bad):
        pass
    assert not (tmp_path / "out").exists()
