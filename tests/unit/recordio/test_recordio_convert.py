"""image+JSON -> RecordIO: outputs, byte equality with MXNet, workers, bad input."""

from __future__ import annotations

import filecmp
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from recordio_helpers import copy_dataset, file_names, max_objects

from pipeline_lib import progress
from pipeline_lib.annotations import iter_channel
from pipeline_lib.recordio import convert as recordio_convert
from pipeline_lib.recordio.convert import convert_to_recordio
from pipeline_lib.recordio.errors import ConversionError
from pipeline_lib.recordio.format import MAGIC_BYTES
from pipeline_lib.recordio.labels import unpack_label
from pipeline_lib.recordio.reader import RecordIODetection, iter_records, read_lst


def test_convert_both_channels(converted, dataset):
    out, result = converted
    folder = out.parent
    assert file_names(folder) == sorted(
        f"ds_{ch}.{ext}" for ch in ("train", "validation") for ext in ("rec", "idx", "lst")
    )
    assert result.files == [
        str(folder / f"ds_{ch}.{ext}")
        for ch in ("train", "validation")
        for ext in ("rec", "idx", "lst")
    ]
    assert result.label_width == 2 + 5 * max_objects(dataset)
    assert result.channels["train"].images == 16 and result.channels["validation"].images == 4
    assert result.class_ids == [0, 1, 2]
    n_objects = sum(
        len(a.boxes) for ch in ("train", "validation") for _, a in iter_channel(dataset, ch)
    )
    assert sum(c.objects for c in result.channels.values()) == n_objects


def test_convert_one_channel_writes_exactly_three_files(dataset, tmp_path):
    result = convert_to_recordio(dataset, tmp_path / "val", channel="validation", progress=False)
    assert file_names(tmp_path) == ["val.idx", "val.lst", "val.rec"]
    # label_width still covers both channels, so train and validation agree
    assert result.label_width == 2 + 5 * max_objects(dataset)


def test_records_match_annotations(converted, dataset):
    out, _ = converted
    ds = RecordIODetection(f"{out}_train.rec")
    anns = list(iter_channel(dataset, "train"))
    assert len(ds) == len(anns)
    for i, (img_path, ann) in enumerate(anns):
        rec = ds.record(i)
        assert rec.image == img_path.read_bytes()  # bytes pass through unchanged
        np.testing.assert_allclose(
            rec.label.objects, ann.label_array(normalized=True), atol=1e-6, rtol=0
        )
        img, label = ds[i]
        assert img.dtype == np.uint8 and img.shape == (ann.height, ann.width, 3)
        expected_rgb = cv2.cvtColor(cv2.imread(str(img_path)), cv2.COLOR_BGR2RGB)
        assert np.array_equal(img, expected_rgb)
        px = ann.label_array()
        np.testing.assert_allclose(label[:, :4], px[:, 1:], atol=1e-3)
        assert label[:, 4].tolist() == px[:, 0].tolist()
    assert ds.class_ids == (0, 1, 2)


def test_lst_matches_records(converted):
    out, _ = converted
    entries = list(read_lst(f"{out}_validation.lst"))
    records = list(iter_records(f"{out}_validation.rec"))
    assert [e.index for e in entries] == [r.header.id for r in records] == list(range(4))
    for e, r in zip(entries, records, strict=True):
        assert np.array_equal(np.float32(e.label), r.header.label)
        assert e.path.endswith((".jpg", ".png"))


def test_parallel_output_is_identical_to_serial(dataset, tmp_path):
    convert_to_recordio(dataset, tmp_path / "a" / "x", workers=1, progress=False)
    convert_to_recordio(dataset, tmp_path / "b" / "x", workers=2, chunk_size=3, progress=False)
    for name in file_names(tmp_path / "a"):
        assert filecmp.cmp(tmp_path / "a" / name, tmp_path / "b" / name, shallow=False), name


