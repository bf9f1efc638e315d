"""The image rules from the header alone: readable, JPEG or PNG, within the pixel limit,
8-bit RGB, not truncated. One implementation for ``validate`` (findings) and ``convert``
(refusals).

JPEG frame headers and PNG IHDR are read here with the standard library (PNG bit depth and
colour type directly, since Pillow narrows 16-bit RGB PNGs to ``RGB``); anything else is
handed to Pillow, imported only then. Truncation is found from the end marker (JPEG
``FFD9``, PNG ``IEND``): OpenCV, which MXNet uses, decodes a truncated JPEG silently.
"""

from __future__ import annotations

import hashlib
import io
import struct
import warnings
from dataclasses import dataclass

from ..images import PNG_MAGIC, has_end_marker, read_jpeg_header
from .rules import GateError

ACCEPTED_FORMATS = {"JPEG": "JPEG", "MPO": "JPEG", "PNG": "PNG"}
MAX_PIXELS = 89_478_485  # Pillow's own limit (about 0.25 GB of RGB pixels)
ORIENTATION_TAG = 0x0112
_PNG_COLOR = {0: ("L", 1), 2: ("RGB", 3), 3: ("P", 1), 4: ("LA", 2), 6: ("RGBA", 4)}


@dataclass(frozen=True)
class Header:
    """What an image's header says (``raw_format`` as detected, ``format`` normalized)."""

    raw_format: str
    width: int
    height: int
    mode: str
    bits: int
    channels: int
    orientation: int

    @property
    def format(self) -> str:
        return ACCEPTED_FORMATS.get(self.raw_format, self.raw_format)

    @property
    def is_rgb8(self) -> bool:
        return self.channels == 3 and self.mode == "RGB" and self.bits == 8

    @property
    def describe_mode(self) -> str:
        return self.mode if self.bits == 8 else f"{self.mode} {self.bits}-bit"


@dataclass(frozen=True)
class Problem:
    """One broken image rule: the rule name and what a finding or an error says."""

    rule: str
    message: str
    field: str | None = None
    expected: object = None
    actual: object = None

    def error(self) -> GateError:
        return GateError(self.rule, self.message)


def content_digest(data: bytes | memoryview) -> bytes:
    """Content hash used for duplicate and train/validation overlap detection."""
    return hashlib.sha256(data).digest()[:16]


def _png_ihdr(data: bytes) -> tuple[int, int, int, int] | None:
    """(width, height, bit depth, colour type) from a PNG's IHDR, or None."""
    if len(data) < 33 or data[:8] != PNG_MAGIC or data[12:16] != b"IHDR":
        return None
    width, height, depth, color = struct.unpack(">IIBB", bytes(data[16:26]))
    return width, height, depth, color


def _orientation(im) -> int:
    """EXIF orientation from the header only (1 when absent or unreadable).

    JPEG EXIF sits in APP1, parsed on open. PNG's ``getexif()`` would decode the whole image
    to look for an eXIf chunk after IDAT, so only an eXIf chunk before IDAT is read.
    """
    from PIL import Image

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


