"""Image bytes: header inspection without decoding, and decoding the way MXNet does.

* Header inspection (:func:`image_info`, :func:`read_jpeg_header`): a minimal JPEG header
  reader walks the marker segments up to the frame header (SOFn) and reads the orientation
  tag from an ``Exif`` APP1 segment, without building any decoder state; this is several
  times faster than ``PIL.Image.open``, which also parses quantisation and Huffman tables.
  PNG sizes come from IHDR. Anything unexpected falls back to Pillow, which then decides.
* Decoding (:func:`decode_rgb`) follows the EXIF-raw convention: OpenCV, colour, and the
  stored pixel grid (EXIF orientation is *not* applied, as ``mx.image.imdecode``). Boxes refer
  to that grid, so training, inference, evaluation and the converter's re-encode all decode
  through :func:`decode_bgr`.
* The pixel limit (:func:`max_image_pixels`, ``ODP_MAX_IMAGE_PIXELS``) is checked from the
  header before any decode, in every decoder path; validation's decompression-bomb rule
  (``image.too_large``, I007) uses the same number.

Importing this module is standard library only (the converter's start-up path uses
:func:`image_info`); OpenCV and numpy are imported when an image is decoded.
"""

from __future__ import annotations

import io
import os
import struct
import sys
import tempfile
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import bounds
from .rules import GateError

if TYPE_CHECKING:
    import numpy as np

_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_STANDALONE = {0x01, *range(0xD0, 0xD9)}  # TEM, RSTn, SOI
_MODES = {1: "L", 3: "RGB", 4: "CMYK"}
_ORIENTATION = 0x0112
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

MAX_PIXELS_ENV = "ODP_MAX_IMAGE_PIXELS"
DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own limit (about 0.25 GB of RGB pixels)
MAX_PIXELS_BOUND = 1_000_000_000  # the most ODP_MAX_IMAGE_PIXELS may allow (3 GB of RGB)
MAX_RESIZE = 4096  # the longest shorter side a re-encode may ask for (convert --resize)


class ImageDecodeError(ValueError):
    """Image bytes that OpenCV cannot decode: the message names the image."""


class ImageTooLargeError(ImageDecodeError):
    """An image whose header claims more pixels than the limit: refused before decoding
    (validation's rule ``image.too_large``, I007)."""

    rule = "image.too_large"


class ImageTruncatedError(ImageDecodeError):
    """Image data that ends early: no end marker, or a JPEG scan cut short (libjpeg would
    fill the rest with grey). Validation's rule ``image.truncated``, I002."""

    rule = "image.truncated"


def _refusal(cls: type[ImageDecodeError], message: str) -> ImageDecodeError:
    """``cls`` with the message the gate would give (ending in the rule's code)."""
    return cls(str(GateError(cls.rule, message)))  # type: ignore[attr-defined]


_TAIL = 1024


def has_end_marker(fmt: str, data: bytes | memoryview) -> bool:
    """Whether a JPEG ends with EOI / a PNG with IEND (other formats: True), in its last
    KB (trailing bytes after the marker are common)."""
    tail = bytes(data[-_TAIL:])
    if fmt == "JPEG":
        return b"\xff\xd9" in tail
    if fmt == "PNG":
        return b"IEND" in tail
    return True


def limit_from_env(name: str, default: int, maximum: int) -> int:
    """A resource limit: the integer in environment variable ``name`` (``1..maximum``),
    else ``default``; a bad value is a :class:`bounds.NumberError` (a ``ValueError``)
    naming the variable."""
    return bounds.env_int(name, default, minimum=1, maximum=maximum)


def max_image_pixels() -> int:
    """Most pixels (width x height) an image may claim before it is refused undecoded
    (``ODP_MAX_IMAGE_PIXELS``; default Pillow's decompression-bomb limit)."""
    return limit_from_env(MAX_PIXELS_ENV, DEFAULT_MAX_PIXELS, MAX_PIXELS_BOUND)


@dataclass(frozen=True)
class JpegHeader:
    width: int
    height: int
    components: int
    precision: int
    orientation: int

    @property
    def mode(self) -> str:
        return _MODES.get(self.components, f"{self.components}-component")


