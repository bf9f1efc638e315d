"""``--convert-to-rgb``: RGB copies of non-RGB images, written beside the report, never in place.

Behaviour (image+JSON datasets):

* The input dataset is never modified. A complete, corrected copy of the dataset is built in
  ``convert_dir`` (default ``<report_dir>/converted``): every image that is not 8-bit RGB
  (grayscale, LA, RGBA, CMYK, palette, 1-bit, 16-bit) is re-encoded as RGB in its original
  format (JPEG quality 95, or PNG), its JSON gets ``depth: 3``; all other files are hard-linked
  (copied when a link is impossible), so the copy costs little disk.
* Alpha is dropped (as OpenCV's colour decode does), 16-bit samples are scaled to 8-bit,
  1-bit and palette images are expanded, CMYK is converted by Pillow, EXIF is not carried over
  (the raw pixel grid is kept, which is what training decodes).
* Each converted image is still reported, as a warning naming the copy, so the report says
  exactly what changed. Train from ``convert_dir``, not from the original folder.
* Images that cannot be decoded, are truncated or too large are not converted: those errors
  stay errors.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from .images import ImageInfo

_SIXTEEN_BIT_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")


def to_rgb(data: bytes) -> Image.Image:
    """Decode and convert any Pillow-readable image to 8-bit RGB."""
    im = Image.open(io.BytesIO(data))
    im.load()
    if im.mode in _SIXTEEN_BIT_MODES:
        arr = np.asarray(im).astype(np.uint32)
        arr = np.clip(arr >> 8 if arr.max() > 255 else arr, 0, 255).astype(np.uint8)
        im = Image.fromarray(arr)
    elif im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    return im.convert("RGB")


def write_rgb_copy(data: bytes, info: ImageInfo, dest: Path) -> None:
    """Write an RGB copy of the image bytes to ``dest`` (same format as the source)."""
    rgb = to_rgb(data)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part")
    if info.format == "JPEG":
        rgb.save(tmp, format="JPEG", quality=95)
    else:
        rgb.save(tmp, format="PNG")
    os.replace(tmp, dest)


def write_json_copy(ann: dict, dest: Path) -> None:
    """Write the annotation with ``depth: 3``."""
    ann = dict(ann)
    size = ann.get("image_size")
    if isinstance(size, list) and size and isinstance(size[0], dict):
        ann["image_size"] = [{**size[0], "depth": 3}, *size[1:]]
    elif isinstance(size, dict):
        ann["image_size"] = {**size, "depth": 3}
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(ann, indent=1) + "\n", encoding="utf-8")


def link_or_copy(src: Path, dest: Path, *, link: bool = True) -> None:
    """Hard-link ``src`` to ``dest`` (copy across file systems, or when not ``link``);
    replaces ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists() or dest.is_symlink():
        dest.unlink()
    try:
        if not link:
            raise OSError("copy asked for")
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)