def _pil_header(data: bytes) -> Header:
    from PIL import Image

    old_limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # we apply our own limit, with a precise finding
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im = Image.open(io.BytesIO(data))
            return Header(
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


def read_header(data: bytes | memoryview, name: str, *, fast_png: bool = False) -> Header:
    """The header of an encoded image; raises :class:`GateError` (``image.decode``).

    ``fast_png`` reads a PNG's IHDR without Pillow (no CRC check, no EXIF orientation):
    what the converter needs, at a fraction of the cost."""
    if not len(data):
        raise GateError("image.decode", f"{name} is an empty file")
    fast = read_jpeg_header(data)
    if fast is not None:
        return Header(
            "JPEG", fast.width, fast.height, fast.mode, fast.precision, fast.components,
            fast.orientation,
        )  # fmt: skip
    if fast_png and (ihdr := _png_ihdr(bytes(data[:33]))) is not None:
        width, height, bits, color = ihdr
        if width and height and color in _PNG_COLOR:
            mode, channels = _PNG_COLOR[color]
            return Header("PNG", width, height, mode, bits, channels, 1)
    try:
        header = _pil_header(bytes(data))
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, ...
        if type(exc).__name__ == "UnidentifiedImageError":
            raise GateError(
                "image.decode",
                f"{name} is not a readable image (no known format matches its header)",
            ) from None
        raise GateError(
            "image.decode", f"{name} cannot be read: {type(exc).__name__}: {exc}"
        ) from None
    ihdr = _png_ihdr(bytes(data[:33])) if header.raw_format == "PNG" else None
    if ihdr is not None and ihdr[3] in _PNG_COLOR:
        mode, channels = _PNG_COLOR[ihdr[3]]
        header = Header("PNG", header.width, header.height, mode, ihdr[2], channels,
                        header.orientation)  # fmt: skip
    return header


def header_problems(
    header: Header, data: bytes | memoryview, name: str, max_pixels: int = MAX_PIXELS
) -> list[Problem]:
    """The image rules broken by an image, in the order validation reports them (nothing
    after ``image.too_large``: such an image is never looked at further)."""
    out: list[Problem] = []
    h = header
    if h.raw_format not in ACCEPTED_FORMATS:
        out.append(
            Problem(
                "image.format",
                f"{name} is {h.raw_format}; training reads JPEG and PNG only",
                expected="JPEG or PNG",
                actual=h.raw_format,
            )
        )
    if h.width * h.height > max_pixels:
        out.append(
            Problem(
                "image.too_large",
                f"{name} claims {h.width}x{h.height} = {h.width * h.height} pixels, above the "
                f"limit of {max_pixels} (possible decompression bomb); not decoded",
                field="image_size",
                expected=f"<= {max_pixels} pixels",
                actual=f"{h.width}x{h.height}",
            )
        )
        return out
    if not h.is_rgb8:
        s = "s" * (h.channels != 1)
        out.append(
            Problem(
                "image.channels",
                f"{name} is {h.describe_mode} ({h.channels} channel{s}, {h.bits}-bit); "
                "training needs 8-bit RGB (3 channels)",
                field="image_size.depth",
                expected="RGB, 3 channels, 8-bit",
                actual=f"{h.describe_mode}, {h.channels} channel{s}",
            )
        )
    if not has_end_marker(h.format, data):
        marker = "FFD9 (EOI)" if h.format == "JPEG" else "IEND"
        out.append(
            Problem(
                "image.truncated",
                f"{name} has no {marker} end marker: the file is truncated "
                "(OpenCV/MXNet would decode it silently with missing pixels)",
                expected=f"{marker} at the end",
                actual=bytes(data[-8:]).hex(),
            )
        )
    return out


def check_image(
    data: bytes | memoryview, name: str, size: tuple[int, int] | None, where: str,
    max_pixels: int = MAX_PIXELS, *, rules: bool = True,
) -> Header:  # fmt: skip
    """Refuse an image that breaks a rule (the first one, as :class:`GateError`) or whose
    raw size differs from ``size`` (``image.size_mismatch``, named after ``where``).
    ``rules=False`` (already validated) only reads the header and compares the size."""
    header = read_header(data, name, fast_png=True)
    problems = header_problems(header, data, name, max_pixels) if rules else []
    if problems:
        raise problems[0].error()
    if size is not None and (header.width, header.height) != size:
        if rules and header.orientation in (5, 6, 7, 8) and (header.height, header.width) == size:
            raise GateError(
                "image.exif_orientation",
                f"{where}: image_size {size[0]}x{size[1]} matches {name} only after its EXIF "
                f"orientation {header.orientation}; training decodes the raw "
                f"{header.width}x{header.height} pixels, so the boxes would not line up",
            )
        raise GateError(
            "image.size_mismatch",
            f"{where}: image_size says {size[0]}x{size[1]} but {name} is "
            f"{header.width}x{header.height}",
        )
    return header