def read_jpeg_header(data: bytes) -> JpegHeader | None:
    """The frame header of a JPEG, or None when anything is unusual (then ask Pillow)."""
    if data[:3] != b"\xff\xd8\xff":
        return None
    n = len(data)
    i = 2
    orientation = 1
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _STANDALONE:
            i += 2
            continue
        length = (data[i + 2] << 8) | data[i + 3]
        if length < 2 or i + 2 + length > n:
            return None
        if marker == 0xE1 and orientation == 1 and data[i + 4 : i + 10] == b"Exif\x00\x00":
            orientation = exif_orientation(data[i + 10 : i + 2 + length])
        elif marker in _SOF:
            if length < 8:
                return None
            precision = data[i + 4]
            height = (data[i + 5] << 8) | data[i + 6]
            width = (data[i + 7] << 8) | data[i + 8]
            components = data[i + 9]
            if not (width and height and components):
                return None
            return JpegHeader(width, height, components, precision, orientation)
        elif marker == 0xDA:  # scan data before any frame header
            return None
        i += 2 + length
    return None


def exif_orientation(tiff: bytes) -> int:
    """The Orientation tag (0x0112) of IFD0 in a TIFF-structured EXIF block; 1 if absent/bad."""
    if len(tiff) < 8:
        return 1
    order = tiff[:2]
    if order == b"II":
        big = False
    elif order == b"MM":
        big = True
    else:
        return 1

    def u16(at: int) -> int:
        b = tiff[at : at + 2]
        return int.from_bytes(b, "big" if big else "little") if len(b) == 2 else -1

    def u32(at: int) -> int:
        b = tiff[at : at + 4]
        return int.from_bytes(b, "big" if big else "little") if len(b) == 4 else -1

    ifd = u32(4)
    count = u16(ifd) if ifd >= 8 else -1
    if count < 0 or ifd + 2 + 12 * count > len(tiff):
        return 1
    for k in range(count):
        entry = ifd + 2 + 12 * k
        if u16(entry) == _ORIENTATION:
            kind, num = u16(entry + 2), u32(entry + 4)
            if kind != 3 or num != 1:  # SHORT x 1
                return 1
            value = u16(entry + 8)
            return value if 1 <= value <= 8 else 1
    return 1


def image_info(data: bytes | memoryview) -> tuple[int, int, int, str]:
    """``(width, height, channels, ext)`` of an encoded image, from its header only."""
    if data[:2] == b"\xff\xd8":
        header = read_jpeg_header(data)
        if header:
            return header.width, header.height, header.components, ".jpg"
    elif data[:8] == PNG_MAGIC and len(data) >= 26:
        w, h = struct.unpack_from(">II", data, 16)
        channels = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}.get(data[25], 3)
        return w, h, channels, ".png"
    from PIL import Image  # other formats: let Pillow read the header

    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt = (img.format or "bin").lower()
            return img.width, img.height, len(img.getbands()), "." + fmt.replace("jpeg", "jpg")
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"image ({len(data)} bytes): {exc}") from None
    except Exception as exc:
        raise ValueError(f"not a readable image ({len(data)} bytes): {exc}") from None


def check_pixels(data: bytes | memoryview, where: str = "image") -> tuple[int, int]:
    """``(width, height)`` from the header, or :class:`ImageTooLargeError` when they exceed
    :func:`max_image_pixels` (nothing is decoded); :class:`ImageDecodeError` when the header
    cannot be read at all."""
    try:
        width, height, _, _ = image_info(data)
    except ImageTooLargeError as exc:
        raise ImageTooLargeError(f"{where}: {exc}") from None
    except ValueError as exc:
        raise ImageDecodeError(f"{where}: {exc}") from None
    limit = max_image_pixels()
    if width * height > limit:
        raise _refusal(
            ImageTooLargeError,
            f"{where} claims {width}x{height} = {width * height} pixels, above the limit of "
            f"{limit} (possible decompression bomb; {MAX_PIXELS_ENV} sets it); not decoded",
        )
    return width, height


