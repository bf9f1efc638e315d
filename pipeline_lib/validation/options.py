"""Typed validation settings and the exception for input that cannot be validated at all."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..images import max_image_pixels

EMPTY_POLICIES = ("reject", "keep")


class UnusableInputError(FileNotFoundError):
    """The input is not a dataset at all (missing path, unknown layout): exit code 2."""


@dataclass(frozen=True)
class ValidationOptions:
    """What to check and how.

    * ``empty_policy``: ``reject`` flags images without boxes as errors; ``keep`` accepts
      them as negatives (they are counted either way).
    * ``box_tolerance``: pixels a box may overhang the image edge before it is an error.
    * ``convert_to_rgb``: write RGB copies of non-RGB images (grayscale, RGBA, CMYK,
      palette, 1-bit, 16-bit) into a separate folder (``convert_dir``, default
      ``<report_dir>/converted``); the input is never modified. See ``convert.py``.
    * ``workers``: processes for image inspection; 0 = one per core.
    * ``max_pixels``: larger images are refused as decompression bombs (default: the one
      limit every decoder applies, ``ODP_MAX_IMAGE_PIXELS``).
    * ``full_decode``: also decode every image fully, as the decoders do (slow; catches
      corrupt pixel data that header and end-marker checks cannot see, e.g. a JPEG cut short
      with an end marker appended: ``image.truncated``).
    * ``great_expectations``: run the GX suites over the flattened tables and write Data
      Docs into the report folder.
    * ``min_box_size``: boxes narrower or lower than this many pixels get a warning
      (``box.tiny``): degenerate boxes of the source, or too small to learn.
    * ``manifest_attributes``: for augmented manifests, the attribute names in order
      (SageMaker's ``AttributeNames``): the image reference, then the label attribute.
    """

    empty_policy: str = "reject"
    box_tolerance: float = 0.0
    convert_to_rgb: bool = False
    workers: int = 0
    max_pixels: int = field(default_factory=max_image_pixels)  # the decoders' limit too
    full_decode: bool = False
    great_expectations: bool = True
    convert_dir: str | None = None
    manifest_attributes: tuple[str, ...] = ("source-ref", "bounding-box")
    min_box_size: float = 1.0

    def __post_init__(self) -> None:
        if self.empty_policy not in EMPTY_POLICIES:
            raise ValueError(f"empty_policy must be one of {EMPTY_POLICIES}: {self.empty_policy!r}")
        if not self.box_tolerance >= 0:
            raise ValueError(f"box_tolerance must be >= 0 pixels: {self.box_tolerance!r}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0: {self.workers!r}")
        if self.max_pixels < 1:
            raise ValueError(f"max_pixels must be >= 1: {self.max_pixels!r}")
        if not self.min_box_size >= 0:
            raise ValueError(f"min_box_size must be >= 0 pixels: {self.min_box_size!r}")
        if len(self.manifest_attributes) < 2:
            raise ValueError("manifest_attributes needs the image reference and a label attribute")

    @property
    def n_workers(self) -> int:
        """Resolved worker count."""
        return self.workers or len(os.sched_getaffinity(0)) or 1

    @property
    def label_attribute(self) -> str:
        return self.manifest_attributes[1]
