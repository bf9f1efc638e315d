"""Detection labels of RecordIO image records, parsed into numpy arrays.

Layout (the SageMaker/MXNet convention): ``[A, B, extra header..., (cls, xmin, ymin, xmax,
ymax, extra object values...) * N]`` with header width ``A >= 2``, object width ``B >= 5`` and
coordinates normalized to [0, 1]. We write ``A=2, B=5``; we read any width.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from .errors import RecordIOError

COORD_EPS = 1e-5  # overhang of normalized coordinates tolerated (float32 rounding) and clipped


@dataclass
class DetectionLabel:
    """A parsed detection label.

    ``header`` holds all header values (``header[0]`` = header width, ``header[1]`` = object
    width, then any extras such as image width/height); ``objects`` is ``(N, object_width)``
    float32 ``[cls, xmin, ymin, xmax, ymax, extra...]`` normalized, padding rows removed.
    """

    header: np.ndarray
    objects: np.ndarray

    @property
    def header_width(self) -> int:
        return int(self.header[0])

    @property
    def object_width(self) -> int:
        return int(self.header[1])

    def boxes(self, width: float | None = None, height: float | None = None) -> np.ndarray:
        """``(N, 5)`` float32 ``[xmin, ymin, xmax, ymax, cls]``; pixels when a size is given."""
        out = np.empty((len(self.objects), 5), dtype=np.float32)
        out[:, :4] = self.objects[:, 1:5]
        out[:, 4] = self.objects[:, 0]
        if width is not None and height is not None:
            out[:, (0, 2)] *= np.float32(width)
            out[:, (1, 3)] *= np.float32(height)
        return out


_MAX_OBJECT_WIDTH = 1 << 16


def unpack_label(label: np.ndarray | Iterable, where: str = "label", check: bool = True):
    """Parse a raw detection label of any header/object width into a :class:`DetectionLabel`.

    Rows whose class id is negative are padding (``label_pad_value=-1``) and are dropped. With
    ``check`` the coordinates must be finite, inside [0, 1] (a ``1e-5`` overhang is clipped) and
    describe boxes of positive size. Raises :class:`RecordIOError` naming ``where``.
    """
    raw = np.asarray(label, dtype=np.float32).ravel()
    if raw.size < 2:
        raise RecordIOError(
            f"{where}: not a detection label: {raw.size} label value(s), expected "
            f"[header_width, object_width, ...] (was the file written without --pack-label?)"
        )
    hw, ow = float(raw[0]), float(raw[1])
    bad_width = ow > _MAX_OBJECT_WIDTH  # no reader has objects this wide: a corrupt header
    if not (hw.is_integer() and ow.is_integer()) or hw < 2 or ow < 5 or hw > raw.size or bad_width:
        raise RecordIOError(
            f"{where}: bad label header: header_width={raw[0]:g}, object_width={raw[1]:g} "
            f"(need integers, header_width >= 2, object_width >= 5) in a label of "
            f"{raw.size} values"
        )
    hw_i, ow_i = int(hw), int(ow)
    if (raw.size - hw_i) % ow_i:
        raise RecordIOError(
            f"{where}: label width disagrees with its header: {raw.size} values, but "
            f"header_width={hw_i} + object_width={ow_i} x N objects cannot make {raw.size}"
        )
    objects = raw[hw_i:].reshape(-1, ow_i)
    if len(objects):
        objects = objects[objects[:, 0] >= 0]
    if check and len(objects):
        objects = _check_objects(objects, where)
    return DetectionLabel(raw[:hw_i].copy(), np.ascontiguousarray(objects))


def _check_objects(objects: np.ndarray, where: str) -> np.ndarray:
    """Every coordinate finite and within [0, 1] (vectorized over the objects), then clipped;
    boxes of positive size."""
    coords = objects[:, 1:5]
    bad = ~np.isfinite(objects[:, :5]).all(axis=1)
    bad |= ((coords < -COORD_EPS) | (coords > 1 + COORD_EPS)).any(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        hint = (
            " (pixel coordinates? RecordIO labels must be normalized)" if coords.max() > 1.5 else ""
        )
        raise RecordIOError(f"{where}: object {i} box {coords[i].tolist()} is outside [0, 1]{hint}")
    coords = np.clip(coords, 0.0, 1.0)
    degenerate = (coords[:, 2] <= coords[:, 0]) | (coords[:, 3] <= coords[:, 1])
    if degenerate.any():
        i = int(np.flatnonzero(degenerate)[0])
        raise RecordIOError(
            f"{where}: object {i} box {objects[i, 1:5].tolist()} has no positive width/height "
            f"(expected xmin < xmax and ymin < ymax)"
        )
    objects = objects.copy()
    objects[:, 1:5] = coords
    return objects
