"""pipeline_lib.serving.request and .response: options, image bytes, decoding, layouts."""

from __future__ import annotations

import base64
import time

import cv2
import numpy as np
import pytest

from pipeline_lib.serving.request import (
    PredictOptions,
    RequestError,
    decode_request_image,
    image_bytes,
    parse_accept,
)
from pipeline_lib.serving.response import default_response, verbose_response


def _encode(img: np.ndarray, ext: str = ".jpg") -> bytes:
    ok, data = cv2.imencode(ext, img)
    assert ok
    return data.tobytes()


def _pattern(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx % 256, yy % 256, (xx + yy) % 256], axis=-1).astype(np.uint8)


def test_options_from_params_and_their_errors() -> None:
    assert PredictOptions.from_params(None) == PredictOptions()
    opts = PredictOptions.from_params(
        {
            "threshold": 0.25,
            "max_detections": 5,
            "nms_threshold": 0.3,
            "accept": "application/json;annotation=1",
        }
    )
    assert opts == PredictOptions(0.25, 5, 0.3, True)
    assert PredictOptions.from_params({"nms_threshold": -1}).nms_threshold is None
    for bad, field in (
        ({"threshold": 1.5}, "threshold"),
        ({"threshold": "x"}, "threshold"),
        ({"max_detections": 0}, "max_detections"),
        ({"max_detections": 101}, "max_detections"),
        ({"nms_threshold": 2}, "nms_threshold"),
        ({"accept": "text/csv"}, "accept"),
        ({"treshold": 0.1}, "treshold"),
    ):
        with pytest.raises(RequestError, match=field):
            PredictOptions.from_params(bad)


def test_accept_types() -> None:
    assert parse_accept("application/json") is False
    assert parse_accept("application/json; annotation=1") is True
    assert parse_accept("application/json;annotation=0") is False
    with pytest.raises(RequestError, match="application/x-recordio"):
        parse_accept("application/x-recordio")


def test_image_bytes_raw_or_base64() -> None:
    data = _encode(_pattern(8, 8))
    assert image_bytes(data, "row 0") == data
    assert image_bytes(base64.b64encode(data).decode(), "row 0") == data
    with pytest.raises(RequestError, match="row 3: text that is not base64"):
        image_bytes("not base64!", "row 3")
    with pytest.raises(RequestError, match="row 1: a int"):
        image_bytes(7, "row 1")


def test_decode_refuses_what_is_not_a_3_channel_image() -> None:
    img = decode_request_image(_encode(_pattern(20, 30)), "a.jpg")
    assert (img.width, img.height) == (30, 20) and img.pixels.shape == (20, 30, 3)
    gray = _encode(_pattern(10, 10)[:, :, 0])
    with pytest.raises(RequestError, match=r"g.jpg: a grayscale image: expected a 3-channel"):
        decode_request_image(gray, "g.jpg")
    rgba = _encode(np.dstack([_pattern(10, 10), np.full((10, 10), 255, np.uint8)]), ".png")
    with pytest.raises(RequestError, match="4-channel"):
        decode_request_image(rgba, "a.png")
    with pytest.raises(RequestError, match="empty"):
        decode_request_image(b"", "e")
    with pytest.raises(RequestError, match="x.bin: not a readable image"):
        decode_request_image(b"\x00garbage" * 10, "x.bin")
    truncated = _encode(_pattern(64, 64))[:200]
    with pytest.raises(RequestError, match=r"t.jpg has no FFD9 .* \[I002 image.truncated\]"):
        decode_request_image(truncated, "t.jpg")


def test_an_image_above_the_pixel_limit_is_refused_undecoded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The header's claim is checked before decoding, JPEG or PNG, with validate's rule
    (issue 27: a 66 KB JPEG claiming 65500x65500 cost 10 s of CPU and was answered)."""
    monkeypatch.setenv("ODP_MAX_IMAGE_PIXELS", str(200 * 150))
    big = _pattern(600, 800)
    for ext in (".jpg", ".png"):
        with pytest.raises(
            RequestError, match=r"800x600 = 480000 pixels.*\[I007 image.too_large\]"
        ):
            decode_request_image(_encode(big, ext), f"big{ext}")
    monkeypatch.delenv("ODP_MAX_IMAGE_PIXELS")
    jpeg = bytearray(_encode(_pattern(64, 64)))
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 5 : sof + 9] = (65500).to_bytes(2, "big") * 2  # the frame header lies
    started = time.monotonic()
    with pytest.raises(RequestError, match=r"65500x65500.*\[I007 image.too_large\]"):
        decode_request_image(bytes(jpeg), "claims.jpg")
    assert time.monotonic() - started < 1


def test_a_jpeg_cut_short_is_refused_not_answered_from_grey_pixels() -> None:
    """A JPEG cut in half with an end marker appended: libjpeg decodes the lower half grey;
    it is refused with validate's truncation rule (I002). An image that really ends in
    mid-grey is not."""
    data = _encode(_pattern(256, 256))
    with pytest.raises(RequestError, match=r"cut.jpg: its JPEG scan data ends early.*I002"):
        decode_request_image(data[: len(data) // 2] + b"\xff\xd9", "cut.jpg")
    grey = _pattern(256, 256)
    grey[128:] = 128
    assert (decode_request_image(_encode(grey), "grey.jpg").pixels[-1] == 128).all()


def test_a_jpeg_twice_the_input_size_is_decoded_reduced_to_it() -> None:
    full = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION

    def decoded(data: bytes, flags: int) -> np.ndarray:
        return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), flags), cv2.COLOR_BGR2RGB)

    jpeg = _encode(_pattern(700, 1300))  # 2.3x a 300 input on its short side: 1/2 scale
    img = decode_request_image(jpeg, "a.jpg", input_size=300)
    assert (img.width, img.height) == (1300, 700) and img.pixels.shape == (350, 650, 3)
    reduced = cv2.IMREAD_REDUCED_COLOR_2 | cv2.IMREAD_IGNORE_ORIENTATION
    np.testing.assert_array_equal(img.pixels, decoded(jpeg, reduced))
    assert decode_request_image(jpeg, "a.jpg", input_size=100).pixels.shape == (175, 325, 3)
    # under twice the input on a side, a PNG, or no input size: the full image, as before
    for data, size in ((jpeg, 351), (_encode(_pattern(700, 1300), ".png"), 100), (jpeg, None)):
        img = decode_request_image(data, "b", input_size=size)
        np.testing.assert_array_equal(img.pixels, decoded(data, full))


def test_response_layouts() -> None:
    det = np.array([[1, 0.9, 10, 20, 50, 60], [0, 0.5, 0, 0, 100, 200]], dtype=np.float32)
    plain = default_response(det, 100, 200)
    assert plain["prediction"][0] == pytest.approx([1, 0.9, 0.1, 0.1, 0.5, 0.3])
    assert plain["prediction"][1] == pytest.approx([0, 0.5, 0, 0, 1, 1])
    verbose = verbose_response(det, 100, 200, {0: "circle", 1: "square"})
    assert verbose["image_size"] == [{"width": 100, "height": 200, "depth": 3}]
    assert verbose["annotations"][0] == pytest.approx(
        {"class_id": 1, "score": 0.9, "left": 10, "top": 20, "width": 40, "height": 40}
    )
    assert verbose["categories"] == [
        {"class_id": 0, "name": "circle"},
        {"class_id": 1, "name": "square"},
    ]
    assert default_response(np.zeros((0, 6)), 10, 10) == {"prediction": []}
