"""Named defects to inject into a valid image+JSON dataset, each with the finding it must cause.

Used by the property tests and the acceptance check ("a dataset with 20 injected defects
reports all 20"), and handy for demos: ``inject(root, "grayscale", "train", 0)`` turns one
image grayscale and returns ``Expected("image.channels", "train/<name>.jpg")``.
Each defect touches one image (chosen by channel and index) and its JSON only.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from pipeline_lib.annotations import annotation_channel


@dataclass(frozen=True)
class Expected:
    """The finding a defect must produce: rule and file (dataset-relative)."""

    rule: str
    file: str


@dataclass
class _Target:
    root: Path
    channel: str
    json_path: Path
    ann: dict

    @property
    def json_name(self) -> str:
        return f"{annotation_channel(self.channel)}/{self.json_path.name}"

    @property
    def image_path(self) -> Path:
        return self.root / self.channel / self.ann["file"]

    @property
    def image_name(self) -> str:
        return f"{self.channel}/{self.ann['file']}"

    def save(self, text: str | None = None) -> None:
        self.json_path.write_text(text if text is not None else json.dumps(self.ann))


def _reencode(t: _Target, mode: str) -> None:
    im = Image.open(t.image_path)
    fmt = im.format
    im = im.convert(mode)
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    t.image_path.write_bytes(buf.getvalue())


def _png_bomb(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width x height`` (never decoded by the validator)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _box(t: _Target) -> dict:
    if not t.ann["annotations"]:
        raise ValueError(f"{t.json_name} has no box to alter")
    return t.ann["annotations"][0]


def _other_channel_target(t: _Target) -> _Target:
    other = "validation" if t.channel == "train" else "train"
    for path in _targets(t.root, other):
        try:
            target = _load(t.root, other, path)
        except ValueError:
            continue
        if target.image_path.is_file():
            return target
    raise ValueError(f"{t.root}: no intact {other} image to copy")


def _d_malformed_json(t: _Target) -> Expected:
    t.save(json.dumps(t.ann)[:-7])
    return Expected("json.malformed", t.json_name)


def _d_missing_field(t: _Target) -> Expected:
    del t.ann["image_size"]
    t.save()
    return Expected("json.schema", t.json_name)


def _d_wrong_type(t: _Target) -> Expected:
    _box(t)["class_id"] = "0"
    t.save()
    return Expected("json.schema", t.json_name)


def _d_unknown_field(t: _Target) -> Expected:
    t.ann["lable"] = "typo"
    t.save()
    return Expected("json.unknown_field", t.json_name)


def _d_missing_annotation(t: _Target) -> Expected:
    t.json_path.unlink()
    return Expected("pairing.missing_annotation", t.image_name)


def _d_missing_image(t: _Target) -> Expected:
    t.image_path.unlink()
    return Expected("pairing.missing_image", t.json_name)


def _d_path_escape(t: _Target) -> Expected:
    t.image_path.unlink()
    t.ann["file"] = f"../{t.ann['file']}"
    t.save()
    return Expected("pairing.path_escape", t.json_name)


def _d_name_mismatch(t: _Target) -> Expected:
    src = t.image_path
    t.ann["file"] = f"renamed_{src.name}"
    src.rename(src.with_name(t.ann["file"]))
    t.save()
    return Expected("pairing.name_mismatch", t.json_name)


def _d_grayscale(t: _Target) -> Expected:
    _reencode(t, "L")
    return Expected("image.channels", t.image_name)


def _d_rgba(t: _Target) -> Expected:
    im = Image.open(t.image_path).convert("RGBA")
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    t.image_path.write_bytes(buf.getvalue())
    return Expected("image.channels", t.image_name)


def _d_size_mismatch(t: _Target) -> Expected:
    t.ann["image_size"][0]["width"] += 7
    t.save()
    return Expected("image.size_mismatch", t.json_name)


def _d_truncated(t: _Target) -> Expected:
    data = t.image_path.read_bytes()
    t.image_path.write_bytes(data[: len(data) // 2])
    return Expected("image.truncated", t.image_name)


def _d_undecodable(t: _Target) -> Expected:
    t.image_path.write_bytes(b"this is not an image\n" * 10)
    return Expected("image.decode", t.image_name)


def _d_format(t: _Target) -> Expected:
    im = Image.open(t.image_path).convert("RGB")
    buf = io.BytesIO()
    im.save(buf, format="GIF")
    t.image_path.write_bytes(buf.getvalue())
    return Expected("image.format", t.image_name)


def _d_bomb(t: _Target) -> Expected:
    t.image_path.write_bytes(_png_bomb(40_000, 40_000))
    t.ann["image_size"][0].update(width=40_000, height=40_000)
    t.save()
    return Expected("image.too_large", t.image_name)


def _d_exif_rotated_annotation(t: _Target) -> Expected:
    im = Image.open(t.image_path).convert("RGB")
    if im.width == im.height:
        im = im.crop((0, 0, im.width, im.height - 1))
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    im.save(buf, format="JPEG", exif=exif.tobytes(), quality=90)
    t.image_path.write_bytes(buf.getvalue())
    t.ann["image_size"][0].update(width=im.height, height=im.width)
    t.ann["annotations"] = [
        {"class_id": b["class_id"], "left": 0, "top": 0, "width": 8, "height": 8}
        for b in t.ann["annotations"]
    ]
    t.save()
    return Expected("image.exif_orientation", t.json_name)


def _d_class_gap(t: _Target) -> Expected:
    _box(t)["class_id"] = 40
    t.save()
    return Expected("class.not_contiguous", t.json_name)


def _d_negative_id(t: _Target) -> Expected:
    _box(t)["class_id"] = -1
    t.save()
    return Expected("json.schema", t.json_name)


def _d_non_positive_box(t: _Target) -> Expected:
    _box(t)["width"] = -5
    t.save()
    return Expected("box.non_positive", t.json_name)


def _d_out_of_bounds(t: _Target) -> Expected:
    b = _box(t)
    b["left"] = t.ann["image_size"][0]["width"] - b["width"] / 2
    t.save()
    return Expected("box.out_of_bounds", t.json_name)


def _d_non_finite(t: _Target) -> Expected:
    _box(t)["top"] = float("nan")
    t.save(json.dumps(t.ann))  # json writes NaN, as some tools do
    return Expected("box.non_finite", t.json_name)


def _d_empty(t: _Target) -> Expected:
    t.ann["annotations"] = []
    t.save()
    return Expected("image.empty", t.json_name)


def _d_duplicate_box(t: _Target) -> Expected:
    t.ann["annotations"].append(dict(_box(t)))
    t.save()
    return Expected("box.duplicate", t.json_name)


def _d_category_rename(t: _Target) -> Expected:
    cats = t.ann.get("categories") or [{"class_id": 0, "name": "zero"}]
    cats[0] = {"class_id": cats[0]["class_id"], "name": cats[0]["name"] + "_renamed"}
    t.ann["categories"] = cats
    t.save()
    return Expected("class.categories_inconsistent", t.json_name)


def _d_train_val_overlap(t: _Target) -> Expected:
    other = _other_channel_target(t)
    data = other.image_path.read_bytes()
    t.image_path.unlink()
    t.ann["file"] = Path(t.ann["file"]).stem + other.image_path.suffix
    t.image_path.write_bytes(data)
    t.ann["image_size"] = [dict(other.ann["image_size"][0])]
    t.ann["annotations"] = [dict(b) for b in other.ann["annotations"]]
    t.save()
    names = sorted([t.image_name, other.image_name])
    return Expected("dataset.train_validation_overlap", names[1])


def _d_stray_file(t: _Target) -> Expected:
    (t.root / t.channel / "notes.txt").write_text("not an image\n")
    return Expected("layout.stray_file", f"{t.channel}/notes.txt")


DEFECTS: dict[str, Callable[[_Target], Expected]] = {
    name[3:]: fn for name, fn in sorted(globals().items()) if name.startswith("_d_")
}


def _targets(root: Path, channel: str) -> list[Path]:
    return sorted((root / annotation_channel(channel)).glob("*.json"))


def _load(root: Path, channel: str, path: Path) -> _Target:
    return _Target(root, channel, path, json.loads(path.read_text()))


def inject(root: str | Path, defect: str, channel: str = "train", index: int = 0) -> Expected:
    """Apply ``defect`` to the ``index``-th image of ``channel``; return the expected finding."""
    targets = _targets(Path(root), channel)
    if not targets:
        raise ValueError(f"{root}: no {channel} annotations to alter")
    return DEFECTS[defect](_load(Path(root), channel, targets[index % len(targets)]))