def test_mxnet_writer_produces_the_same_bytes(converted, dataset, tmp_path):
    import mxnet as mx

    out, _ = converted
    w = mx.recordio.MXIndexedRecordIO(str(tmp_path / "m.idx"), str(tmp_path / "m.rec"), "w")
    for e in read_lst(f"{out}_train.lst"):
        img = (dataset / "train" / e.path).read_bytes()
        w.write_idx(e.index, mx.recordio.pack(mx.recordio.IRHeader(0, e.label, e.index, 0), img))
    w.close()
    assert (tmp_path / "m.rec").read_bytes() == Path(f"{out}_train.rec").read_bytes()
    assert (tmp_path / "m.idx").read_text() == Path(f"{out}_train.idx").read_text()


def test_mxnet_indexed_reader_and_unpack_img(converted):
    import mxnet as mx

    out, _ = converted
    ours = RecordIODetection(f"{out}_train.rec")
    r = mx.recordio.MXIndexedRecordIO(f"{out}_train.idx", f"{out}_train.rec", "r")
    assert list(r.keys) == ours.keys.tolist()
    for i, key in enumerate(r.keys):
        header, img = mx.recordio.unpack_img(r.read_idx(key), 1)
        theirs = unpack_label(header.label)
        np.testing.assert_array_equal(theirs.objects, ours.label(i).objects)
        assert img.shape == ours[i][0].shape
    r.close()


def test_resize_reencodes_and_keeps_boxes(dataset, tmp_path):
    convert_to_recordio(
        dataset, tmp_path / "r", channel="validation", resize=64, quality=90, progress=False
    )
    plain = RecordIODetection(tmp_path / "r.rec")
    for i, (_, ann) in enumerate(iter_channel(dataset, "validation")):
        img, _ = plain[i]
        assert min(img.shape[:2]) == 64
        np.testing.assert_allclose(plain.label(i).objects, ann.label_array(True), atol=1e-6)


