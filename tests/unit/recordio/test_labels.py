"""Detection labels: layout, any header/object width, padding, specific errors."""

from __future__ import annotations

import numpy as np
import pytest
from recordio_helpers import pack_label

from pipeline_lib.recordio.errors import RecordIOError
from pipeline_lib.recordio.labels import unpack_label


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
