"""What both importers share: the output record, the split, writing the SageMaker layout, and
the summary line.

Output layout (ready for ``odp validate``)::

    OUT/train/<image>                 copies of the source images (names kept)
    OUT/train_annotation/<stem>.json  {"file", "image_size", "annotations", "categories"}
    OUT/validation/...                and the same for validation

Extra per-box fields, which training ignores and the validator accepts:

* ``"difficult": 1`` on Pascal VOC boxes marked difficult (absent means 0), so evaluation can
  skip them the VOC way; ``--difficult drop`` leaves such boxes out instead.
* ``"iscrowd": 1`` on COCO crowd boxes kept with ``--crowd keep`` (absent means 0).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import stat
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .. import storage
from ..annotations import Box, annotation_channel, leaves_image
from ..gate.images import header_problems, read_header
from ..gate.paths import Confined, read_resolved
from ..gate.rules import GateError

IMPORT_WRITER = "odp import"

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff")


@dataclass
class ImportedImage:
    """One image to write: where it comes from, its channel, size and boxes."""

    src: Path
    channel: str
    width: int
    height: int
    depth: int
    boxes: list[tuple[Box, dict]] = field(default_factory=list)  # box, extra fields

    @property
    def file(self) -> str:
        return self.src.name


_REFUSED_ON_IMPORT = {"image.truncated", "image.too_large", "image.format"}


def image_header(path: Path) -> tuple[int, int, int]:
    """(width, height, channels) from the image header (no pixel decoding); an unreadable
    image is a :class:`GateError` naming it (``image.decode``)."""
    data = read_resolved(str(path), path.name, str(path))
    header = read_header(data, str(path))
    for problem in header_problems(header, data, str(path)):
        # A damaged or oversized image is refused here; a grayscale/CMYK one is imported
        # as it is, for `odp validate` to report and `--convert-to-rgb` to fix.
        if problem.rule in _REFUSED_ON_IMPORT:
            raise problem.error()
    return header.width, header.height, header.channels


def regular_file(folder: Confined, path: Path, source: str) -> Path:
    """``path`` (found by listing ``folder``) when it is a regular file inside the folder;
    else :class:`GateError` (an escaping symlink, a FIFO or device named like a file)."""
    if not folder.contains(path):
        raise GateError(
            "pairing.path_escape",
            f"{source}: {path.name} is a symlink that leaves the folder; files must be inside "
            f"{folder.label}",
        )
    real = os.path.realpath(path)
    if not stat.S_ISREG(os.stat(real).st_mode):
        raise GateError("path.not_regular_file", f"{source}: {path.name} is not a regular file")
    return Path(real)


def named_file(folder: Confined, name: str, source: str, field: str) -> Path | None:
    """The regular file an annotation names (``file_name``, ``<filename>``) inside
    ``folder``; None when it is not there. :class:`GateError` when the name leaves the
    folder or is not a regular file (the same message whether an outside target exists)."""
    real = folder.resolve(name, source, field)
    try:
        mode = os.stat(real).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not stat.S_ISREG(mode):
        raise GateError(
            "path.not_regular_file", f"{source}: {field} {name!r} is not a regular file"
        )
    return Path(real)


@dataclass
class BoxFilter:
    """Boxes narrower or lower than ``min_size`` pixels are dropped with a warning."""

    min_size: float = 1.0
    dropped: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.min_size >= 0:
            raise ValueError(f"min_box_size must be >= 0 pixels: {self.min_size!r}")

    def keep(self, box: Box, where: str, image: tuple[int, int] | None = None) -> bool:
        """Whether to keep ``box``; a box leaving its ``image`` (width, height) by more than
        :data:`IMPORT_TOLERANCE` pixels is refused (``box.out_of_bounds``), not written."""
        if image is not None and leaves_image(
            box.left, box.top, box.left + box.width, box.top + box.height, *image,
            IMPORT_TOLERANCE,
        ):  # fmt: skip
            raise GateError(
                "box.out_of_bounds",
                f"{where}: box left={box.left:g} top={box.top:g} width={box.width:g} "
                f"height={box.height:g} leaves the {image[0]}x{image[1]} image",
            )
        if box.width >= self.min_size and box.height >= self.min_size:
            return True
        self.dropped.append(f"{where} ({box.width:g}x{box.height:g})")
        return False

    def notes(self) -> list[str]:
        if not self.dropped:
            return []
        return [
            f"warning: {len(self.dropped)} boxes below the minimum box size {self.min_size:g} px "
            f"dropped: {describe(self.dropped)}"
        ]


#: Pixels a source box may overhang its image (VOC's 1-based inclusive corners; rounding).
IMPORT_TOLERANCE = 1.0


def check_channels(
    images: list[ImportedImage], expected: tuple[str, ...], src: str, missing: list[str]
) -> None:
    """Refuse an import that would write an empty dataset or leave out an expected channel
    (every image of it missing): said, not silently written."""
    why = f" ({len(missing)} annotated images not found: {describe(missing)})" if missing else ""
    if not images:
        raise ValueError(f"{src}: no image found for any annotation{why}")
    present = {i.channel for i in images}
    for channel in expected:
        if channel not in present:
            raise ValueError(f"{src}: the import would write no {channel} images{why}")


def split(
    ids: list[str], val_fraction: float, seed: int, groups: dict[str, str] | None = None
) -> set[str]:
    """The ids that go to validation: a seeded shuffle of the sorted ids.

    ``groups`` maps an id to a group key (its image's content hash): ids of one group always
    land in the same channel, so byte-identical images never straddle train and validation.
    At least one image lands in each channel when there are two or more groups and the
    fraction is strictly between 0 and 1.
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1): {val_fraction}")
    groups = groups or {}
    members: dict[str, list[str]] = {}
    for i in sorted(ids):
        members.setdefault(groups.get(i, i), []).append(i)
    keys = sorted(members, key=lambda k: members[k][0])
    random.Random(seed).shuffle(keys)  # noqa: S311  a seeded, reproducible split, not a secret
    target = int(round(len(ids) * val_fraction))
    if val_fraction > 0 and len(keys) >= 2:
        target = max(target, 1)
    out: set[str] = set()
    for key in keys[:-1] if len(keys) >= 2 else keys:
        if len(out) >= target:
            break
        out.update(members[key])
    return out


