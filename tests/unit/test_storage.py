"""Local storage: atomic streaming writers, ranged reads, listings (S3: tests/integration)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline_lib import storage


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_atomic_writer_commit_and_abort(tmp_path):
    w = storage.atomic_writer(tmp_path / "a.bin")
    w.write(b"hello ")
    w.write(memoryview(b"world"))
    assert w.tell() == 11
    assert not (tmp_path / "a.bin").exists()  # invisible until committed
    assert w.commit() == str(tmp_path / "a.bin")
    assert (tmp_path / "a.bin").read_bytes() == b"hello world"
    w = storage.atomic_writer(tmp_path / "a.bin")
    w.write(b"partial")
    w.abort()
    assert (tmp_path / "a.bin").read_bytes() == b"hello world"
    assert _names(tmp_path) == ["a.bin"]


def test_append_file_concatenates(tmp_path):
    (tmp_path / "p1").write_bytes(b"x" * 100_003)
    (tmp_path / "p2").write_bytes(b"y" * 7)
    with storage.open_atomic(tmp_path / "out", durable=False) as w:
        w.write(b"head")
        assert w.append_file(tmp_path / "p1") == 100_003
        w.write(b"mid")
        w.append_file(tmp_path / "p2")
        assert w.tell() == 4 + 100_003 + 3 + 7
    assert (tmp_path / "out").read_bytes() == b"head" + b"x" * 100_003 + b"mid" + b"y" * 7


def test_open_atomic_removes_everything_on_error(tmp_path):
    with pytest.raises(RuntimeError), storage.open_atomic(tmp_path / "x.rec") as w:
        w.write(b"data")
        raise RuntimeError("boom")
    assert _names(tmp_path) == []


def test_commit_all_aborts_the_rest_on_failure(tmp_path):
    a = storage.atomic_writer(tmp_path / "a")
    b = storage.atomic_writer(tmp_path / "b")
    a.write(b"1")
    b.write(b"2")
    b.abort()
    with pytest.raises(RuntimeError):
        storage.commit_all([a, b])
    assert (tmp_path / "a").exists()  # committed before the failure
    assert _names(tmp_path) == ["a"]


def test_ranged_reads_and_listing(tmp_path):
    (tmp_path / "d" / "s").mkdir(parents=True)
    (tmp_path / "d" / "s" / "f.bin").write_bytes(bytes(range(200)))
    (tmp_path / "d" / "g.txt").write_text("abc")
    uri = str(tmp_path / "d" / "s" / "f.bin")
    assert storage.size(uri) == 200
    assert storage.read_range(uri, 10, 5) == bytes(range(10, 15))
    assert storage.read_range(uri, 195, 50) == bytes(range(195, 200))
    assert storage.read_range(uri, 500, 5) == b""
    with storage.open_read(uri) as f:
        f.seek(100)
        assert f.read(3) == bytes([100, 101, 102])
    infos = storage.list_objects(tmp_path / "d")
    assert [(Path(o.uri).name, o.size, o.etag) for o in infos] == [
        ("g.txt", 3, None),
        ("f.bin", 200, None),
    ]
    assert storage.list_objects(tmp_path / "missing") == []
    with pytest.raises(FileNotFoundError):
        storage.size(tmp_path / "missing")


def test_existing_api_is_unchanged(tmp_path):
    with storage.atomic_write(tmp_path / "x.txt") as tmp:
        tmp.write_text("ok")
    assert (tmp_path / "x.txt").read_text() == "ok"
    assert storage.join("s3://b/p/", "a", "/b") == "s3://b/p/a/b"
    assert storage.split_s3("s3://bucket/a/b") == ("bucket", "a/b")


# ------------------------------------------------------------------ outputs are never destructive


def _publish_local(dest: Path, files: dict[str, str], **kwargs) -> None:
    with storage.atomic_dir(dest, **kwargs) as tmp:
        for rel, text in files.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_text(text)


def test_atomic_dir_refuses_a_non_empty_folder_and_keeps_it(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep").write_text("mine")
    with pytest.raises(storage.OutputExistsError, match="--overwrite"):
        _publish_local(out, {"a.json": "{}"}, writer="odp predict")
    with pytest.raises(storage.OutputExistsError, match="no .odp-complete"):
        _publish_local(out, {"a.json": "{}"}, overwrite=True, writer="odp predict")
    assert _names(out) == ["keep"] and _names(tmp_path) == ["out"]


def test_atomic_dir_into_an_empty_folder_and_overwrite_of_its_own_output(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    _publish_local(out, {"a.json": "1", "sub/b.json": "2"}, writer="odp evaluate")
    assert _names(out) == [".odp-complete", "a.json", "sub"]
    _publish_local(out, {"c.json": "3"}, overwrite=True, writer="odp evaluate")
    assert _names(out) == [".odp-complete", "c.json"]
    assert _names(tmp_path) == ["out"]  # no temporary sibling left
    with pytest.raises(storage.OutputExistsError, match="an output of odp evaluate"):
        _publish_local(out, {"d.json": "4"}, overwrite=True, writer="odp predict")


@pytest.mark.parametrize("stray", ["keep", "sub/keep", "emptydir/"])
def test_overwrite_refuses_a_folder_with_anything_its_marker_does_not_list(tmp_path, stray):
    out = tmp_path / "out"
    _publish_local(out, {"a.json": "1", "sub/b.json": "2"}, writer="odp predict")
    if stray.endswith("/"):
        (out / stray).mkdir()
    else:
        (out / stray).write_text("mine")
    with pytest.raises(storage.OutputExistsError, match=stray.rstrip("/")):
        _publish_local(out, {"c.json": "3"}, overwrite=True, writer="odp predict")
    assert (out / stray.rstrip("/")).exists() and (out / "a.json").exists()


def test_a_file_or_symlink_at_an_output_folder_is_never_replaced(tmp_path):
    (tmp_path / "f").write_text("a file")
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    for name in ("f", "link"):
        with pytest.raises(storage.OutputExistsError, match="never replaced"):
            _publish_local(tmp_path / name, {"a": "1"}, overwrite=True)
    assert (tmp_path / "f").read_text() == "a file" and (tmp_path / "link").is_symlink()


def test_output_files_are_refused_unless_overwrite_and_never_replace_a_folder(tmp_path):
    (tmp_path / "m.jsonl").write_text("mine")
    (tmp_path / "dir.rec").mkdir()
    storage.check_output_file(tmp_path / "new.jsonl")
    with pytest.raises(storage.OutputExistsError, match="--overwrite"):
        storage.check_output_file(tmp_path / "m.jsonl")
    storage.check_output_file(tmp_path / "m.jsonl", overwrite=True)
    with pytest.raises(storage.OutputExistsError, match="a folder"):
        storage.check_output_file(tmp_path / "dir.rec", overwrite=True)