# ---------------------------------------------------------------- decoding


REDUCED_FACTORS = (1, 2, 4, 8)  # JPEG DCT scaling factors OpenCV decodes at


def decode_bgr(
    data: bytes | memoryview, where: str = "image", reduce: int = 1
) -> np.ndarray | None:
    """HWC uint8 BGR on the stored pixel grid (EXIF orientation ignored), or ``None`` when
    OpenCV cannot decode the bytes; ``reduce`` (2, 4, 8) decodes a JPEG at that fraction of
    its size (the decoder's own DCT scaling).

    Within budget, with validation's rule codes: :class:`ImageTooLargeError` (I007, nothing
    decoded) when the header claims more than :func:`max_image_pixels`;
    :class:`ImageTruncatedError` (I002) when a JPEG or PNG has no end marker, or a JPEG's
    scan ends early (libjpeg fills the missing part with grey and only warns: a grey tail
    is checked against libjpeg's own warning, :func:`_scan_ends_early`)."""
    import cv2
    import numpy as np

    try:
        check_pixels(data, where)
    except ImageTooLargeError:
        raise
    except ImageDecodeError:
        return None
    fmt = "JPEG" if data[:2] == b"\xff\xd8" else "PNG" if data[:8] == PNG_MAGIC else None
    if fmt and not has_end_marker(fmt, data):
        marker = "FFD9 (EOI)" if fmt == "JPEG" else "IEND"
        raise _refusal(
            ImageTruncatedError, f"{where} has no {marker} end marker: the file is truncated"
        )
    flags = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
             8: cv2.IMREAD_REDUCED_COLOR_8}[reduce] | cv2.IMREAD_IGNORE_ORIENTATION  # fmt: skip
    buf = np.frombuffer(data, np.uint8)
    img = cv2.imdecode(buf, flags)
    if img is not None and fmt == "JPEG" and _grey_tail(img) and _scan_ends_early(buf, flags):
        raise _refusal(
            ImageTruncatedError,
            f"{where}: its JPEG scan data ends early (the rest would decode as grey): the "
            "file is truncated",
        )
    return img


_GREY = 128  # what libjpeg decodes missing entropy-coded data to (zero DCT coefficients)


def _grey_tail(img: np.ndarray) -> bool:
    """Whether the last pixel row and the bottom-right 8x8 block are exactly mid-grey: how
    a JPEG whose scan ended early decodes (cheap: a few hundred pixels of every image)."""
    return bool((img[-1] == _GREY).all() and (img[-8:, -8:] == _GREY).all())


_SCAN_LOCK = threading.Lock()
_LIBJPEG_TRUNCATION = (b"premature end of data segment", b"premature end of jpeg file")


def _scan_ends_early(buf: np.ndarray, flags: int) -> bool:
    """Decode again with this process's stderr captured: libjpeg's warning for a scan cut
    short is the only exact signal (OpenCV returns the grey-filled image). Rare (only for
    images ending in exact mid-grey), serialised, and anything else written meanwhile is
    passed on."""
    import cv2

    with _SCAN_LOCK, tempfile.TemporaryFile() as capture:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(capture.fileno(), 2)
            cv2.imdecode(buf, flags)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        capture.seek(0)
        text = capture.read(1 << 16)
    lines = text.splitlines(keepends=True)
    found = any(any(m in line.lower() for m in _LIBJPEG_TRUNCATION) for line in lines)
    other = b"".join(line for line in lines if b"corrupt jpeg" not in line.lower()
                     and b"premature end" not in line.lower())  # fmt: skip
    if other:
        os.write(2, other)
    return found


def decode_rgb(data: bytes, where: str = "image") -> np.ndarray:
    """Decode to HWC uint8 RGB the way MXNet's readers do: OpenCV, colour, and the stored
    pixel grid (EXIF orientation is *not* applied, as ``mx.image.imdecode``)."""
    import cv2

    img = decode_bgr(data, where)
    if img is None:
        raise ImageDecodeError(f"{where}: image bytes ({len(data)}) cannot be decoded")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
