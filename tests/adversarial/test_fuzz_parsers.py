"""Hypothesis fuzzing of the parsers at the trust boundary: annotation JSON, detection JSON,
manifest lines, RecordIO framing and labels, hyperparameters.

Whatever the bytes or JSON, each parser either returns or raises its documented error type
(a ``ValueError`` subclass naming the input); never another exception, never a hang (each
test has a wall-clock timeout). Example counts are bounded so the file runs in seconds.
"""

from __future__ import annotations

import io
import json
import math
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pipeline_lib.annotations import AnnotationError, ImageAnnotation, read_annotation
from pipeline_lib.evaluation.files import read_detection_file
from pipeline_lib.hyperparameters import HyperparameterError, parse
from pipeline_lib.manifest import ManifestError, parse_line
from pipeline_lib.recordio.errors import RecordIOError
from pipeline_lib.recordio.format import (
    IR_FORMAT,
    MAGIC,
    pack_header,
    parse_record,
    scan_stream,
    unpack_record,
)
from pipeline_lib.recordio.labels import unpack_label

FUZZ = settings(
    max_examples=150,
    deadline=None,  # shared CPUs: the timeout below catches hangs, not slow examples
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,
    derandomize=True,  # the same examples on every run: CI is reproducible
)
pytestmark = pytest.mark.timeout(120)


# JSON values with the numbers hostile files carry: huge integers, NaN, infinities.
numbers = st.one_of(
    st.integers(),
    st.integers(min_value=10**300, max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=20))
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=12), inner, max_size=6)
    ),
    max_leaves=30,
)
box_keys = st.sampled_from(["class_id", "left", "top", "width", "height", "score"])
boxes = st.dictionaries(box_keys, st.one_of(numbers, scalars), max_size=6)
records = st.fixed_dictionaries(
    {
        "file": st.one_of(st.text(max_size=30), scalars),
        "image_size": st.one_of(
            st.lists(st.dictionaries(st.sampled_from(["width", "height", "depth"]), numbers)),
            json_values,
        ),
        "annotations": st.one_of(st.lists(boxes, max_size=4), json_values),
    },
    optional={"categories": json_values},
)
DEEP = "[" * 100_000 + "]" * 100_000


def _dumps(value: object) -> str:
    return json.dumps(value, allow_nan=True)


@FUZZ
@given(st.one_of(records, json_values))
def test_annotation_records_raise_only_annotation_errors(value: object) -> None:
    try:
        ann = ImageAnnotation.from_json(value, "fuzz.json")
    except AnnotationError as exc:
        assert "fuzz.json" in str(exc)
        return
    assert ann.width >= 1 and ann.height >= 1
    for box in ann.boxes:
        assert box.class_id >= 0
        assert all(math.isfinite(v) for v in (box.left, box.top, box.width, box.height))


def test_an_integer_too_large_for_a_float_is_an_annotation_error() -> None:
    record = {"file": "a.jpg", "image_size": [{"width": 9, "height": 9}], "annotations": []}
    record["annotations"] = [{"class_id": 0, "left": 10**400, "top": 0, "width": 1, "height": 1}]
    with pytest.raises(AnnotationError):
        ImageAnnotation.from_json(json.loads(_dumps(record)), "big.json")


@FUZZ
@given(st.one_of(st.binary(max_size=400), records.map(lambda r: _dumps(r).encode())))
def test_annotation_and_detection_files_raise_only_annotation_errors(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "fuzz.json")
        path.write_bytes(data)
        for read in (read_annotation, read_detection_file):
            try:
                read(path)
            except AnnotationError as exc:
                assert "fuzz.json" in str(exc)


def test_deeply_nested_annotation_json_is_an_annotation_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text('{"file": "a.jpg", "image_size": ' + DEEP + "}")
    with pytest.raises(AnnotationError, match="deep.json"):
        read_annotation(path)


