"""S3 through a real HTTP endpoint (a moto server started by the test): streaming multipart
writes that appear only when complete, ranged reads, conversions from and to s3://."""

from __future__ import annotations

import filecmp
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline_lib import storage
from pipeline_lib.manifest import ManifestDetection, dataset_to_manifest, manifest_to_dataset
from pipeline_lib.recordio.cache_key import dataset_content_hash
from pipeline_lib.recordio.convert import convert_to_recordio
from pipeline_lib.recordio.errors import ConversionError
from pipeline_lib.recordio.export import recordio_to_dataset
from pipeline_lib.recordio.reader import RecordIODetection
from pipeline_lib.synthetic import SynthConfig, generate

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "data"
    generate(root, SynthConfig(images=20, classes=3, seed=5))
    return root


def _pending_uploads(s3) -> list:
    return s3.client().list_multipart_uploads(Bucket=s3.bucket).get("Uploads", [])


def test_multipart_writer_is_invisible_until_committed(s3):
    uri = s3.uri("big/object.bin")
    data = np.random.default_rng(0).integers(0, 256, 12 << 20, dtype=np.uint8).tobytes()
    w = storage.atomic_writer(uri, part_size=5 << 20)
    for i in range(0, len(data), 1 << 20):
        w.write(data[i : i + (1 << 20)])
    assert len(_pending_uploads(s3)) == 1  # parts are already uploaded, streaming
    assert s3.keys() == []  # ... but nothing is visible yet
    w.commit()
    assert s3.keys() == ["big/object.bin"]
    assert storage.size(uri) == len(data)
    assert storage.read_range(uri, 5 << 20, 10) == data[5 << 20 : (5 << 20) + 10]
    with storage.open_read(uri, buffer_size=1 << 20) as f:
        f.seek(len(data) - 7)
        assert f.read() == data[-7:]
    assert storage.read_bytes(uri) == data


def test_aborted_writer_leaves_no_object_and_no_upload(s3):
    w = storage.atomic_writer(s3.uri("x.rec"), part_size=5 << 20)
    w.write(b"z" * (6 << 20))
    w.abort()
    assert s3.keys() == [] and _pending_uploads(s3) == []
    with pytest.raises(RuntimeError), storage.open_atomic(s3.uri("small.txt")) as w:
        w.write(b"abc")
        raise RuntimeError("boom")
    assert s3.keys() == []


def test_convert_local_to_s3_and_read_with_ranged_gets(s3, dataset, tmp_path):
    local = convert_to_recordio(dataset, tmp_path / "ds", workers=1, progress=False)
    remote = convert_to_recordio(dataset, s3.uri("out/ds"), workers=2, progress=False)
    assert remote.label_width == local.label_width
    assert s3.keys("out/") == sorted(
        f"out/ds_{ch}.{ext}" for ch in ("train", "validation") for ext in ("rec", "idx", "lst")
    )
    for name in ("ds_train.rec", "ds_train.idx", "ds_validation.lst"):
        assert storage.read_bytes(s3.uri(f"out/{name}")) == (tmp_path / name).read_bytes()
    ds = RecordIODetection(s3.uri("out/ds_train.rec"))
    ref = RecordIODetection(tmp_path / "ds_train.rec")
    assert len(ds) == len(ref) and ds.class_ids == ref.class_ids
    for i in (0, 5, len(ds) - 1):
        img, label = ds[i]
        ref_img, ref_label = ref[i]
        assert np.array_equal(img, ref_img) and np.array_equal(label, ref_label)


def test_convert_s3_to_s3_and_back(s3, dataset, tmp_path):
    storage.upload_dir(dataset, s3.uri("data"))
    result = convert_to_recordio(
        s3.uri("data"), s3.uri("rec/val"), channel="validation", progress=False
    )
    assert result.channels["validation"].images == 4
    local = convert_to_recordio(dataset, tmp_path / "val", channel="validation", progress=False)
    assert result.label_width == local.label_width
    assert storage.read_bytes(s3.uri("rec/val.rec")) == (tmp_path / "val.rec").read_bytes()
    # a missing .idx on S3 is rebuilt by a streamed scan
    s3.client().delete_object(Bucket=s3.bucket, Key="rec/val.idx")
    ds = RecordIODetection(s3.uri("rec/val.rec"))
    assert ds.offsets.tolist() == RecordIODetection(tmp_path / "val.rec").offsets.tolist()
    n = recordio_to_dataset(s3.uri("rec/val.rec"), s3.uri("back"), "validation", progress=False)
    assert n == 4
    for img in sorted((dataset / "validation").iterdir()):
        assert storage.read_bytes(s3.uri(f"back/validation/{img.name}")) == img.read_bytes()


