"""Header-only image inspection: format, mode, bit depth, size, EXIF orientation, end marker.

Nothing here decodes pixels (unless ``full_decode`` asks for it). Pillow parses the header
(JPEG SOF, PNG IHDR and the chunks before IDAT); PNG bit depth and colour type are read from
IHDR directly because Pillow silently narrows 16-bit RGB PNGs to 8-bit ``RGB``. Truncation is
found from the end marker (JPEG ``FFD9``, PNG ``IEND``): OpenCV, which MXNet uses to decode
training images, fills a truncated JPEG with grey and says nothing.

EXIF orientation: MXNet's ``imdecode`` (training) ignores the tag and uses the raw pixel grid,
while ``cv2.imread``, browsers and most labelling tools apply it. So an ``image_size`` that
matches the raw grid is consistent with training (warning: other tools disagree); one that
only matches the rotated view means the boxes were drawn on a picture training never sees
(error).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import struct
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from ..images import PNG_MAGIC, read_jpeg_header
from .report import Finding, finding

ACCEPTED_FORMATS = {"JPEG": "JPEG", "MPO": "JPEG", "PNG": "PNG"}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff")
_PNG_COLOR = {0: ("L", 1), 2: ("RGB", 3), 3: ("P", 1), 4: ("LA", 2), 6: ("RGBA", 4)}
_TAIL = 1024
ORIENTATION_TAG = 0x0112
_ORIENTATION_NAMES = {
    2: "mirrored horizontally",
    3: "rotated 180",
    4: "mirrored vertically",
    5: "mirrored and rotated 90",
    6: "rotated 90 clockwise",
    7: "mirrored and rotated 270",
    8: "rotated 90 counter-clockwise",
}


@dataclass(frozen=True)
class ImageInfo:
    """What the header says about one image file."""

    format: str
    mode: str
    width: int
    height: int
    bits: int
    channels: int
    orientation: int
    digest: bytes
    nbytes: int

    @property
    def is_rgb8(self) -> bool:
        return self.channels == 3 and self.mode == "RGB" and self.bits == 8

    @property
    def describe_mode(self) -> str:
        return self.mode if self.bits == 8 else f"{self.mode} {self.bits}-bit"

    @property
    def oriented_size(self) -> tuple[int, int]:
        """(width, height) after applying EXIF orientation (what cv2.imread returns)."""
        if self.orientation in (5, 6, 7, 8):
            return self.height, self.width
        return self.width, self.height


def content_digest(data: bytes) -> bytes:
    """Content hash used for duplicate and train/validation overlap detection."""
    return hashlib.sha256(data).digest()[:16]


def _png_ihdr(data: bytes) -> tuple[int, int, int, int] | None:
    """(width, height, bit depth, colour type) from a PNG's IHDR, or None."""
    if len(data) < 33 or data[:8] != PNG_MAGIC or data[12:16] != b"IHDR":
        return None
    width, height, depth, color = struct.unpack(">IIBB", data[16:26])
    return width, height, depth, color


def _orientation(im: Image.Image) -> int:
    """EXIF orientation from the header only (1 when absent or unreadable).

    JPEG EXIF sits in APP1, parsed on open. PNG's ``getexif()`` would decode the whole image
    to look for an eXIf chunk after IDAT, so only an eXIf chunk before IDAT is read.
    """
    try:
        if im.format in ("JPEG", "MPO"):
            return int(im.getexif().get(ORIENTATION_TAG, 1) or 1)
        raw = im.info.get("exif")
        if raw:
            exif = Image.Exif()
            exif.load(raw)
            return int(exif.get(ORIENTATION_TAG, 1) or 1)
    except Exception:  # invalid EXIF must not hide the other checks
        return 1
    return 1


def _pil_header(data: bytes) -> tuple[str, int, int, str, int, int, int]:
    """(format, width, height, mode, bits, channels, orientation) from Pillow's header parse."""
    old_limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # we apply our own limit, with a precise finding
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im = Image.open(io.BytesIO(data))
            return (
                im.format or "unknown",
                im.width,
                im.height,
                im.mode,
                int(getattr(im, "bits", 8) or 8),
                len(im.getbands()),
                _orientation(im),
            )
    finally:
        Image.MAX_IMAGE_PIXELS = old_limit


def _has_end_marker(fmt: str, data: bytes) -> bool:
    tail = data[-_TAIL:]
    if fmt == "JPEG":
        return b"\xff\xd9" in tail
    if fmt == "PNG":
        return b"IEND" in tail
    return True