def content_key(path: Path) -> str:
    """A content hash of a file (groups byte-identical images in the split)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


CHANNELS = ("train", "validation")


def check_output(out: str, overwrite: bool = False, channels: tuple[str, ...] = CHANNELS) -> None:
    """Refuse, before any work, an ``out`` whose ``channels``' folders hold anything but an
    earlier import (``overwrite``), or a file at ``out``. Each channel folder is its own
    output: a COCO train file and a val file may be imported into one ``out`` in turn."""
    if not storage.is_s3(out) and os.path.lexists(out) and not os.path.isdir(out):
        raise storage.OutputExistsError(
            f"{out}: a file exists there and is never replaced by a dataset folder; expected "
            "a new folder"
        )
    folders = {name for ch in CHANNELS for name in (ch, annotation_channel(ch))}
    for uri in _entries(out):
        if uri.rstrip("/").rsplit("/", 1)[-1] not in folders:
            raise storage.OutputExistsError(
                f"{uri}: not written by {IMPORT_WRITER}; a dataset folder holds only its "
                "channel folders: expected a new folder, or an earlier import"
            )
    for channel in channels:
        for name in (channel, annotation_channel(channel)):
            storage.check_output(storage.join(out, name), overwrite=overwrite, writer=IMPORT_WRITER)


def _entries(out: str) -> list[str]:
    """The top-level entries of a local folder, or the first level of an S3 prefix."""
    if not storage.is_s3(out):
        try:
            return [os.path.join(out, name) for name in sorted(os.listdir(out))]
        except (FileNotFoundError, NotADirectoryError):
            return []
    prefix = out.rstrip("/") + "/"
    return sorted({prefix + f[len(prefix) :].split("/", 1)[0] for f in storage.list_files(out)})


@contextlib.contextmanager
def output_dir(out: str, channels: set[str], overwrite: bool = False) -> Iterator[dict[str, Path]]:
    """Temporary folders for the channel folders of ``out`` (local or s3://), keyed by name
    (``train``, ``train_annotation``, ...); each is published whole when the import
    completes (:func:`storage.atomic_dir`), none when it fails."""
    with contextlib.ExitStack() as stack:
        folders = {
            name: stack.enter_context(
                storage.atomic_dir(
                    storage.join(out, name), overwrite=overwrite, writer=IMPORT_WRITER
                )
            )
            for channel in sorted(channels)
            for name in (channel, annotation_channel(channel))
        }
        yield folders


def write_dataset(
    folders: dict[str, Path], images: list[ImportedImage], categories: dict[int, str]
) -> None:
    """Copy the images and write one annotation JSON per image into ``folders`` (channel
    folder name -> where it is being written, as :func:`output_dir` yields them)."""
    seen: dict[tuple[str, str], Path] = {}
    for img in images:
        key = (img.channel, img.src.stem)
        if key in seen and seen[key] != img.src:
            raise ValueError(
                f"two {img.channel} images share the base name {img.src.stem!r}: "
                f"{seen[key]} and {img.src}; rename one (the JSON is named after it)"
            )
        seen[key] = img.src
    cats = [{"class_id": k, "name": v} for k, v in sorted(categories.items())]
    for img in images:
        dest = folders[img.channel] / img.file
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(img.src, dest)
        ann = {
            "file": img.file,
            "image_size": [{"width": img.width, "height": img.height, "depth": img.depth}],
            "annotations": [{**box.to_json(), **extra} for box, extra in img.boxes],
            "categories": cats,
        }
        json_path = folders[annotation_channel(img.channel)] / f"{img.src.stem}.json"
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(ann, indent=1) + "\n", encoding="utf-8")


def describe(names: list[str], limit: int = 5) -> str:
    """``a, b, c and 4 more``."""
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


@dataclass
class ImportReport:
    """What both importers report: images whose header disagrees with the size the
    annotation claims, non-RGB images, and the summary line built from them.

    ``source`` names the format in the headline (``VOC``, ``COCO``), ``sizes_from`` where the
    claimed sizes come from (``XML``, ``COCO``).
    """

    source: str
    sizes_from: str
    size_disagrees: list[str] = field(default_factory=list)
    not_rgb: list[str] = field(default_factory=list)

    def inspect(self, path: Path, claimed: tuple | None) -> tuple[int, int, int]:
        """(width, height, channels) from the image header, noting a size that differs from
        ``claimed`` (``None``: nothing claimed) and a non-RGB image."""
        width, height, depth = image_header(path)
        if claimed is not None and claimed != (width, height):
            self.size_disagrees.append(path.name)
        if depth != 3:
            self.not_rgb.append(path.name)
        return width, height, depth

    def summary(
        self,
        images: list[ImportedImage],
        *,
        src: str,
        out: str,
        split_how: str,
        num_classes: int,
        classes_note: str,
        notes: list[str],
    ) -> str:
        """``imported N images ... ; <notes>; <size and channel notes>`` (one line)."""
        counts = Counter(i.channel for i in images)
        headline = (
            f"imported {len(images)} images from {self.source} {src} into {out} (train "
            f"{counts['train']}, validation {counts['validation']}; split: {split_how}), "
            f"{sum(len(i.boxes) for i in images)} boxes, {num_classes} classes" + classes_note
        )
        parts = [headline, *notes]
        if self.size_disagrees:
            parts.append(
                f"{len(self.size_disagrees)} {self.sizes_from} sizes differ from the image "
                f"(image used): {describe(self.size_disagrees)}"
            )
        if self.not_rgb:
            parts.append(
                f"{len(self.not_rgb)} images are not 3-channel (validation will flag them): "
                f"{describe(sorted(self.not_rgb))}"
            )
        return "; ".join(parts)
