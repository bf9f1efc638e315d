"""RecordIO writing/reading: labels, framing, conversion, bad input, caching key."""

from __future__ import annotations

import filecmp
import io
import json
import multiprocessing
import pickle
import shutil
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from pipeline_lib import recordio_pack
from pipeline_lib.annotations import iter_channel, read_annotation
from pipeline_lib.recordio import (
    MAGIC_BYTES,
    ConversionError,
    RecordIODetection,
    RecordIOError,
    RecordWriter,
    convert_to_recordio,
    dataset_content_hash,
    format_index,
    frame_pieces,
    frame_record,
    idx_path_for,
    image_info,
    iter_records,
    pack_label,
    pack_record,
    parse_record,
    pixel_value,
    read_index,
    read_lst,
    rebuild_index,
    recordio_to_dataset,
    unpack_label,
    unpack_record,
)
from pipeline_lib.synthetic import SynthConfig, generate

# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "data"
    generate(root, SynthConfig(images=20, classes=3, seed=7, max_objects=4))
    return root


@pytest.fixture(scope="module")
def converted(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("rec") / "ds"
    result = convert_to_recordio(dataset, out, workers=1, progress=False)
    return out, result


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _max_objects(root: Path) -> int:
    return max(
        len(ann.boxes) for ch in ("train", "validation") for _, ann in iter_channel(root, ch)
    )


def _write_rec(path: Path, payloads: list[bytes]) -> None:
    with open(path, "wb") as f:
        w = RecordWriter(f)
        offsets = [w.write(p) for p in payloads]
    idx_path_for(path)
    Path(idx_path_for(path)).write_text(format_index(enumerate(offsets)))


# ------------------------------------------------------------------ labels


def test_pack_label_layout_and_roundtrip():
    objs = [[0, 0.1, 0.2, 0.3, 0.4], [2, 0.5, 0.5, 1.0, 0.9]]
    label = pack_label(objs)
    assert label.dtype == np.float32
    assert label[:2].tolist() == [2, 5] and label.size == 12
    parsed = unpack_label(label)
    assert parsed.header_width == 2 and parsed.object_width == 5
    np.testing.assert_allclose(parsed.objects, np.array(objs, np.float32))
    px = parsed.boxes(width=200, height=100)
    np.testing.assert_allclose(px[0], [20, 20, 60, 40, 0], rtol=1e-6)


def test_unpack_label_wide_header_and_wide_objects():
    # header [4, 6, W, H]; objects carry a 6th value (a difficult flag)
    raw = [4, 6, 768, 576, 1, 0.1, 0.2, 0.3, 0.4, 1, 0, 0.5, 0.6, 0.7, 0.8, 0]
    parsed = unpack_label(raw)
    assert parsed.header_width == 4 and parsed.object_width == 6
    assert parsed.header.tolist() == [4, 6, 768, 576]
    assert parsed.objects.shape == (2, 6)
    np.testing.assert_allclose(
        parsed.boxes(), [[0.1, 0.2, 0.3, 0.4, 1], [0.5, 0.6, 0.7, 0.8, 0]], rtol=1e-6
    )


def test_unpack_label_drops_padding_rows():
    raw = [2, 5, 1, 0.1, 0.1, 0.2, 0.2, -1, -1, -1, -1, -1]
    assert unpack_label(raw).objects.shape == (1, 5)


def test_unpack_label_errors_are_specific():
    with pytest.raises(RecordIOError, match="disagrees with its header"):
        unpack_label([2, 5, 0, 0.1, 0.1, 0.2], where="rec: record 3")
    with pytest.raises(RecordIOError, match=r"record 3: object 0 .* outside \[0, 1\]"):
        unpack_label([2, 5, 0, 0.1, 0.1, 1.2, 0.5], where="rec: record 3")
    with pytest.raises(RecordIOError, match="pixel coordinates"):
        unpack_label([2, 5, 0, 10, 10, 120, 50])
    with pytest.raises(RecordIOError, match="bad label header"):
        unpack_label([1, 5, 0, 0.1, 0.1, 0.2, 0.2])
    with pytest.raises(RecordIOError, match="not a detection label"):
        unpack_label([3.0])
    with pytest.raises(RecordIOError, match="positive width"):
        unpack_label([2, 5, 0, 0.4, 0.1, 0.2, 0.2])
    # float32 noise just above 1 is clipped, not rejected
    assert unpack_label([2, 5, 0, 0.5, 0.5, 1.000001, 1.0]).objects[0, 3] == 1.0


def test_pixel_value_is_exact_inverse():
    rng = np.random.default_rng(0)
    for _ in range(2000):
        size = int(rng.integers(1, 5000))
        px = (
            float(rng.integers(0, size + 1))
            if rng.random() < 0.7
            else round(rng.random() * size, 2)
        )
        norm = np.float32(px / size)
        back = pixel_value(norm, size)
        assert np.float32(back / size) == norm
        assert back == px


# ------------------------------------------------------------------ framing vs MXNet


def test_pack_record_matches_mxnet_pack():
    mx = pytest.importorskip("mxnet")
    label = pack_label([[1, 0.1, 0.2, 0.3, 0.4]], header_extra=[640, 480])
    ours = pack_record(label, b"imagebytes", id=42)
    theirs = mx.recordio.pack(mx.recordio.IRHeader(0, label, 42, 0), b"imagebytes")
    assert ours == theirs
    header, payload = unpack_record(ours)
    assert payload == b"imagebytes" and header.id == 42 and header.flag == label.size
    assert pack_record(3.0, b"x", id=1) == mx.recordio.pack(
        mx.recordio.IRHeader(0, 3.0, 1, 0), b"x"
    )


def test_framing_splits_on_magic_like_dmlc(tmp_path):
    mx = pytest.importorskip("mxnet")
    payloads = [
        b"",
        b"abc",
        MAGIC_BYTES + b"tail",  # magic at 0
        b"head" + MAGIC_BYTES + b"xy" + MAGIC_BYTES + MAGIC_BYTES + b"end!z",  # aligned, twice
        b"ab" + MAGIC_BYTES + b"cdef",  # unaligned magic: not split
        b"abcd" + MAGIC_BYTES,  # magic at the very end
        bytes(range(256)) * 7,
    ]
    ours = tmp_path / "ours.rec"
    _write_rec(ours, payloads)
    w = mx.recordio.MXIndexedRecordIO(str(tmp_path / "mx.idx"), str(tmp_path / "mx.rec"), "w")
    for i, p in enumerate(payloads):
        w.write_idx(i, p)
    w.close()
    assert ours.read_bytes() == (tmp_path / "mx.rec").read_bytes()
    assert Path(idx_path_for(ours)).read_text() == (tmp_path / "mx.idx").read_text()
    buf = ours.read_bytes()
    pos = 0
    for p in payloads:
        data, pos = parse_record(buf, pos)
        assert data == p
    assert pos == len(buf)
    r = mx.recordio.MXRecordIO(str(ours), "r")
    assert [r.read() for _ in payloads] == payloads


def test_frame_record_pieces_are_aligned():
    for n in range(0, 9):
        total = sum(len(p) for p in frame_record(b"x" * n))
        assert total % 4 == 0 and total == 8 + n + (-n % 4)


# ------------------------------------------------------------------ conversion


def test_convert_both_channels(converted, dataset):
    out, result = converted
    folder = out.parent
    assert _files(folder) == sorted(
        f"ds_{ch}.{ext}" for ch in ("train", "validation") for ext in ("rec", "idx", "lst")
    )
    assert result.files == [
        str(folder / f"ds_{ch}.{ext}")
        for ch in ("train", "validation")
        for ext in ("rec", "idx", "lst")
    ]
    assert result.label_width == 2 + 5 * _max_objects(dataset)
    assert result.channels["train"].images == 16 and result.channels["validation"].images == 4
    assert result.class_ids == [0, 1, 2]
    n_objects = sum(
        len(a.boxes) for ch in ("train", "validation") for _, a in iter_channel(dataset, ch)
    )
    assert sum(c.objects for c in result.channels.values()) == n_objects


def test_convert_one_channel_writes_exactly_three_files(dataset, tmp_path):
    result = convert_to_recordio(dataset, tmp_path / "val", channel="validation", progress=False)
    assert _files(tmp_path) == ["val.idx", "val.lst", "val.rec"]
    # label_width still covers both channels, so train and validation agree
    assert result.label_width == 2 + 5 * _max_objects(dataset)


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
    for name in _files(tmp_path / "a"):
        assert filecmp.cmp(tmp_path / "a" / name, tmp_path / "b" / name, shallow=False), name


def test_mxnet_writer_produces_the_same_bytes(converted, dataset, tmp_path):
    mx = pytest.importorskip("mxnet")
    out, _ = converted
    w = mx.recordio.MXIndexedRecordIO(str(tmp_path / "m.idx"), str(tmp_path / "m.rec"), "w")
    for e in read_lst(f"{out}_train.lst"):
        img = (dataset / "train" / e.path).read_bytes()
        w.write_idx(e.index, mx.recordio.pack(mx.recordio.IRHeader(0, e.label, e.index, 0), img))
    w.close()
    assert (tmp_path / "m.rec").read_bytes() == Path(f"{out}_train.rec").read_bytes()
    assert (tmp_path / "m.idx").read_text() == Path(f"{out}_train.idx").read_text()


def test_mxnet_indexed_reader_and_unpack_img(converted):
    mx = pytest.importorskip("mxnet")
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
    monkeypatch.setattr(recordio_pack, "PROGRESS_AFTER_SECONDS", 0.0)
    convert_to_recordio(dataset, tmp_path / "p", channel="validation", progress=True)
    captured = capsys.readouterr()
    assert "convert recordio" in captured.err and "4/4" in captured.err
    assert captured.out == ""


def test_cli_convert_prints_label_width(dataset, tmp_path, capsys):
    from pipeline_lib.cli import main

    assert main(["convert", "recordio", str(dataset), str(tmp_path / "c"), "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert f"label_width={2 + 5 * _max_objects(dataset)}" in out
    assert str(tmp_path / "c_train.rec") in out


# ------------------------------------------------------------------ reading: index, pickling


def test_missing_idx_is_rebuilt(converted, tmp_path):
    out, _ = converted
    rec = tmp_path / "t.rec"
    shutil.copy(f"{out}_train.rec", rec)
    ds = RecordIODetection(rec)
    assert not (tmp_path / "t.idx").exists()
    assert list(zip(ds.keys.tolist(), ds.offsets.tolist(), strict=True)) == read_index(
        f"{out}_train.idx"
    )
    RecordIODetection(rec, save_index=True)
    assert (tmp_path / "t.idx").read_text() == Path(f"{out}_train.idx").read_text()
    assert rebuild_index(rec) == read_index(f"{out}_train.idx")


def _labels_in_child(ds: RecordIODetection, i: int) -> list:
    return ds[i][1].tolist()


def test_pickles_and_reads_in_forked_workers(converted):
    out, _ = converted
    ds = RecordIODetection(f"{out}_train.rec")
    expected = [ds[i][1].tolist() for i in range(len(ds))]  # parent opens its handle first
    clone = pickle.loads(pickle.dumps(ds))
    assert clone[3][1].tolist() == expected[3]
    with multiprocessing.get_context("fork").Pool(2) as pool:
        got = pool.starmap(_labels_in_child, [(ds, i) for i in range(len(ds))])
    assert got == expected


def test_negative_and_out_of_range_index(converted):
    out, _ = converted
    ds = RecordIODetection(f"{out}_validation.rec")
    assert ds.record(-1).ordinal == len(ds) - 1
    with pytest.raises(IndexError):
        ds[len(ds)]


# ------------------------------------------------------------------ RecordIO -> image+JSON


def test_rec_to_json_round_trip_is_exact(converted, dataset, tmp_path):
    out, _ = converted
    back = tmp_path / "back"
    names = {0: "circle", 1: "square", 2: "triangle"}
    assert (
        recordio_to_dataset(f"{out}_train.rec", back, "train", class_names=names, progress=False)
        == 16
    )
    for img_path, ann in iter_channel(dataset, "train"):
        assert (back / "train" / ann.file).read_bytes() == img_path.read_bytes()
        again = read_annotation(back / "train_annotation" / f"{img_path.stem}.json")
        assert again == ann  # same ints, same ids, same categories
    # and converting the round-tripped data gives the very same bytes
    convert_to_recordio(back, tmp_path / "again", channel="train", progress=False)
    assert (tmp_path / "again.rec").read_bytes() == Path(f"{out}_train.rec").read_bytes()


# ------------------------------------------------------------------ bad input


def test_truncated_rec_names_the_record(converted, tmp_path):
    out, _ = converted
    rec = tmp_path / "cut.rec"
    data = Path(f"{out}_validation.rec").read_bytes()
    rec.write_bytes(data[: len(data) - 1000])
    shutil.copy(f"{out}_validation.idx", tmp_path / "cut.idx")
    ds = RecordIODetection(rec)
    ds[0]
    with pytest.raises(RecordIOError, match=r"record 3 .*truncated"):
        ds[3]
    with pytest.raises(RecordIOError, match=r"record 3.*truncated"):
        list(iter_records(rec))
    (tmp_path / "cut.idx").unlink()
    with pytest.raises(RecordIOError, match=r"record 3.*truncated"):
        RecordIODetection(rec)
    with pytest.raises(RecordIOError, match="truncated"):
        recordio_to_dataset(rec, tmp_path / "never", progress=False)
    assert not (tmp_path / "never").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".never")]


def test_wrong_magic(tmp_path):
    bad = tmp_path / "bad.rec"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    with pytest.raises(RecordIOError, match=r"record 0.*bad magic 0x474e5089"):
        RecordIODetection(bad)
    (tmp_path / "bad.idx").write_text("0\t0\n")
    with pytest.raises(RecordIOError, match=r"record 0 .*bad magic"):
        RecordIODetection(bad)[0]


def test_label_width_disagreeing_with_header(tmp_path):
    good = pack_record(pack_label([[0, 0.1, 0.1, 0.5, 0.5]]), _png_bytes(), id=0)
    bad = pack_record(np.array([2, 5, 0, 0.1, 0.1, 0.5], np.float32), _png_bytes(), id=1)
    _write_rec(tmp_path / "w.rec", [good, bad])
    ds = RecordIODetection(tmp_path / "w.rec")
    assert ds[0][1].shape == (1, 5)
    with pytest.raises(RecordIOError, match=r"record 1 \(key 1.*disagrees with its header"):
        ds[1]
    with pytest.raises(RecordIOError, match="record 1"):
        _ = ds.class_ids


def test_boxes_outside_unit_square_in_rec(tmp_path):
    bad = pack_record(pack_label([[0, 0.1, 0.1, 1.5, 0.5]]), _png_bytes(), id=0)
    _write_rec(tmp_path / "o.rec", [bad])
    with pytest.raises(RecordIOError, match=r"record 0 .*outside \[0, 1\]"):
        RecordIODetection(tmp_path / "o.rec")[0]


def test_stale_idx_offset_past_end(converted, tmp_path):
    out, _ = converted
    shutil.copy(f"{out}_validation.rec", tmp_path / "s.rec")
    (tmp_path / "s.idx").write_text("0\t0\n1\t99999999\n")
    with pytest.raises(RecordIOError, match=r"record 1 .*outside"):
        RecordIODetection(tmp_path / "s.rec")


def test_bad_idx_and_lst_lines(tmp_path):
    (tmp_path / "x.idx").write_text("0\t0\nnope\n")
    with pytest.raises(RecordIOError, match="line 2"):
        read_index(tmp_path / "x.idx")
    (tmp_path / "x.lst").write_text("0\t2\t5\ta.jpg\n1\tx\tb.jpg\n")
    with pytest.raises(RecordIOError, match="line 2"):
        list(read_lst(tmp_path / "x.lst"))


def _png_bytes(w: int = 8, h: int = 6) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (10, 20, 30)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("workers", [1, 2])
def test_bad_dataset_leaves_nothing_behind(dataset, tmp_path, workers):
    data = _copy(dataset, tmp_path / "data")
    json_path = sorted((data / "validation_annotation").glob("*.json"))[-1]
    obj = json.loads(json_path.read_text())
    obj["annotations"][0]["left"] = obj["image_size"][0]["width"] - 2
    json_path.write_text(json.dumps(obj))
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("pre-existing")
    with pytest.raises(ConversionError, match=rf"{json_path.name}.*outside the"):
        convert_to_recordio(data, out / "ds", workers=workers, chunk_size=2, progress=False)
    assert _files(out) == ["keep.txt"]
    # with a tolerance the overhang is clipped instead
    res = convert_to_recordio(data, out / "ds", box_tolerance=1000, workers=workers, progress=False)
    assert res.channels["validation"].images == 4


def test_failed_conversion_keeps_previous_outputs(dataset, tmp_path):
    data = _copy(dataset, tmp_path / "data")
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
    data = _copy(dataset, tmp_path / "data")
    json_path = sorted((data / "validation_annotation").glob("*.json"))[0]
    obj = json.loads(json_path.read_text())
    obj["image_size"][0]["width"] += 1
    json_path.write_text(json.dumps(obj))
    kwargs = dict(channel="validation", workers=workers, chunk_size=1, progress=False)
    with pytest.raises(ConversionError, match="does not match the image"):
        convert_to_recordio(data, tmp_path / "o", **kwargs)
    obj["image_size"][0]["width"] -= 1
    obj["file"] = "missing.jpg"
    json_path.write_text(json.dumps(obj))
    with pytest.raises(ConversionError, match="image not found"):
        convert_to_recordio(data, tmp_path / "o", **kwargs)
    assert _files(tmp_path) == ["data"]


def test_empty_images_are_kept_and_counted(dataset, tmp_path):
    data = _copy(dataset, tmp_path / "data")
    json_path = sorted((data / "validation_annotation").glob("*.json"))[0]
    obj = json.loads(json_path.read_text())
    obj["annotations"] = []
    json_path.write_text(json.dumps(obj))
    res = convert_to_recordio(data, tmp_path / "e", channel="validation", progress=False)
    assert res.channels["validation"].empty_images == 1
    assert RecordIODetection(tmp_path / "e.rec")[0][1].shape == (0, 5)


# ------------------------------------------------------------------ image headers, cache key


def test_image_info_reads_headers_only():
    assert image_info(_png_bytes(8, 6)) == (8, 6, 3, ".png")
    buf = io.BytesIO()
    Image.new("L", (5, 7)).save(buf, format="JPEG")
    assert image_info(buf.getvalue()) == (5, 7, 1, ".jpg")
    buf = io.BytesIO()
    Image.new("RGB", (9, 4)).save(buf, format="BMP")
    assert image_info(buf.getvalue())[:2] == (9, 4)
    with pytest.raises(ValueError, match="not a readable image"):
        image_info(b"garbage")


def test_dataset_content_hash(dataset, tmp_path):
    h = dataset_content_hash(dataset, {"resize": None})
    copy = _copy(dataset, tmp_path / "copy")
    assert dataset_content_hash(copy, {"resize": None}) == h  # location and mtime do not count
    assert dataset_content_hash(copy, {"resize": 300}) != h
    img = sorted((copy / "train").iterdir())[0]
    data = bytearray(img.read_bytes())
    data[-3] ^= 1
    img.write_bytes(bytes(data))
    h2 = dataset_content_hash(copy, {"resize": None})
    assert h2 != h and len(h2) == 64
    (copy / "notes.txt").write_text("not part of the dataset")
    assert dataset_content_hash(copy, {"resize": None}) == h2


def test_iter_records_reads_magic_split_records(tmp_path):
    payload = pack_record(pack_label([[0, 0.1, 0.1, 0.5, 0.5]]), b"abcd" + MAGIC_BYTES * 3 + b"xyz")
    assert len(payload) % 4 == 3
    _write_rec(tmp_path / "m.rec", [payload, payload])
    recs = list(iter_records(tmp_path / "m.rec"))
    assert [r.image for r in recs] == [b"abcd" + MAGIC_BYTES * 3 + b"xyz"] * 2
    ds = RecordIODetection(tmp_path / "m.rec")
    assert ds.record(1).image == recs[1].image
    assert ds.label(1).objects.shape == (1, 5)
    assert struct.unpack("<I", (tmp_path / "m.rec").read_bytes()[4:8])[0] >> 29 == 1


def test_frame_pieces_equals_frame_record_with_magic_anywhere():
    heads = [b"H" * 24, b"H" * 8 + MAGIC_BYTES + b"H" * 12]
    images = [b"abc", b"abcd" + MAGIC_BYTES + b"x", MAGIC_BYTES, b"ab" + MAGIC_BYTES + b"cd", b""]
    for head in heads:
        for img in images:
            joined = b"".join(bytes(p) for p in frame_pieces([head, img]))
            assert joined == b"".join(bytes(p) for p in frame_record(head + img))
            assert parse_record(joined)[0] == head + img


def test_convert_image_containing_the_magic(dataset, tmp_path):
    """A JPEG with trailing bytes holding the magic at an aligned offset: split like dmlc."""
    mx = pytest.importorskip("mxnet")
    data = _copy(dataset, tmp_path / "data")
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

    real = recordio_pack._prepare_chunk

    def dying(task):
        if task.start >= 4:
            os._exit(3)  # a worker killed mid-run (OOM killer, segfault...)
        return real(task)

    monkeypatch.setattr(recordio_pack, "_prepare_chunk", dying)
    out = tmp_path / "out"
    with pytest.raises(ConversionError, match=r"worker \d died \(exit code 3\)"):
        convert_to_recordio(dataset, out / "x", workers=2, chunk_size=2, progress=False)
    assert not out.exists() or _files(out) == []


def test_resize_keeps_the_stored_pixel_grid_of_exif_rotated_jpegs(dataset, tmp_path):
    """Boxes refer to the stored grid (what image_size says); re-encoding must not rotate."""
    data = _copy(dataset, tmp_path / "data")
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