@FUZZ
@given(
    st.one_of(
        st.text(max_size=300),
        st.fixed_dictionaries(
            {"source-ref": scalars, "bounding-box": st.one_of(records, json_values)},
            optional={"bounding-box-metadata": json_values},
        ).map(_dumps),
    )
)
@example('{"source-ref": "a.jpg", "bounding-box": {"annotations": []}}')
def test_manifest_lines_raise_only_manifest_errors(text: str) -> None:
    try:
        line = parse_line(text, 7, "fuzz.jsonl")
    except ManifestError as exc:
        assert "fuzz.jsonl: line 7" in str(exc)
        return
    assert line.source_ref and line.lineno == 7


def test_deeply_nested_manifest_line_is_a_manifest_error() -> None:
    with pytest.raises(ManifestError, match="line 3"):
        parse_line('{"source-ref": "a.jpg", "bounding-box": ' + DEEP + "}", 3, "m.jsonl")


def _framed(payload: bytes, flag: int = 0, length: int | None = None) -> bytes:
    n = len(payload) if length is None else length
    return struct.pack("<II", MAGIC, (flag << 29) | n) + payload + b"\0" * (-len(payload) % 4)


records_bytes = st.one_of(
    st.binary(max_size=300),
    st.builds(_framed, st.binary(max_size=64), st.integers(0, 7), st.none()),
    st.builds(_framed, st.binary(max_size=64), st.integers(0, 7), st.integers(0, (1 << 29) - 1)),
    st.lists(st.builds(_framed, st.binary(max_size=32), st.integers(0, 3)), max_size=5).map(
        b"".join
    ),
)


@FUZZ
@given(records_bytes)
def test_recordio_framing_raises_only_recordio_errors(data: bytes) -> None:
    try:
        for _offset, _record in scan_stream(io.BytesIO(data), "fuzz.rec"):
            pass
    except RecordIOError as exc:
        assert "fuzz.rec" in str(exc)
    try:
        parse_record(data, 0, "fuzz.rec")
    except RecordIOError as exc:
        assert "fuzz.rec" in str(exc)


@FUZZ
@given(
    st.one_of(
        st.binary(max_size=200),
        st.builds(
            lambda flag, rest: struct.pack(IR_FORMAT, flag, 0.0, 1, 0) + rest,
            st.integers(0, (1 << 32) - 1),
            st.binary(max_size=80),
        ),
        st.lists(st.floats(width=32), max_size=20).map(lambda v: pack_header(v) + b"jpeg"),
    )
)
def test_record_headers_and_labels_raise_only_recordio_errors(data: bytes) -> None:
    try:
        header, _payload = unpack_record(data, "fuzz.rec: record 0")
    except RecordIOError:
        return
    if header.flag > 0:
        try:
            unpack_label(header.label, "fuzz.rec: record 0")
        except RecordIOError as exc:
            assert "fuzz.rec: record 0" in str(exc)


@FUZZ
@given(st.lists(st.floats(width=32) | st.sampled_from([2.0, 5.0, -1.0, 0.0, 1.0]), max_size=40))
@example([2.0, 2.305843009213694e18])  # an object width too large to reshape to
def test_detection_labels_raise_only_recordio_errors(values: list[float]) -> None:
    try:
        label = unpack_label(np.array(values, dtype=np.float32), "rec 3")
    except RecordIOError as exc:
        assert "rec 3" in str(exc)
        return
    assert np.isfinite(label.objects[:, :5]).all()
    coords = label.objects[:, 1:5]
    assert ((coords >= 0) & (coords <= 1)).all()


HP_KEYS = ["num_classes", "num_training_samples", "mini_batch_size", "image_shape", "epochs",
           "learning_rate", "lr_scheduler_step", "base_network", "optimizer", "early_stopping",
           "freeze_layer_pattern", "kv_store", "momentum", "label_width", "unknown"]  # fmt: skip


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(HP_KEYS),
        st.one_of(st.text(max_size=12), numbers.map(str), st.sampled_from(["1e9", "nan", "-1"])),
    )
)
def test_hyperparameters_raise_only_hyperparameter_errors(raw: dict[str, str]) -> None:
    try:
        hp = parse({"num_classes": "2", "num_training_samples": "10", **raw})
    except HyperparameterError as exc:
        assert exc.key in raw or exc.key in ("num_classes", "num_training_samples")
        return
    assert hp.mini_batch_size >= 1 and hp.num_classes >= 1
