"""Image header inspection."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from recordio_helpers import png_bytes

from pipeline_lib.images import image_info


def test_image_info_reads_headers_only():
    assert image_info(png_bytes(8, 6)) == (8, 6, 3, ".png")
    buf = io.BytesIO()
    Image.new("L", (5, 7)).save(buf, format="JPEG")
    assert image_info(buf.getvalue()) == (5, 7, 1, ".jpg")
    buf = io.BytesIO()
    Image.new("RGB", (9, 4)).save(buf, format="BMP")
    assert image_info(buf.getvalue())[:2] == (9, 4)
    with pytest.raises(ValueError, match="not a readable image"):
        image_info(b"garbage")
