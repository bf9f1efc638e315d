"""RecordIO bytes: the image record header and framing, against MXNet."""

from __future__ import annotations

from pathlib import Path

from recordio_helpers import pack_label, pack_record, write_rec

from pipeline_lib.recordio.format import (
    MAGIC_BYTES,
    frame_pieces,
    frame_record,
    parse_record,
    unpack_record,
)
from pipeline_lib.recordio.reader import idx_path_for


def test_pack_record_matches_mxnet_pack():
    import mxnet as mx

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
    import mxnet as mx

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
    write_rec(ours, payloads)
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


def test_frame_pieces_equals_frame_record_with_magic_anywhere():
    heads = [b"H" * 24, b"H" * 8 + MAGIC_BYTES + b"H" * 12]
    images = [b"abc", b"abcd" + MAGIC_BYTES + b"x", MAGIC_BYTES, b"ab" + MAGIC_BYTES + b"cd", b""]
    for head in heads:
        for img in images:
            joined = b"".join(bytes(p) for p in frame_pieces([head, img]))
            assert joined == b"".join(bytes(p) for p in frame_record(head + img))
            assert parse_record(joined)[0] == head + img
