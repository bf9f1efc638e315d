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
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_STANDALONE = {0x01, *range(0xD0, 0xD9)}  # TEM, RSTn, SOI
_MODES = {1: "L", 3: "RGB", 4: "CMYK"}
_ORIENTATION = 0x0112
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

MAX_PIXELS_ENV = "ODP_MAX_IMAGE_PIXELS"
DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own limit (about 0.25 GB of RGB pixels)


class ImageDecodeError(ValueError):
    """Image bytes that OpenCV cannot decode: the message names the image."""


class ImageTooLargeError(ImageDecodeError):
    """An image whose header claims more pixels than the limit: refused before decoding."""


def limit_from_env(name: str, default: int) -> int:
    """A resource limit: the positive integer in environment variable ``name``, else
    ``default``. A value that is not a positive integer is a ``ValueError`` naming it."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{name}={raw!r} is invalid: expected a positive integer")
    return value


def max_image_pixels() -> int:
    """Most pixels (width x height) an image may claim before it is refused undecoded
    (``ODP_MAX_IMAGE_PIXELS``; default Pillow's decompression-bomb limit)."""
    return limit_from_env(MAX_PIXELS_ENV, DEFAULT_MAX_PIXELS)


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
        raise ImageTooLargeError(
            f"{where} claims {width}x{height} = {width * height} pixels, above the limit of "
            f"{limit} (possible decompression bomb; {MAX_PIXELS_ENV} sets it); not decoded"
        )
    return width, height


# ---------------------------------------------------------------- decoding


def decode_bgr(data: bytes | memoryview, where: str = "image") -> np.ndarray | None:
    """HWC uint8 BGR on the stored pixel grid (EXIF orientation ignored), or ``None`` when
    OpenCV cannot decode the bytes. :class:`ImageTooLargeError` (nothing decoded) when the
    header claims more than :func:`max_image_pixels`."""
    import cv2
    import numpy as np

    try:
        check_pixels(data, where)
    except ImageTooLargeError:
        raise
    except ImageDecodeError:
        return None
    flags = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    return cv2.imdecode(np.frombuffer(data, np.uint8), flags)


def decode_rgb(data: bytes, where: str = "image") -> np.ndarray:
    """Decode to HWC uint8 RGB the way MXNet's readers do: OpenCV, colour, and the stored
    pixel grid (EXIF orientation is *not* applied, as ``mx.image.imdecode``)."""
    import cv2

    img = decode_bgr(data, where)
    if img is None:
        raise ImageDecodeError(f"{where}: image bytes ({len(data)}) cannot be decoded")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
