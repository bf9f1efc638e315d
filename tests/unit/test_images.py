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


def _png_claiming(width: int, height: int) -> bytes:
    """A small, well-formed PNG whose IHDR claims ``width`` x ``height`` RGB pixels (its
    IDAT holds a few rows only: decoding it would still allocate the whole canvas)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = zlib.compress(bytes((1 + 3 * width) * 4))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def test_a_bomb_is_refused_from_its_header_before_decoding():
    import resource

    from pipeline_lib.images import ImageTooLargeError, decode_bgr, decode_rgb

    bomb = _png_claiming(20000, 20000)  # 1.2 GB of RGB pixels in a file of ~ 100 KB
    assert len(bomb) < 200_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for decode in (decode_rgb, decode_bgr):
        with pytest.raises(ImageTooLargeError) as info:
            decode(bomb, "train/bomb.png")
        message = str(info.value)
        assert "\n" not in message
        assert message.startswith("train/bomb.png claims 20000x20000 = 400000000 pixels")
        assert "ODP_MAX_IMAGE_PIXELS" in message
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 100_000  # nothing near the 1.2 GB canvas was allocated


def test_pixel_limit_is_one_setting_shared_with_validation(monkeypatch):
    from pipeline_lib.images import ImageTooLargeError, decode_rgb, max_image_pixels
    from pipeline_lib.validation import ValidationOptions

    small = png_bytes(20, 10)
    assert decode_rgb(small).shape == (10, 20, 3)
    assert ValidationOptions().max_pixels == max_image_pixels() == 89_478_485
    monkeypatch.setenv("ODP_MAX_IMAGE_PIXELS", "199")
    assert ValidationOptions().max_pixels == max_image_pixels() == 199
    with pytest.raises(ImageTooLargeError, match="above the limit of 199"):
        decode_rgb(small, "x.png")
    monkeypatch.setenv("ODP_MAX_IMAGE_PIXELS", "0")
    with pytest.raises(ValueError, match="ODP_MAX_IMAGE_PIXELS='0' is invalid"):
        max_image_pixels()


def test_undecodable_bytes_are_one_clear_error():
    from pipeline_lib.images import ImageDecodeError, decode_bgr, decode_rgb

    assert decode_bgr(b"garbage") is None
    with pytest.raises(ImageDecodeError, match="^x.jpg: image bytes"):
        decode_rgb(b"\xff\xd8\xff garbage", "x.jpg")
