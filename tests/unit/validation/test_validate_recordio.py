"""RecordIO validation: foreign files, MXNet-written files, and every framing/label defect."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import mxnet.recordio as mx_recordio
import numpy as np
import pytest
from PIL import Image

from pipeline_lib.validation import ValidationOptions, validate
from pipeline_lib.validation.recordio import MAGIC_BYTES, read_record, scan, unpack

FAST = ValidationOptions(great_expectations=False, workers=1)


def _jpeg(w=64, h=48, mode="RGB", seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    im = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).convert(mode)
    buf = io.BytesIO()
    im.save(buf, format="JPEG")
    return buf.getvalue()


def _write(prefix: Path, records: list[tuple[list[float], bytes]]) -> Path:
    rec = mx_recordio.MXIndexedRecordIO(str(prefix) + ".idx", str(prefix) + ".rec", "w")
    for i, (label, img) in enumerate(records):
        header = mx_recordio.IRHeader(0, np.array(label, dtype=np.float32), i, 0)
        rec.write_idx(i, mx_recordio.pack(header, img))
    rec.close()
    return Path(str(prefix) + ".rec")


def _good(n=4, header=(2, 5), extra=()) -> list[tuple[list[float], bytes]]:
    out = []
    for i in range(n):
        obj = [i % 2, 0.1, 0.2, 0.5, 0.6, *extra]
        out.append(([*header, *obj], _jpeg(seed=i)))
    return out


def test_foreign_gluoncv_recordio_reads_correctly(shared_datasets):
    rec = shared_datasets / "foreign_recordio" / "gluoncv_dog_val" / "val.rec"
    report = validate(str(rec), ValidationOptions(workers=1))  # with GX
    assert report.ok, report.human_summary()
    assert report.images == {"val": 4} and report.boxes == {"val": 12}
    assert set(report.class_counts) == {0, 1, 2}
    assert {f.rule for f in report.findings} == {"image.duplicate"}  # 4 x the same dog.jpg
    findings: list = []
    spans = list(scan(rec, findings))
    with open(rec, "rb") as fh:
        flag, labels, _, img = unpack(read_record(fh, spans[0]))
    assert labels[:4] == [4, 5, 768, 576]
    boxes = np.array(labels[4:]).reshape(-1, 5)
    pixels = np.round(boxes[:, 1:] * [768, 576, 768, 576])
    assert pixels.tolist() == [[130, 220, 320, 530], [115, 120, 580, 420], [480, 80, 700, 170]]
    assert boxes[:, 0].tolist() == [0, 1, 2]
    assert Image.open(io.BytesIO(img)).size == (768, 576)


@pytest.mark.parametrize(
    "header,extra", [((2, 5), ()), ((4, 5, 64, 48), ()), ((2, 6), (1,)), ((3, 7, 9), (0, 0))]
)
def test_mxnet_written_records_are_clean(tmp_path, header, extra):
    rec = _write(tmp_path / "data", _good(header=header, extra=extra))
    report = validate(str(rec), FAST)
    assert report.ok and report.findings == [], report.human_summary()
    assert report.boxes == {"data": 4}


def test_split_records_are_reassembled(tmp_path):
    img = _jpeg()
    img += b"\x00" * (-len(img) % 4) + MAGIC_BYTES + b"tail"  # a magic inside the payload
    rec = _write(tmp_path / "split", [([2, 5, 0, 0.1, 0.1, 0.9, 0.9], img)] * 2)
    findings: list = []
    spans = list(scan(rec, findings))
    assert findings == [] and len(spans) == 2 and len(spans[0].parts) == 2
    reader = mx_recordio.MXRecordIO(str(rec), "r")
    expected = reader.read()
    reader.close()
    with open(rec, "rb") as fh:
        assert read_record(fh, spans[0]) == expected
    report = validate(str(rec), FAST)
    assert [f.rule for f in report.errors] == []


def test_bad_magic_is_reported_and_later_records_still_read(tmp_path):
    rec = _write(tmp_path / "d", _good(n=5))
    findings: list = []
    spans = list(scan(rec, findings))
    data = bytearray(rec.read_bytes())
    data[spans[2].offset : spans[2].offset + 4] = b"XXXX"
    rec.write_bytes(bytes(data))
    report = validate(str(rec), FAST)
    rules = [f.rule for f in report.errors]
    assert "recordio.magic" in rules
    assert "recordio.index" in rules  # the .idx still points at the broken record
    assert report.images["d"] == 4


def test_truncated_rec(tmp_path):
    rec = _write(tmp_path / "d", _good(n=3))
    rec.write_bytes(rec.read_bytes()[:-100])
    rules = {f.rule for f in validate(str(rec), FAST).errors}
    assert "recordio.header" in rules


@pytest.mark.parametrize(
    "label,rule",
    [
        ([2, 4, 0, 0.1, 0.1, 0.5], "recordio.label"),  # object width < 5
        ([2, 5, 0, 0.1, 0.1, 0.5], "recordio.label"),  # not enough label packed
        ([1.5, 5, 0, 0.1, 0.1, 0.5, 0.5], "recordio.label"),  # header width not integral
        ([2, 5, 0, 0.5, 0.1, 0.2, 0.5], "box.non_positive"),  # xmax < xmin
        ([2, 5, 0, 0.1, 0.1, 1.5, 0.5], "box.out_of_bounds"),
        ([2, 5, 0, 0.1, float("nan"), 0.5, 0.5], "box.non_finite"),
        ([2, 5, 0.5, 0.1, 0.1, 0.5, 0.5], "recordio.label"),  # class id not integral
        ([2, 5], "image.empty"),
        ([4, 5, 100, 100, 0, 0.1, 0.1, 0.5, 0.5], "image.size_mismatch"),
    ],
)
def test_label_defects(tmp_path, label, rule):
    records = _good(n=2)
    records.append((label, _jpeg()))
    rec = _write(tmp_path / "d", records)
    report = validate(str(rec), FAST)
    hits = [f for f in report.errors if f.rule == rule]
    assert hits, report.human_summary()
    assert hits[0].record.startswith("record 2")


def test_padding_rows_are_ignored(tmp_path):
    rec = _write(tmp_path / "d", [([2, 5, 0, 0.1, 0.1, 0.5, 0.5, -1, -1, -1, -1, -1], _jpeg())])
    report = validate(str(rec), FAST)
    assert report.ok and report.boxes == {"d": 1}


def test_grayscale_image_in_record(tmp_path):
    rec = _write(tmp_path / "d", [([2, 5, 0, 0.1, 0.1, 0.5, 0.5], _jpeg(mode="L"))])
    assert [f.rule for f in validate(str(rec), FAST).errors] == ["image.channels"]


def test_missing_and_wrong_index(tmp_path):
    rec = _write(tmp_path / "d", _good(n=3))
    idx = rec.with_suffix(".idx")
    lines = idx.read_text().splitlines()
    idx.write_text("\n".join([*lines[:-1], "2\t5"]) + "\n")
    assert "recordio.index" in {f.rule for f in validate(str(rec), FAST).errors}
    idx.unlink()
    report = validate(str(rec), FAST)
    assert report.ok and [f.rule for f in report.findings] == ["recordio.no_index"]


def test_channel_folder_with_rec_files(tmp_path):
    for channel, cls in (("train", 0), ("validation", 1)):
        (tmp_path / channel).mkdir()
        _write(tmp_path / channel / "data", [([2, 5, cls, 0.1, 0.1, 0.5, 0.5], _jpeg(seed=cls))])
    report = validate(str(tmp_path), FAST)
    assert report.format == "recordio"
    assert report.images == {"train": 1, "validation": 1}
    assert [f.rule for f in report.findings] == ["class.validation_only"]


def test_summary_json_label_width(tmp_path):
    rec = _write(tmp_path / "d", _good(n=2))
    summary = validate(str(rec), FAST).summary_dict()
    assert json.loads(json.dumps(summary))["label_width"] == 7
    assert struct.calcsize("IfQQ") == 24


def test_a_label_header_announcing_more_floats_than_the_record_holds(tmp_path):
    """Issue 27: the flag (label float count) is checked against the record before the label
    is unpacked by it: a finding naming the record, not 'unpack requires a buffer'."""
    payload = struct.pack("<IfQQ", 1_000_000, 0.0, 0, 0) + b"\0" * 64
    path = tmp_path / "lying.rec"
    path.write_bytes(MAGIC_BYTES + struct.pack("<I", len(payload)) + payload)
    report = validate(str(path), FAST)
    (f,) = [f for f in report.findings if f.rule == "recordio.label"]
    assert "1000000 label floats" in f.message and "record 0" in f.message
