"""What a prediction request holds: image bytes and the options that shape the answer.

Images are JPEG or PNG (anything OpenCV decodes), 3-channel only, as for training. An image
above the pixel limit (``ODP_MAX_IMAGE_PIXELS``) is not refused when it is a JPEG: it is
decoded at 1/2, 1/4 or 1/8 scale (the JPEG decoder's own DCT scaling, so the full image is
never in memory) and boxes are reported in the original image's pixels. A JPEG at least
twice the network's input size on both sides is decoded that way too, at the smallest scale
that keeps both sides at least the input size (the network sees a resized image anyway). A request that
cannot be answered is a :class:`RequestError` naming the image and the problem; the pyfunc
turns it into an HTTP 400.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..images import image_info, max_image_pixels

if TYPE_CHECKING:
    import numpy as np

ACCEPT_DEFAULT = "application/json"
ACCEPT_VERBOSE = "application/json;annotation=1"
MAX_DETECTIONS = 100  # the export keeps the best 100 boxes after NMS (SSD's post_nms)
_REDUCED = (2, 4, 8)  # JPEG DCT scaling factors OpenCV decodes at


class RequestError(ValueError):
    """A request that cannot be answered (undecodable image, wrong channels, bad option)."""


@dataclass(frozen=True)
class PredictOptions:
    """How to answer: score threshold, most boxes per image, NMS IoU threshold (``None``:
    the model's own), and the response layout (``verbose`` = ``annotation=1``)."""

    threshold: float = 0.0
    max_detections: int = MAX_DETECTIONS
    nms_threshold: float | None = None
    verbose: bool = False

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> PredictOptions:
        """Options from MLflow ``params`` (``threshold``, ``max_detections``,
        ``nms_threshold``, ``accept``); a bad value is a :class:`RequestError`."""
        params = dict(params or {})
        unknown = sorted(set(params) - {"threshold", "max_detections", "nms_threshold", "accept"})
        if unknown:
            raise RequestError(
                f"unknown parameter(s) {unknown}: expected threshold, max_detections, "
                "nms_threshold, accept"
            )
        nms = params.get("nms_threshold")
        return cls(
            threshold=_number(params, "threshold", 0.0, 0.0, 1.0),
            max_detections=int(
                _number(params, "max_detections", MAX_DETECTIONS, 1, MAX_DETECTIONS)
            ),
            nms_threshold=None
            if nms is None or float(nms) < 0
            else _number(params, "nms_threshold", 0.45, 0.0, 1.0),
            verbose=parse_accept(params.get("accept") or ACCEPT_DEFAULT),
        )


def _number(params: Mapping[str, Any], name: str, default: float, lo: float, hi: float) -> float:
    value = params.get(name, default)
    if isinstance(value, bool):
        raise RequestError(f"parameter {name}={value!r}: expected a number in [{lo}, {hi}]")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RequestError(
            f"parameter {name}={value!r}: expected a number in [{lo}, {hi}]"
        ) from None
    if not lo <= number <= hi:
        raise RequestError(f"parameter {name}={value!r}: expected a number in [{lo}, {hi}]")
    return number


def parse_accept(accept: str) -> bool:
    """Whether ``accept`` asks for the verbose layout; anything but SageMaker's two JSON
    types is a :class:`RequestError`."""
    parts = [p.strip().lower() for p in str(accept).split(";")]
    if parts[0] not in ("application/json", "*/*", ""):
        raise RequestError(f"accept {accept!r}: expected {ACCEPT_DEFAULT!r} or {ACCEPT_VERBOSE!r}")
    extras = {p.replace(" ", "") for p in parts[1:] if p}
    if extras - {"annotation=1", "annotation=0"}:
        raise RequestError(f"accept {accept!r}: expected {ACCEPT_DEFAULT!r} or {ACCEPT_VERBOSE!r}")
    return "annotation=1" in extras


def image_bytes(value: Any, where: str) -> bytes:
    """The bytes of one request image: raw bytes, or base64 text (as JSON carries them)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise RequestError(f"{where}: text that is not base64: expected image bytes") from None
    raise RequestError(f"{where}: a {type(value).__name__}: expected image bytes (JPEG or PNG)")


@dataclass(frozen=True)
class RequestImage:
    """A decoded request image: RGB pixels (possibly reduced) and the original size."""

    pixels: np.ndarray
    width: int
    height: int


def decode_request_image(
    data: bytes, where: str = "image", input_size: int | None = None
) -> RequestImage:
    """Decode one request image to RGB; :class:`RequestError` when it is empty, cannot be
    decoded, or is not 3-channel. JPEGs above the pixel limit, or (``input_size``: the
    square the network resizes to) at least twice it on both sides, are decoded reduced."""
    import cv2
    import numpy as np

    if not data:
        raise RequestError(f"{where}: empty: expected JPEG or PNG bytes")
    try:
        width, height, channels, ext = image_info(data)
    except ValueError as exc:
        raise RequestError(f"{where}: {exc}: expected JPEG or PNG bytes") from None
    if channels != 3:
        kind = {1: "grayscale", 2: "grayscale+alpha", 4: "4-channel (RGBA or CMYK)"}.get(
            channels, f"{channels}-channel"
        )
        raise RequestError(f"{where}: a {kind} image: expected a 3-channel (RGB) image")
    factor = 1
    limit = max_image_pixels()
    if width * height > limit:
        factor = next((f for f in _REDUCED if width * height / (f * f) <= limit), 0)
        if ext != ".jpg" or not factor:
            raise RequestError(
                f"{where}: {width}x{height} pixels, above the limit of {limit} "
                f"(ODP_MAX_IMAGE_PIXELS); only JPEGs within {_REDUCED[-1] ** 2}x of it are "
                "decoded reduced"
            )
    if ext == ".jpg" and input_size:
        fits = [f for f in _REDUCED if min(width, height) >= f * input_size]
        factor = max([factor, *fits])
    flags = {
        1: cv2.IMREAD_COLOR,
        2: cv2.IMREAD_REDUCED_COLOR_2,
        4: cv2.IMREAD_REDUCED_COLOR_4,
        8: cv2.IMREAD_REDUCED_COLOR_8,
    }[factor] | cv2.IMREAD_IGNORE_ORIENTATION
    try:
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error:
        bgr = None
    if bgr is None or bgr.size == 0:
        raise RequestError(
            f"{where}: {len(data)} bytes that cannot be decoded: expected JPEG or PNG"
        )
    return RequestImage(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), width, height)


__all__ = [
    "ACCEPT_DEFAULT",
    "ACCEPT_VERBOSE",
    "MAX_DETECTIONS",
    "PredictOptions",
    "RequestError",
    "RequestImage",
    "decode_request_image",
    "image_bytes",
    "parse_accept",
]
