"""Pascal VOC XML -> SageMaker image+JSON layout.

Sources: a VOCdevkit-style folder (``Annotations/``, ``JPEGImages/``, optionally
``ImageSets/Main/{train,val}.txt``) or any folder holding VOC XML files and their images
(e.g. ``annotations/`` + ``images/``). The split comes from ``ImageSets/Main`` when both
``train.txt`` and ``val.txt`` exist, else from a seeded shuffle (``val_fraction``, ``seed``).

Coordinates: VOC boxes are 1-based inclusive pixel indices, so ``left = xmin - 1``,
``top = ymin - 1``, ``right = xmax``, ``bottom = ymax`` (the box covers pixels xmin..xmax).
Tools that write 0-based values produce ``xmin = 0``; such values are kept as they are
instead of becoming -1. Image sizes and channel counts come from the image headers (XML
``size`` is often wrong); disagreements are counted in the summary. Non-RGB images are
imported unchanged: validation reports them (or converts them with ``--convert-to-rgb``).

Refused with one line naming the XML and the object: a missing or non-numeric coordinate
(never a NaN in the output). A box with ``xmax <= xmin`` or ``ymax <= ymin`` has no area in
some datasets' own convention: it is counted as a warning in the summary, and boxes below
``min_box_size`` pixels are dropped with a warning. Every file read (XML, image, ImageSets)
must be a regular file inside SRC: a symlink leaving it is refused, never followed.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .. import storage
from ..annotations import Box
from ..gate.paths import Confined, read_resolved
from .common import (
    IMAGE_SUFFIXES,
    BoxFilter,
    ImportedImage,
    ImportReport,
    check_channels,
    check_output,
    content_key,
    describe,
    output_dir,
    regular_file,
    split,
    write_dataset,
)


@dataclass
class VocObject:
    name: str
    xmin: float
    ymin: float
    xmax: float
    ymax: float
    difficult: bool


@dataclass
class VocRecord:
    xml: Path
    filename: str | None
    size: tuple[int, int, int] | None
    objects: list[VocObject] = field(default_factory=list)


def _text(node: ET.Element | None, tag: str) -> str | None:
    child = node.find(tag) if node is not None else None
    return child.text.strip() if child is not None and child.text else None


def parse_xml(path: Path, raw: bytes | None = None) -> VocRecord:
    """Read one VOC annotation file (or its ``raw`` bytes); raises ValueError naming the
    file on malformed XML and on an object with a missing or non-numeric coordinate."""
    try:
        root = ET.fromstring(path.read_bytes() if raw is None else raw)  # noqa: S314  expat >= 2.4.1 caps entity amplification; no external entities
    except ET.ParseError as exc:
        raise ValueError(f"{path}: not valid XML: {exc}") from None
    size = None
    node = root.find("size")
    if node is not None:
        try:
            size = tuple(int(float(_text(node, k) or 0)) for k in ("width", "height", "depth"))
        except ValueError:
            size = None
    rec = VocRecord(path, _text(root, "filename"), size)
    for i, obj in enumerate(root.findall("object")):
        name = _text(obj, "name")
        box = obj.find("bndbox")
        if not name or box is None:
            raise ValueError(f"{path}: object {i} has no name or no bndbox")
        coords = []
        for k in ("xmin", "ymin", "xmax", "ymax"):
            text = _text(box, k)
            if text is None:
                raise ValueError(f"{path}: object {i} ({name}): bndbox has no <{k}>")
            try:
                value = float(text)
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                raise ValueError(f"{path}: object {i} ({name}): <{k}> is {text!r}, not a number")
            coords.append(value)
        difficult = (_text(obj, "difficult") or "0") not in ("0", "false", "False")
        rec.objects.append(VocObject(name, *coords, difficult))
    return rec


def _edges(vmin: float, vmax: float) -> tuple[float, float]:
    """(start, length) in 0-based continuous pixels from 1-based inclusive VOC indices."""
    start = vmin - 1 if vmin >= 1 else vmin
    return start, vmax - start


def _find_layout(src: Path) -> tuple[list[Path], dict[str, Path], dict[str, Path]]:
    """The XML files and the images (by name and by stem), each a regular file inside
    ``src`` (:class:`~pipeline_lib.gate.rules.GateError` otherwise)."""
    folder = Confined(src, f"{src}/")
    ann_dir = src / "Annotations"
    xmls = [
        regular_file(folder, p, str(p))
        for p in sorted((ann_dir if ann_dir.is_dir() else src).rglob("*.xml"))
        if not p.is_dir()
    ]
    by_name: dict[str, Path] = {}
    by_stem: dict[str, Path] = {}
    img_root = src / "JPEGImages" if (src / "JPEGImages").is_dir() else src
    for p in sorted(img_root.rglob("*")):
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir():
            real = regular_file(folder, p, str(p))
            by_name.setdefault(p.name, real)
            by_stem.setdefault(p.stem, real)
    return xmls, by_name, by_stem


def _image_for(rec: VocRecord, by_name: dict, by_stem: dict) -> Path | None:
    return by_name.get(rec.filename or "") or by_stem.get(rec.xml.stem)


def _imageset_split(src: Path) -> dict[str, str] | None:
    main = src / "ImageSets" / "Main"
    train, val = main / "train.txt", main / "val.txt"
    if not (train.is_file() and val.is_file()):
        return None
    out: dict[str, str] = {}
    folder = Confined(src, f"{src}/")
    for path, channel in ((train, "train"), (val, "validation")):
        real = regular_file(folder, path, str(path))
        for line in (
            read_resolved(str(real), path.name, str(path)).decode("utf-8", "replace").split("\n")
        ):
            if line.strip():
                out[line.split()[0]] = channel
    return out


def import_voc(
    src: str,
    out: str,
    classes: list[str] | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    difficult: str = "keep",
    min_box_size: float = 1.0,
    overwrite: bool = False,
) -> str:
    """Import a Pascal VOC folder into the image+JSON layout; returns a summary line.
    An existing ``out`` is refused unless it is an earlier import and ``overwrite``."""
    check_output(out, overwrite)
    if difficult not in ("keep", "drop"):
        raise ValueError(f"difficult must be 'keep' or 'drop': {difficult!r}")
    with storage.local_dir(src) as root:
        if not root.is_dir():
            raise FileNotFoundError(f"{src}: no such folder")
        xmls, by_name, by_stem = _find_layout(root)
        if not xmls:
            raise FileNotFoundError(f"{src}: no VOC .xml annotation files found")
        boxes = BoxFilter(min_box_size)
        records = [parse_xml(p, read_resolved(str(p), p.name, str(p))) for p in xmls]
        names = sorted({o.name for r in records for o in r.objects})
        if classes is not None:
            if len(set(classes)) != len(classes) or not classes:
                raise ValueError(f"classes must be distinct and non-empty: {classes}")
            class_ids = {c: i for i, c in enumerate(classes)}
        else:
            class_ids = {c: i for i, c in enumerate(names)}
        sets = _imageset_split(root)
        val_ids: set[str] = set()
        if sets is None:
            paths = {r.xml.stem: _image_for(r, by_name, by_stem) for r in records}
            paths = {k: p for k, p in paths.items() if p is not None}  # split what is there
            groups = {k: content_key(p) for k, p in paths.items()}
            val_ids = split(list(paths), val_fraction, seed, groups)

        images: list[ImportedImage] = []
        missing: list[str] = []
        not_in_sets: list[str] = []
        dropped_class: Counter[str] = Counter()
        dropped_difficult = marked_difficult = zero_based = 0
        degenerate: list[str] = []
        report = ImportReport("VOC", "XML")
        for rec in records:
            img_path = _image_for(rec, by_name, by_stem)
            if img_path is None:
                missing.append(rec.xml.name)
                continue
            if sets is not None:
                channel = sets.get(rec.xml.stem)
                if channel is None:
                    not_in_sets.append(rec.xml.stem)
                    continue
            else:
                channel = "validation" if rec.xml.stem in val_ids else "train"
            claimed = rec.size[:2] if rec.size is not None else None
            width, height, depth = report.inspect(img_path, claimed)
            item = ImportedImage(img_path, channel, width, height, depth)
            for k, obj in enumerate(rec.objects):
                if obj.name not in class_ids:
                    dropped_class[obj.name] += 1
                    continue
                if obj.difficult and difficult == "drop":
                    dropped_difficult += 1
                    continue
                where = f"{rec.xml.name} object {k} ({obj.name})"
                if obj.xmax <= obj.xmin or obj.ymax <= obj.ymin:
                    degenerate.append(where)
                zero_based += obj.xmin < 1 or obj.ymin < 1
                left, w = _edges(obj.xmin, obj.xmax)
                top, h = _edges(obj.ymin, obj.ymax)
                box = Box(class_ids[obj.name], left, top, w, h)
                if not boxes.keep(box, where, (width, height)):
                    continue
                extra = {"difficult": 1} if obj.difficult else {}
                marked_difficult += obj.difficult
                item.boxes.append((box, extra))
            images.append(item)
        categories = {i: c for c, i in class_ids.items()}
        expected = ("train", "validation") if sets is not None or val_fraction > 0 else ("train",)
        check_channels(images, expected, src, missing)
        with output_dir(out, {i.channel for i in images}, overwrite) as folders:
            write_dataset(folders, images, categories)

    split_how = (
        "ImageSets/Main train/val"
        if sets is not None
        else f"random by content, val_fraction={val_fraction}, seed={seed}"
    )
    notes = [
        f"difficult: {difficult} ({marked_difficult} boxes marked 'difficult': 1, "
        f"{dropped_difficult} dropped)",
    ]
    if dropped_class:
        notes.append(
            f"{sum(dropped_class.values())} objects of classes not in --classes skipped: "
            + ", ".join(f"{k} ({v})" for k, v in sorted(dropped_class.items()))
        )
    if missing:
        notes.append(
            f"warning: {len(missing)} annotations without an image skipped: {describe(missing)}"
        )
    if not_in_sets:
        notes.append(f"{len(not_in_sets)} images in neither train.txt nor val.txt skipped")
    if zero_based:
        notes.append(f"{zero_based} boxes with a 0 coordinate kept as 0-based")
    if degenerate:
        notes.append(
            f"warning: {len(degenerate)} boxes with xmax <= xmin or ymax <= ymin (no area in "
            f"their own convention; 1 px wide at most here): {describe(degenerate)}"
        )
    notes += boxes.notes()
    classes_note = ": " + ", ".join(f"{i} {c}" for i, c in sorted(categories.items()))
    return report.summary(
        images,
        src=src,
        out=out,
        split_how=split_how,
        num_classes=len(categories),
        classes_note=classes_note,
        notes=notes,
    )
