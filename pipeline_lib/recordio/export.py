"""RecordIO -> image+JSON: write a ``.rec`` (ours or foreign) back out as an image+JSON
channel, with pixel boxes that normalize back to the very same stored values."""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath

import numpy as np

from .. import storage
from ..annotations import Box, ImageAnnotation, annotation_channel, unique_name
from ..images import image_info
from ..progress import progress_bar
from .errors import RecordIOError
from .reader import RecordIODetection, is_file, lst_path_for, read_lst


def pixel_value(normalized: float, size: int) -> int | float:
    """Pixel coordinate of a float32 normalized value: the shortest decimal (an integer when
    possible) that normalizes back to the very same float32, so round trips are exact."""
    target = np.float32(normalized)
    exact = float(target) * size
    for digits in range(0, 7):
        candidate = round(exact, digits)
        if np.float32(candidate / size) == target:
            return int(candidate) if digits == 0 else candidate
    return exact


def recordio_to_dataset(
    rec_path: str | os.PathLike,
    out: str | os.PathLike,
    channel: str = "train",
    class_names: dict[int, str] | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> int:
    """Write a ``.rec`` (ours or foreign) as an image+JSON channel under ``out``.

    Image bytes are copied unchanged; names come from the ``.lst`` beside the ``.rec`` when
    there is one (else ``{key:06d}.<ext>``). Pixel boxes are exact inverses of the stored
    normalized values. The output folder appears only when complete. Returns the image count.
    """
    ds = RecordIODetection(rec_path)
    names: dict[int, str] = {}
    lst = lst_path_for(rec_path)
    if is_file(lst):
        names = {e.index: PurePosixPath(e.path).name for e in read_lst(lst)}
    bar = None
    if progress:
        bar = progress_bar(len(ds), "recordio -> json")
    used: set[str] = set()
    try:
        with storage.atomic_dir(out, overwrite=overwrite, writer="odp convert json") as tmp:
            img_dir = Path(tmp) / channel
            ann_dir = Path(tmp) / annotation_channel(channel)
            img_dir.mkdir(parents=True)
            ann_dir.mkdir(parents=True)
            for i in range(len(ds)):
                rec = ds.record(i)
                where = ds.where(i)
                try:
                    width, height, depth, ext = image_info(rec.image)
                except ValueError as exc:
                    raise RecordIOError(f"{where}: {exc}") from None
                key = int(ds.keys[i])
                name = names.get(key) or f"{key:06d}{ext}"
                name = unique_name(name, used)
                boxes = []
                for cls, x0, y0, x1, y1 in rec.label.objects[:, :5].tolist():
                    left, top = pixel_value(x0, width), pixel_value(y0, height)
                    right, bottom = pixel_value(x1, width), pixel_value(y1, height)
                    boxes.append(Box(int(cls), left, top, _sub(right, left), _sub(bottom, top)))
                ann = ImageAnnotation(name, width, height, depth, boxes, class_names)
                (img_dir / name).write_bytes(rec.image)
                (ann_dir / f"{Path(name).stem}.json").write_text(
                    json.dumps(ann.to_json(), indent=1) + "\n", encoding="utf-8"
                )
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return len(ds)


def _sub(a: float, b: float) -> int | float:
    d = a - b
    return int(d) if isinstance(a, int) and isinstance(b, int) else round(d, 9)