def test_progress_bar_goes_to_stderr(dataset, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(progress, "PROGRESS_AFTER_SECONDS", 0.0)
    convert_to_recordio(dataset, tmp_path / "p", channel="validation", progress=True)
    captured = capsys.readouterr()
    assert "convert recordio" in captured.err and "4/4" in captured.err
    assert captured.out == ""


def test_cli_convert_prints_label_width(dataset, tmp_path, capsys):
    from pipeline_lib.cli import main

    assert main(["convert", "recordio", str(dataset), str(tmp_path / "c"), "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert f"label_width={2 + 5 * max_objects(dataset)}" in out
    assert str(tmp_path / "c_train.rec") in out


@pytest.mark.parametrize("workers", [1, 2])
def test_bad_dataset_leaves_nothing_behind(dataset, tmp_path, workers):
    data = copy_dataset(dataset, tmp_path / "data")
    json_path = sorted((data / "validation_annotation").glob("*.json"))[-1]
    obj = json.loads(json_path.read_text())
    obj["annotations"][0]["left"] = obj["image_size"][0]["width"] - 2
    json_path.write_text(json.dumps(obj))
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("pre-existing")
    with pytest.raises(ConversionError, match=rf"{json_path.name}.*outside the"):
        convert_to_recordio(data, out / "ds", workers=workers, chunk_size=2, progress=False)
    assert file_names(out) == ["keep.txt"]
    # with a tolerance the overhang is clipped instead
    res = convert_to_recordio(data, out / "ds", box_tolerance=1000, workers=workers, progress=False)
    assert res.channels["validation"].images == 4


def test_failed_conversion_keeps_previous_outputs(dataset, tmp_path):
    data = copy_dataset(dataset, tmp_path / "data")
    out = tmp_path / "out"
    convert_to_recordio(data, out / "ds", progress=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    json_path = sorted((data / "train_annotation").glob("*.json"))[0]
    json_path.write_text("{not json")
    with pytest.raises(ConversionError, match=json_path.name):
        convert_to_recordio(data, out / "ds", progress=False)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.parametrize("workers", [1, 2])
def test_image_size_mismatch_and_missing_image(dataset, tmp_path, workers):
    data = copy_dataset(dataset, tmp_path / "data")
    json_path = sorted((data / "validation_annotation").glob("*.json"))[0]
    obj = json.loads(json_path.read_text())
    obj["image_size"][0]["width"] += 1
    json_path.write_text(json.dumps(obj))
    kwargs = dict(channel="validation", workers=workers, chunk_size=1, progress=False)
    with pytest.raises(ConversionError, match=r"image_size says .* but .*\[I005 image.size_mis"):
        convert_to_recordio(data, tmp_path / "o", **kwargs)
    obj["image_size"][0]["width"] -= 1
    obj["file"] = "missing.jpg"
    json_path.write_text(json.dumps(obj))
    with pytest.raises(ConversionError, match="image not found"):
        convert_to_recordio(data, tmp_path / "o", **kwargs)
    assert file_names(tmp_path) == ["data"]


def test_empty_images_are_kept_and_counted(dataset, tmp_path):
    data = copy_dataset(dataset, tmp_path / "data")
    json_path = sorted((data / "validation_annotation").glob("*.json"))[0]
    obj = json.loads(json_path.read_text())
    obj["annotations"] = []
    json_path.write_text(json.dumps(obj))
    res = convert_to_recordio(data, tmp_path / "e", channel="validation", progress=False)
    assert res.channels["validation"].empty_images == 1
    assert RecordIODetection(tmp_path / "e.rec")[0][1].shape == (0, 5)


def test_convert_image_containing_the_magic(dataset, tmp_path):
    """A JPEG with trailing bytes holding the magic at an aligned offset: split like dmlc."""
    import mxnet as mx

    data = copy_dataset(dataset, tmp_path / "data")
    img_path = sorted((data / "validation").glob("*.jpg"))[0]
    raw = img_path.read_bytes()
    raw += b"\0" * (-len(raw) % 4) + MAGIC_BYTES + b"tail" + MAGIC_BYTES
    img_path.write_bytes(raw)
    convert_to_recordio(
        data, tmp_path / "m", channel="validation", workers=2, chunk_size=1, progress=False
    )
    ds = RecordIODetection(tmp_path / "m.rec")
    i = next(k for k, e in enumerate(read_lst(tmp_path / "m.lst")) if e.path == img_path.name)
    assert ds.record(i).image == raw
    w = mx.recordio.MXIndexedRecordIO(str(tmp_path / "x.idx"), str(tmp_path / "x.rec"), "w")
    for e in read_lst(tmp_path / "m.lst"):
        payload = (data / "validation" / e.path).read_bytes()
        w.write_idx(
            e.index, mx.recordio.pack(mx.recordio.IRHeader(0, e.label, e.index, 0), payload)
        )
    w.close()
    assert (tmp_path / "x.rec").read_bytes() == (tmp_path / "m.rec").read_bytes()


def test_dead_worker_is_an_error_and_leaves_nothing(dataset, tmp_path, monkeypatch):
    import os

    real = recordio_convert._prepare_chunk

    def dying(task):
        if task.start >= 4:
            os._exit(3)  # a worker killed mid-run (OOM killer, segfault...)
        return real(task)

    monkeypatch.setattr(recordio_convert, "_prepare_chunk", dying)
    out = tmp_path / "out"
    with pytest.raises(ConversionError, match=r"worker \d died \(exit code 3\)"):
        convert_to_recordio(dataset, out / "x", workers=2, chunk_size=2, progress=False)
    assert not out.exists() or file_names(out) == []


def test_resize_keeps_the_stored_pixel_grid_of_exif_rotated_jpegs(dataset, tmp_path):
    """Boxes refer to the stored grid (what image_size says); re-encoding must not rotate."""
    data = copy_dataset(dataset, tmp_path / "data")
    img_path = sorted((data / "validation").glob("*.jpg"))[0]
    with Image.open(img_path) as img:
        width, height = img.size
        exif = Image.Exif()
        exif[0x0112] = 6  # orientation: rotate 90 CW to display
        img.save(img_path, format="JPEG", quality=92, exif=exif.tobytes())
    assert width != height
    convert_to_recordio(
        data, tmp_path / "r", channel="validation", resize=64, workers=1, progress=False
    )
    ds = RecordIODetection(tmp_path / "r.rec")
    i = next(k for k, e in enumerate(read_lst(tmp_path / "r.lst")) if e.path == img_path.name)
    h, w = ds[i][0].shape[:2]
    assert (w > h) == (width > height) and min(h, w) == 64
