"""What a prediction request holds: image bytes and the options that shape the answer.

Images are JPEG or PNG (anything OpenCV decodes), 3-channel only, as for training, and
decoded within the same budget as everywhere (:func:`pipeline_lib.images.decode_bgr`): an
image whose header claims more than the pixel limit (``ODP_MAX_IMAGE_PIXELS``) is refused
undecoded (I007, as ``odp validate`` refuses it), a truncated one is refused (I002), not
answered from grey pixels. A JPEG at least twice the network's input size on both sides is
decoded at 1/2, 1/4 or 1/8 scale (the JPEG decoder's own DCT scaling), the smallest that
keeps both sides at least the input size (the network sees a resized image anyway); boxes
are reported in the original image's pixels. A request that cannot be answered is a
:class:`RequestError` naming the image and the problem; the pyfunc turns it into an HTTP 400.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import bounds
from ..images import ImageDecodeError, check_pixels, decode_bgr, image_info

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
        if nms is not None and _number(params, "nms_threshold", -1.0, 1.0) < 0:
            nms = None  # a negative value: the model's own (MLflow params need a default)
        return cls(
            threshold=_number(params, "threshold", 0.0, 1.0),
            max_detections=_integer(params, "max_detections", 1, MAX_DETECTIONS),
            nms_threshold=None if nms is None else _number(params, "nms_threshold", 0.0, 1.0),
            verbose=parse_accept(params.get("accept") or ACCEPT_DEFAULT),
        )


_DEFAULTS = {"threshold": 0.0, "max_detections": MAX_DETECTIONS}


def _number(params: Mapping[str, Any], name: str, lo: float, hi: float) -> float:
    """A bounded, finite option (:mod:`pipeline_lib.bounds`); :class:`RequestError`."""
    try:
        return bounds.parse_float(params.get(name, _DEFAULTS.get(name)), f"parameter {name}",
                                  minimum=lo, maximum=hi)  # fmt: skip
    except bounds.NumberError as exc:
        raise RequestError(str(exc)) from None


def _integer(params: Mapping[str, Any], name: str, lo: int, hi: int) -> int:
    try:
        return bounds.parse_int(params.get(name, _DEFAULTS.get(name)), f"parameter {name}",
                                minimum=lo, maximum=hi)  # fmt: skip
    except bounds.NumberError as exc:
        raise RequestError(str(exc)) from None


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
    decoded, is truncated, claims more pixels than the limit, or is not 3-channel. JPEGs at
    least twice ``input_size`` (the square the network resizes to) on both sides are
    decoded reduced."""
    import cv2

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
    if ext == ".jpg" and input_size:
        fits = [f for f in _REDUCED if min(width, height) >= f * input_size]
        factor = max([factor, *fits])
    try:
        check_pixels(data, where)  # the header's claim, before anything is decoded (I007)
        bgr = decode_bgr(data, where, reduce=factor)  # truncated data refused (I002)
    except ImageDecodeError as exc:
        raise RequestError(str(exc)) from None
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
