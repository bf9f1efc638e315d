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
import io
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

from PIL import Image

from ..gate.images import (
    ACCEPTED_FORMATS,
    ORIENTATION_TAG,
    Header,
    content_digest,
    header_problems,
    read_header,
)
from ..gate.rules import GateError
from ..images import ImageTruncatedError, decode_bgr
from .report import Finding, finding

__all__ = [
    "ACCEPTED_FORMATS",
    "IMAGE_SUFFIXES",
    "ORIENTATION_TAG",
    "ImageInfo",
    "content_digest",
    "inspect_image",
]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff")
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
class ImageInfo(Header):
    """What the header says about one image file (the gate's :class:`Header`), with the
    content digest and size the dataset-level rules need."""

    digest: bytes = b""
    nbytes: int = 0

    @property
    def oriented_size(self) -> tuple[int, int]:
        """(width, height) after applying EXIF orientation (what cv2.imread returns)."""
        if self.orientation in (5, 6, 7, 8):
            return self.height, self.width
        return self.width, self.height


def inspect_image(
    data: bytes, name: str, *, max_pixels: int, full_decode: bool = False
) -> tuple[ImageInfo | None, list[Finding]]:
    """Inspect one encoded image. Returns its info (None when unreadable) and findings.

    Findings cover decodability, truncation, format, channels/bit depth and the pixel limit
    (the gate's image rules, :mod:`pipeline_lib.gate.images`); comparisons with the
    annotation are :func:`check_against_annotation`.
    """
    try:
        h = read_header(data, name)
    except GateError as exc:
        expected = "a JPEG or PNG file" if "no known format" in exc.detail else None
        actual = "0 bytes" if not data else data[:8].hex()
        return None, [
            finding(
                exc.rule,
                name,
                exc.detail,
                expected=expected or "a decodable JPEG or PNG",
                actual=actual,
            )  # fmt: skip
        ]
    info = ImageInfo(**vars(h), digest=content_digest(data), nbytes=len(data))
    problems = header_problems(h, data, name, max_pixels)
    out = [
        finding(p.rule, name, p.message, field=p.field, expected=p.expected, actual=p.actual)
        for p in problems
    ]
    if full_decode and not any(p.rule in ("image.too_large", "image.truncated") for p in problems):
        try:  # the decoders' own decode: a JPEG scan cut short is image.truncated (I002)
            if decode_bgr(data, name) is None:
                raise ValueError("OpenCV cannot decode it")
            with warnings.catch_warnings(), _strict_pillow():
                warnings.simplefilter("ignore")
                Image.open(io.BytesIO(data)).load()
        except ImageTruncatedError as exc:
            out.append(
                finding(
                    "image.truncated",
                    name,
                    str(exc).rsplit(" [", 1)[0],
                    expected="complete scan data",
                    actual="the scan ends early",
                )
            )
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
