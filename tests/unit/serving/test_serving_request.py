"""pipeline_lib.serving.request and .response: options, image bytes, decoding, layouts."""

from __future__ import annotations

import base64

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
    with pytest.raises(RequestError, match="cannot be decoded"):
        decode_request_image(truncated, "t.jpg")


def test_large_jpeg_is_decoded_reduced_png_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ODP_MAX_IMAGE_PIXELS", str(200 * 150))
    big = _pattern(600, 800)  # 16x the limit: decoded at 1/4 scale
    img = decode_request_image(_encode(big), "big.jpg")
    assert (img.width, img.height) == (800, 600)
    assert img.pixels.shape == (150, 200, 3)
    with pytest.raises(RequestError, match=r"big.png: 800x600 pixels, above the limit"):
        decode_request_image(_encode(big, ".png"), "big.png")
    huge = _pattern(1800, 1800)  # 108x the limit: beyond 1/8 scale
    with pytest.raises(RequestError, match="above the limit"):
        decode_request_image(_encode(huge), "huge.jpg")


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


def test_the_pixel_limit_and_the_input_size_take_the_smaller_decode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ODP_MAX_IMAGE_PIXELS", str(200 * 150))
    big = _encode(_pattern(600, 800))  # the limit needs 1/4, the input size allows 1/2
    assert decode_request_image(big, "big.jpg", input_size=300).pixels.shape == (150, 200, 3)
    assert decode_request_image(big, "big.jpg", input_size=70).pixels.shape == (75, 100, 3)


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
