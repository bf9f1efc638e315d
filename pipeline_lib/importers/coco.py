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
  ``annotations/instances_val2017.json`` + ``val2017/`` layout). A ``file_name`` must stay
  inside the folder it is found in (no absolute path, ``..`` or escaping symlink) and be a
  regular file: an import never copies a file from elsewhere.
* Refused with one line naming the file and the ids: duplicate keys in the JSON, two images
  sharing an id or a ``file_name``, duplicate category ids, an annotation without a numeric
  ``bbox`` of four finite values, an unreadable image. Boxes below ``min_box_size`` pixels
  are dropped with a warning in the summary.
"""

from __future__ import annotations

import contextlib
import re
from collections import Counter, defaultdict
from pathlib import Path

from .. import storage
from ..annotations import MAX_CLASS_ID, Box, DuplicateKeyError, is_finite_coord, loads_strict
from ..gate.paths import Confined
from .common import (
    CHANNELS,
    BoxFilter,
    ImportedImage,
    ImportReport,
    check_channels,
    check_output,
    content_key,
    describe,
    named_file,
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


def _find(dirs: list[Confined], file_name: str, source: str) -> Path | None:
    for d in dirs:
        path = named_file(d, file_name, source, "file_name")
        if path is not None:
            return path
    return None


def _groups(coco: dict, found: dict[str, Path]) -> dict[str, str]:
    """Image id -> content hash, so identical images stay in one channel."""
    return {str(im["id"]): content_key(found[str(im["id"])]) for im in coco["images"]
            if str(im["id"]) in found}  # fmt: skip


def _check(coco: dict, src: str) -> None:
    """The structure the import relies on, refused with one line naming the ids."""
    ids: dict[str, int] = {}
    names: dict[str, object] = {}
    for i, im in enumerate(coco["images"]):
        if (
            not isinstance(im, dict)
            or not isinstance(im.get("file_name"), str)
            or (not isinstance(im.get("id"), int | str) or isinstance(im.get("id"), bool))
        ):
            raise ValueError(f"{src}: images[{i}] needs an integer 'id' and a 'file_name'")
        if str(im["id"]) in ids:
            raise ValueError(f"{src}: images[{i}] repeats image id {im['id']!r}")
        ids[str(im["id"])] = i
        if im["file_name"] in names:
            raise ValueError(
                f"{src}: images {names[im['file_name']]!r} and {im['id']!r} share the "
                f"file_name {im['file_name']!r}; each image needs its own file"
            )
        names[im["file_name"]] = im["id"]
    cat_ids: set = set()
    for i, c in enumerate(coco["categories"]):
        if (
            not isinstance(c, dict)
            or not isinstance(c.get("name"), str)
            or (not isinstance(c.get("id"), int) or isinstance(c.get("id"), bool))
        ):
            raise ValueError(f"{src}: categories[{i}] needs an integer 'id' and a 'name'")
        if c["id"] in cat_ids:
            raise ValueError(
                f"{src}: category id {c['id']} is listed twice; boxes would be relabelled"
            )
        cat_ids.add(c["id"])
    if len(cat_ids) > MAX_CLASS_ID + 1:
        raise ValueError(f"{src}: {len(cat_ids)} categories, at most {MAX_CLASS_ID + 1}")
    for i, ann in enumerate(coco["annotations"]):
        what = f"{src}: annotations[{i}]" + (
            f" (id {ann.get('id')!r})" if isinstance(ann, dict) and "id" in ann else ""
        )
        if not isinstance(ann, dict) or not all(
            isinstance(ann.get(k), int | str) for k in ("image_id", "category_id")
        ):
            raise ValueError(f"{what} needs an 'image_id' and a 'category_id'")
        bbox = ann.get("bbox")
        if not (
            isinstance(bbox, list)
            and len(bbox) == 4
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in bbox)
            and all(is_finite_coord(v) for v in bbox)
        ):
            raise ValueError(
                f"{what}: 'bbox' must be [x, y, width, height] of 4 finite numbers, got "
                f"{str(bbox)[:80] if 'bbox' in ann else 'nothing'}"
            )


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
    min_box_size: float = 1.0,
    overwrite: bool = False,
) -> str:
    """Import a COCO instances file into the image+JSON layout; returns a summary line.
    An existing ``out`` is refused unless it is an earlier import and ``overwrite``."""
    fixed = channel or _channel_from_name(Path(str(src_json)).name)
    check_output(out, overwrite, (fixed,) if fixed else CHANNELS)
    if crowd not in ("drop", "keep"):
        raise ValueError(f"crowd must be 'drop' or 'keep': {crowd!r}")
    if channel not in (None, "train", "validation"):
        raise ValueError(f"channel must be train or validation: {channel!r}")
    with storage.local_file(src_json) as src:
        if not src.is_file():
            raise FileNotFoundError(f"{src_json}: no such file")
        try:
            coco = loads_strict(src.read_bytes())
        except DuplicateKeyError as exc:
            raise ValueError(f"{src_json}: key {exc.key!r} appears twice in one object") from None
        except RecursionError:
            raise ValueError(f"{src_json}: not valid JSON: nested too deeply") from None
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, 4300+ digits
            raise ValueError(f"{src_json}: not valid JSON: {exc}") from None
        for key in ("images", "annotations", "categories"):
            if not isinstance(coco, dict) or not isinstance(coco.get(key), list):
                raise ValueError(f"{src_json}: not a COCO instances file (no '{key}' list)")
        _check(coco, src_json)
        boxes = BoxFilter(min_box_size)
        with storage.local_dir(images_dir) if images_dir else contextlib.nullcontext() as img_root:
            summary = _import(
                coco, src, src_json, out, crowd, img_root, channel, val_fraction, seed, boxes,
                overwrite,
            )  # fmt: skip
    return summary


def _import(  # noqa: PLR0913  the import's options, passed through
    coco, src, src_json, out, crowd, img_root, channel, val_fraction, seed, boxes, overwrite
):
    cats = sorted(coco["categories"], key=lambda c: c["id"])
    remap = {c["id"]: i for i, c in enumerate(cats)}
    categories = {i: c["name"] for i, c in enumerate(cats)}
    by_image: dict[int, list[dict]] = defaultdict(list)
    for ann in coco["annotations"]:
        by_image[ann["image_id"]].append(ann)

    fixed = channel or _channel_from_name(src.name)
    dirs = [Confined(d, f"{d}/") for d in _image_dirs(src, img_root)]
    found: dict[str, Path] = {}
    for im in coco["images"]:
        path = _find(dirs, im["file_name"], f"{src_json}: image id {im['id']!r}")
        if path is not None:
            found[str(im["id"])] = path
    val_ids = (
        set()
        if fixed
        else split(
            [str(im["id"]) for im in coco["images"] if str(im["id"]) in found],  # what is there
            val_fraction,
            seed,
            _groups(coco, found),
        )
    )
    images: list[ImportedImage] = []
    missing: list[str] = []
    report = ImportReport("COCO", "COCO")
    crowd_count: Counter[str] = Counter()
    unknown_cat = 0
    for im in sorted(coco["images"], key=lambda i: (isinstance(i["id"], str), i["id"])):
        path = found.get(str(im["id"]))
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
            box = Box(remap[ann["category_id"]], x, y, w, h)
            where = f"{im['file_name']} annotation {ann.get('id', '?')}"
            if boxes.keep(box, where, (width, height)):
                item.boxes.append((box, extra))
        images.append(item)

    expected = (fixed,) if fixed else ("train", "validation") if val_fraction > 0 else ("train",)
    check_channels(images, expected, src_json, missing)
    with output_dir(out, {i.channel for i in images}, overwrite) as folders:
        write_dataset(folders, images, categories)

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
        notes.append(f"warning: {len(missing)} images not found, skipped: {describe(missing)}")
    notes += boxes.notes()
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