def inspect_image(
    data: bytes, name: str, *, max_pixels: int, full_decode: bool = False
) -> tuple[ImageInfo | None, list[Finding]]:
    """Inspect one encoded image. Returns its info (None when unreadable) and findings.

    Findings cover decodability, truncation, format, channels/bit depth and the pixel limit;
    comparisons with the annotation are :func:`check_against_annotation`.
    """
    out: list[Finding] = []
    if not data:
        return None, [finding("image.decode", name, f"{name} is an empty file", actual="0 bytes")]
    fast = read_jpeg_header(data)
    if fast is not None:
        fmt_raw, width, height = "JPEG", fast.width, fast.height
        mode, bits, channels = fast.mode, fast.precision, fast.components
        orientation = fast.orientation
    else:
        try:
            fmt_raw, width, height, mode, bits, channels, orientation = _pil_header(data)
        except UnidentifiedImageError:
            return None, [
                finding(
                    "image.decode",
                    name,
                    f"{name} is not a readable image (no known format matches its header)",
                    expected="a JPEG or PNG file",
                    actual=data[:8].hex(),
                )
            ]
        except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, ...
            return None, [
                finding(
                    "image.decode",
                    name,
                    f"{name} cannot be read: {type(exc).__name__}: {exc}",
                    expected="a decodable JPEG or PNG",
                    actual=f"{type(exc).__name__}: {exc}",
                )
            ]

    ihdr = _png_ihdr(data) if fmt_raw == "PNG" else None
    if ihdr is not None:
        _, _, bits, color = ihdr
        mode, channels = _PNG_COLOR.get(color, (mode, channels))
    fmt = ACCEPTED_FORMATS.get(fmt_raw, fmt_raw)
    info = ImageInfo(
        fmt, mode, width, height, bits, channels, orientation, content_digest(data), len(data)
    )

    if fmt_raw not in ACCEPTED_FORMATS:
        out.append(
            finding(
                "image.format",
                name,
                f"{name} is {fmt_raw}; training reads JPEG and PNG only",
                expected="JPEG or PNG",
                actual=fmt_raw,
            )
        )
    if width * height > max_pixels:
        out.append(
            finding(
                "image.too_large",
                name,
                f"{name} claims {width}x{height} = {width * height} pixels, above the limit of "
                f"{max_pixels} (possible decompression bomb); not decoded",
                field="image_size",
                expected=f"<= {max_pixels} pixels",
                actual=f"{width}x{height}",
            )
        )
        return info, out
    if not info.is_rgb8:
        out.append(
            finding(
                "image.channels",
                name,
                f"{name} is {info.describe_mode} ({channels} channel{'s' * (channels != 1)}, "
                f"{bits}-bit); training needs 8-bit RGB (3 channels)",
                field="image_size.depth",
                expected="RGB, 3 channels, 8-bit",
                actual=f"{info.describe_mode}, {channels} channel{'s' * (channels != 1)}",
            )
        )
    if not _has_end_marker(fmt, data):
        marker = "FFD9 (EOI)" if fmt == "JPEG" else "IEND"
        out.append(
            finding(
                "image.truncated",
                name,
                f"{name} has no {marker} end marker: the file is truncated "
                "(OpenCV/MXNet would decode it silently with missing pixels)",
                expected=f"{marker} at the end",
                actual=data[-8:].hex(),
            )
        )
    elif full_decode:
        try:
            with warnings.catch_warnings(), _strict_pillow():
                warnings.simplefilter("ignore")
                Image.open(io.BytesIO(data)).load()
        except Exception as exc:
            out.append(
                finding(
                    "image.decode",
                    name,
                    f"{name} header is fine but its pixel data cannot be decoded: {exc}",
                    expected="decodable pixel data",
                    actual=f"{type(exc).__name__}: {exc}",
                )
            )
    return info, out


def check_against_annotation(
    info: ImageInfo, name: str, json_name: str, width: object, height: object, depth: object
) -> list[Finding]:
    """Compare the real image with the annotation's ``image_size`` (EXIF orientation aware)."""
    out: list[Finding] = []
    raw = (info.width, info.height)
    declared = (width, height)
    orient = info.orientation
    if orient not in (1, 0) and orient in _ORIENTATION_NAMES:
        how = _ORIENTATION_NAMES[orient]
        if declared == raw:
            out.append(
                finding(
                    "image.exif_orientation",
                    name,
                    f"{name} has EXIF orientation {orient} ({how}); image_size matches the raw "
                    f"pixels {raw[0]}x{raw[1]}, which is what training (MXNet imdecode) sees, "
                    "but cv2.imread and most viewers show it transformed. Strip the tag or "
                    "bake it into the pixels to remove the ambiguity",
                    field="EXIF Orientation",
                    expected="1 (none)",
                    actual=orient,
                )
            )
        elif declared == info.oriented_size:
            out.append(
                finding(
                    "image.exif_orientation",
                    json_name,
                    f"{json_name}: image_size {width}x{height} matches {name} only after its "
                    f"EXIF orientation {orient} ({how}); training decodes the raw "
                    f"{raw[0]}x{raw[1]} pixels, so the boxes would not line up",
                    field="image_size",
                    expected=f"{raw[0]}x{raw[1]} (raw pixels)",
                    actual=f"{width}x{height}",
                    severity="error",
                )
            )
            return out
    if declared != raw:
        out.append(
            finding(
                "image.size_mismatch",
                json_name,
                f"{json_name}: image_size says {width}x{height} but {name} is {raw[0]}x{raw[1]}",
                field="image_size",
                expected=f"{raw[0]}x{raw[1]}",
                actual=f"{width}x{height}",
            )
        )
    if depth is not None and depth != 3 and info.channels == 3:
        out.append(
            finding(
                "image.size_mismatch",
                json_name,
                f"{json_name}: image_size.depth says {depth} but {name} has 3 channels",
                field="image_size.depth",
                expected=3,
                actual=depth,
            )
        )
    return out


@contextlib.contextmanager
def _strict_pillow() -> Iterator[None]:
    """Pillow refusing truncated pixel data, even where an import (GluonCV's ``data.mhp``)
    switched ``ImageFile.LOAD_TRUNCATED_IMAGES`` on for the whole process."""
    from PIL import ImageFile

    saved = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = saved