def test_failed_s3_conversion_leaves_nothing(s3, dataset, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(dataset, bad)
    victim = sorted((bad / "validation_annotation").glob("*.json"))[-1]
    victim.write_text("{broken")
    with pytest.raises(ConversionError, match=victim.name):
        convert_to_recordio(bad, s3.uri("out/ds"), workers=2, chunk_size=2, progress=False)
    assert s3.keys() == [] and _pending_uploads(s3) == []


def test_manifest_with_s3_source_refs(s3, dataset, tmp_path):
    storage.upload_dir(dataset, s3.uri("data"))
    n = dataset_to_manifest(s3.uri("data"), s3.uri("m/train.manifest"))
    assert n == 16
    first = json.loads(storage.read_bytes(s3.uri("m/train.manifest")).splitlines()[0])
    assert first["source-ref"] == s3.uri("data/train/train_000000.jpg")
    ds = ManifestDetection(s3.uri("m/train.manifest"))
    img, label = ds[0]
    assert img.shape[2] == 3 and label.shape[1] == 5
    back = tmp_path / "back"
    assert manifest_to_dataset(s3.uri("m/train.manifest"), back, progress=False) == 16
    for sub in ("train", "train_annotation"):
        names = sorted(p.name for p in (dataset / sub).iterdir())
        assert sorted(p.name for p in (back / sub).iterdir()) == names
        _, mismatch, errors = filecmp.cmpfiles(dataset / sub, back / sub, names, shallow=False)
        assert mismatch == [] and errors == []


def test_content_hash_on_s3_needs_no_download_and_tracks_changes(s3, dataset):
    storage.upload_dir(dataset, s3.uri("data"))
    h = dataset_content_hash(s3.uri("data"), {"resize": None})
    assert dataset_content_hash(s3.uri("data"), {"resize": None}) == h
    key = "data/train/train_000001.jpg"
    s3.client().put_object(Bucket=s3.bucket, Key=key, Body=b"changed")
    assert dataset_content_hash(s3.uri("data"), {"resize": None}) != h


def _publish(uri: str, files: dict[str, bytes]) -> None:
    with storage.atomic_dir(uri, overwrite=True) as tmp:
        for rel, data in files.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_bytes(data)


def test_atomic_dir_on_s3_replaces_the_folder_as_a_whole(s3, tmp_path):
    """A republished folder holds nothing from the earlier attempt; the manifest comes last."""
    uri = s3.uri("runs/r1/validate/report")
    _publish(uri, {"report.json": b"{}", "docs/index.html": b"<html>", "old.txt": b"x"})
    _publish(uri, {"report.json": b'{"ok": true}', "summary.txt": b"fine"})
    assert s3.keys("runs/r1/validate/report/") == [
        "runs/r1/validate/report/.odp-complete",
        "runs/r1/validate/report/report.json",
        "runs/r1/validate/report/summary.txt",
    ]
    assert storage.published_files(uri) == {"report.json": 12, "summary.txt": 4}
    got = storage.download_dir(uri, tmp_path / "got")
    assert sorted(p.name for p in got.rglob("*") if p.is_file()) == ["report.json", "summary.txt"]
    assert (got / "report.json").read_bytes() == b'{"ok": true}'


def test_failed_attempt_leaves_the_published_folder_alone(s3):
    uri = s3.uri("runs/r2/out")
    _publish(uri, {"a.txt": b"first"})
    with pytest.raises(RuntimeError), storage.atomic_dir(uri, overwrite=True) as tmp:
        (tmp / "b.txt").write_bytes(b"half")
        raise RuntimeError("task killed")
    assert storage.published_files(uri) == {"a.txt": 5}
    assert s3.keys("runs/r2/out/") == ["runs/r2/out/.odp-complete", "runs/r2/out/a.txt"]


def test_reader_takes_only_what_the_manifest_lists(s3, tmp_path):
    """Keys that appear beside a published folder (another writer, a manual upload) are not
    part of it."""
    uri = s3.uri("runs/r3/out")
    _publish(uri, {"a.txt": b"first"})
    s3.client().put_object(Bucket=s3.bucket, Key="runs/r3/out/intruder.txt", Body=b"?")
    got = storage.download_dir(uri, tmp_path / "got")
    assert [p.name for p in got.iterdir()] == ["a.txt"]
    assert storage.published_files(s3.uri("runs/r3/nothing")) is None


def test_s3_outputs_are_never_destructive(s3):
    """A prefix holding keys odp did not write is refused, --overwrite or not; an earlier
    output is replaced only with overwrite, and an interrupted publication (pending marker)
    too."""
    uri = s3.uri("runs/r4/out")
    s3.client().put_object(Bucket=s3.bucket, Key="runs/r4/out/mine.txt", Body=b"mine")
    for overwrite in (False, True):
        with pytest.raises(storage.OutputExistsError, match="mine.txt|--overwrite"):
            _publish_plain(uri, {"a.txt": b"x"}, overwrite)
    s3.client().delete_object(Bucket=s3.bucket, Key="runs/r4/out/mine.txt")
    _publish_plain(uri, {"a.txt": b"x"}, False)
    with pytest.raises(storage.OutputExistsError, match="--overwrite"):
        _publish_plain(uri, {"b.txt": b"y"}, False)
    s3.client().put_object(
        Bucket=s3.bucket, Key="runs/r4/out/.odp-pending", Body=b'{"files": {"c.txt": 1}}'
    )
    s3.client().put_object(Bucket=s3.bucket, Key="runs/r4/out/c.txt", Body=b"z")
    _publish_plain(uri, {"b.txt": b"y"}, True)
    assert s3.keys("runs/r4/out/") == ["runs/r4/out/.odp-complete", "runs/r4/out/b.txt"]


def _publish_plain(uri: str, files: dict[str, bytes], overwrite: bool) -> None:
    with storage.atomic_dir(uri, overwrite=overwrite) as tmp:
        for rel, data in files.items():
            (tmp / rel).write_bytes(data)
