"""Reading .rec/.idx/.lst: index rebuild, the dataset class, malformed files."""

from __future__ import annotations

import multiprocessing
import pickle
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from recordio_helpers import pack_label, pack_record, png_bytes, write_rec

from pipeline_lib.recordio.errors import RecordIOError
from pipeline_lib.recordio.export import recordio_to_dataset
from pipeline_lib.recordio.format import MAGIC_BYTES
from pipeline_lib.recordio.reader import (
    RecordIODetection,
    iter_records,
    read_index,
    read_lst,
    rebuild_index,
)


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
    clone = pickle.loads(pickle.dumps(ds))  # noqa: S301  round-trips our own object
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
    good = pack_record(pack_label([[0, 0.1, 0.1, 0.5, 0.5]]), png_bytes(), id=0)
    bad = pack_record(np.array([2, 5, 0, 0.1, 0.1, 0.5], np.float32), png_bytes(), id=1)
    write_rec(tmp_path / "w.rec", [good, bad])
    ds = RecordIODetection(tmp_path / "w.rec")
    assert ds[0][1].shape == (1, 5)
    with pytest.raises(RecordIOError, match=r"record 1 \(key 1.*disagrees with its header"):
        ds[1]
    with pytest.raises(RecordIOError, match="record 1"):
        _ = ds.class_ids


def test_boxes_outside_unit_square_in_rec(tmp_path):
    bad = pack_record(pack_label([[0, 0.1, 0.1, 1.5, 0.5]]), png_bytes(), id=0)
    write_rec(tmp_path / "o.rec", [bad])
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


def test_iter_records_reads_magic_split_records(tmp_path):
    payload = pack_record(pack_label([[0, 0.1, 0.1, 0.5, 0.5]]), b"abcd" + MAGIC_BYTES * 3 + b"xyz")
    assert len(payload) % 4 == 3
    write_rec(tmp_path / "m.rec", [payload, payload])
    recs = list(iter_records(tmp_path / "m.rec"))
    assert [r.image for r in recs] == [b"abcd" + MAGIC_BYTES * 3 + b"xyz"] * 2
    ds = RecordIODetection(tmp_path / "m.rec")
    assert ds.record(1).image == recs[1].image
    assert ds.label(1).objects.shape == (1, 5)
    assert struct.unpack("<I", (tmp_path / "m.rec").read_bytes()[4:8])[0] >> 29 == 1
