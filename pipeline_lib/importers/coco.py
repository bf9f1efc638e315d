"""COCO instances JSON -> SageMaker image+JSON layout.

* Category ids (often non-contiguous, e.g. 1..90 with gaps) are remapped to 0..K-1 in
  ascending id order over *all* listed categories, so ``instances_train.json`` and
  ``instances_val.json`` of one dataset get the same mapping. The names go to ``categories``.
* Crowd boxes (``iscrowd: 1``): ``drop`` (default) leaves them out; ``keep`` writes them with
  an extra ``"iscrowd": 1`` field.
* ``bbox`` is ``[x, y, width, height]`` in 0-based pixels, which is SageMaker's
  left/top/width/height as is. Nothing is clipped or repaired: validation reports bad boxes.
* Channel: ``channel`` when given; else from the file name (``*val*`` -> validation,
  ``*train*`` -> train); else a seeded split (``val_fraction``, ``seed``). Importing the
  train and val files into the same OUT builds both channels.
* Images are looked for in ``images_dir``, else beside the JSON, in ``images/`` beside it,
  and in a folder named after the split next to an ``annotations/`` folder (COCO's own
  ``annotations/instances_val2017.json`` + ``val2017/`` layout).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections import Counter, defaultdict
from pathlib import Path

from .. import storage
from ..annotations import Box
from .common import (
    ImportedImage,
    ImportReport,
    content_key,
    describe,
    output_dir,
    split,
    write_dataset,
)


def _image_dirs(src: Path, images_dir: Path | None) -> list[Path]:
    if images_dir is not None:
        return [images_dir]
    cands = [src.parent, src.parent / "images"]
    m = re.search(r"(train|val|test)\d*", src.stem)
    if m:
        cands += [src.parent.parent / m.group(0), src.parent / m.group(0)]
    cands.append(src.parent.parent / "images")
    return [c for c in cands if c.is_dir()]


def _find(dirs: list[Path], file_name: str) -> Path | None:
    return next((d / file_name for d in dirs if (d / file_name).is_file()), None)


def _groups(coco: dict, dirs: list[Path]) -> dict[str, str]:
    """Image id -> content hash, so identical images stay in one channel."""
    out = {}
    for im in coco["images"]:
        path = _find(dirs, im["file_name"])
        if path is not None:
            out[str(im["id"])] = content_key(path)
    return out


def _channel_from_name(name: str) -> str | None:
    low = name.lower()
    if "val" in low:
        return "validation"
    if "train" in low:
        return "train"
    return None


def import_coco(
    src_json: str,
    out: str,
    crowd: str = "drop",
    images_dir: str | None = None,
    channel: str | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> str:
    """Import a COCO instances file into the image+JSON layout; returns a summary line."""
    if crowd not in ("drop", "keep"):
        raise ValueError(f"crowd must be 'drop' or 'keep': {crowd!r}")
    if channel not in (None, "train", "validation"):
        raise ValueError(f"channel must be train or validation: {channel!r}")
    with storage.local_file(src_json) as src:
        if not src.is_file():
            raise FileNotFoundError(f"{src_json}: no such file")
        try:
            coco = json.loads(src.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{src_json}: not valid JSON: {exc}") from exc
        for key in ("images", "annotations", "categories"):
            if not isinstance(coco.get(key), list):
                raise ValueError(f"{src_json}: not a COCO instances file (no '{key}' list)")
        with storage.local_dir(images_dir) if images_dir else contextlib.nullcontext() as img_root:
            summary = _import(
                coco, src, src_json, out, crowd, img_root, channel, val_fraction, seed
            )
    return summary


def _import(coco, src, src_json, out, crowd, img_root, channel, val_fraction, seed) -> str:
    cats = sorted(coco["categories"], key=lambda c: c["id"])
    remap = {c["id"]: i for i, c in enumerate(cats)}
    categories = {i: c["name"] for i, c in enumerate(cats)}
    by_image: dict[int, list[dict]] = defaultdict(list)
    for ann in coco["annotations"]:
        by_image[ann["image_id"]].append(ann)

    fixed = channel or _channel_from_name(src.name)
    dirs = _image_dirs(src, img_root)
    val_ids = (
        set()
        if fixed
        else split(
            [str(im["id"]) for im in coco["images"]], val_fraction, seed, _groups(coco, dirs)
        )
    )
    images: list[ImportedImage] = []
    missing: list[str] = []
    report = ImportReport("COCO", "COCO")
    crowd_count: Counter[str] = Counter()
    unknown_cat = 0
    for im in sorted(coco["images"], key=lambda i: i["id"]):
        path = _find(dirs, im["file_name"])
        if path is None:
            missing.append(im["file_name"])
            continue
        ch = fixed or ("validation" if str(im["id"]) in val_ids else "train")
        width, height, depth = report.inspect(path, (im.get("width"), im.get("height")))
        item = ImportedImage(path, ch, width, height, depth)
        for ann in sorted(by_image.get(im["id"], []), key=lambda a: a.get("id", 0)):
            if ann["category_id"] not in remap:
                unknown_cat += 1
                continue
            extra = {}
            if ann.get("iscrowd"):
                if crowd == "drop":
                    crowd_count["dropped"] += 1
                    continue
                crowd_count["kept"] += 1
                extra = {"iscrowd": 1}
            x, y, w, h = (float(v) for v in ann["bbox"])
            item.boxes.append((Box(remap[ann["category_id"]], x, y, w, h), extra))
        images.append(item)

    with output_dir(out) as dest:
        write_dataset(dest, images, categories)

    split_how = (
        f"channel {channel}"
        if channel
        else (f"from the file name ({fixed})" if fixed else f"random, val_fraction={val_fraction}")
    )
    gaps = [c["id"] for c in cats] != list(range(len(cats)))
    notes = [f"crowd: {crowd} ({crowd_count['dropped']} dropped, {crowd_count['kept']} kept)"]
    if unknown_cat:
        notes.append(f"{unknown_cat} annotations with an unlisted category_id skipped")
    if missing:
        notes.append(f"{len(missing)} images not found, skipped: {describe(missing)}")
    classes_note = " (category ids remapped to 0..K-1)" if gaps else ""
    return report.summary(
        images,
        src=src_json,
        out=out,
        split_how=split_how,
        num_classes=len(categories),
        classes_note=classes_note,
        notes=notes,
    )
