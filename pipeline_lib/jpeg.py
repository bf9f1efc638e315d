"""A minimal JPEG header reader: size, components, precision and EXIF orientation.

It walks the marker segments up to the frame header (SOFn) and reads the orientation tag
from an ``Exif`` APP1 segment, without building any decoder state; this is several times
faster than ``PIL.Image.open``, which also parses quantisation and Huffman tables. Anything
unexpected returns None and the caller falls back to Pillow, which then decides.
"""

from __future__ import annotations

from dataclasses import dataclass

_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_STANDALONE = {0x01, *range(0xD0, 0xD9)}  # TEM, RSTn, SOI
_MODES = {1: "L", 3: "RGB", 4: "CMYK"}
_ORIENTATION = 0x0112


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
