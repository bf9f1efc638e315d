"""Validation of the image+JSON layout (``train/ validation/ *_annotation/``).

The main process lists the four folders; worker processes each take one annotation JSON,
check it, open its image header and return an :class:`ItemResult`; the main process folds
the results in order and then checks pairing the other way (images without a JSON).
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path, PurePosixPath

from ..annotations import CHANNELS, annotation_channel
from .convert import link_or_copy, write_json_copy, write_rgb_copy
from .dataset import Aggregator, ItemResult
from .images import IMAGE_SUFFIXES, check_against_annotation, inspect_image
from .options import ValidationOptions
from .parallel import pmap, worker_state
from .records import check_record
from .report import finding

ANNOTATION_SUFFIX = ".json"


def is_image_json_root(root: Path) -> bool:
    """Whether ``root`` looks like an image+JSON dataset (any of the four channel folders)."""
    return any(
        (root / d).is_dir() for ch in CHANNELS for d in (ch, annotation_channel(ch))
    ) and not any((root / ch).is_dir() and _has_rec(root / ch) for ch in CHANNELS)


def _has_rec(folder: Path) -> bool:
    return any(p.suffix == ".rec" for p in folder.iterdir())


def _list_files(folder: Path) -> list[str]:
    """Relative POSIX paths of the non-hidden files below ``folder``, sorted."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = Path(dirpath).relative_to(folder)
        out.extend((rel / f).as_posix() for f in filenames if not f.startswith("."))
    return sorted(out)


def _stem(rel: str) -> str:
    """``a/b/c.jpg`` -> ``c`` (fast ``PurePosixPath(rel).stem``)."""
    name = rel.rsplit("/", 1)[-1]
    i = name.rfind(".")
    return name[:i] if i > 0 else name


def _escapes(channel_root: str, file: str) -> str | None:
    """Why ``file`` leaves the channel root (absolute, ``..``, symlink), or None."""
    if file.startswith(("/", "\\")) or os.path.isabs(file) or (len(file) > 1 and file[1] == ":"):
        return "an absolute path"
    joined = os.path.normpath(os.path.join(channel_root, file))
    if not joined.startswith(channel_root + os.sep):
        return "a path outside the channel folder ('..')"
    if os.sep not in joined[len(channel_root) + 1 :] and not os.path.islink(joined):
        return None  # a plain file directly in the channel folder: nothing to resolve
    real_root = os.path.realpath(channel_root)
    real = os.path.realpath(joined)
    if not real.startswith(real_root + os.sep):
        return f"a symlink that leaves the channel folder (to {real})"
    return None


def check_json_item(item: tuple[str, str]) -> ItemResult:
    """Check one annotation JSON and its image (runs in a worker process)."""
    channel, rel_json = item
    state = worker_state()
    root: str = state["root"]
    opts: ValidationOptions = state["options"]
    convert_dir: str | None = state.get("convert_dir")
    ann_dir = annotation_channel(channel)
    source = f"{ann_dir}/{rel_json}"
    result = ItemResult(channel, source)
    try:
        with open(os.path.join(root, ann_dir, rel_json), "rb") as fh:
            raw = fh.read()
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        result.findings.append(
            finding(
                "json.malformed",
                source,
                f"{source} is not valid JSON: {exc}",
                expected="UTF-8 JSON",
                actual=str(exc),
            )
        )
        return result
    findings, parsed = check_record(
        data, source, tolerance=opts.box_tolerance, empty_policy=opts.empty_policy
    )
    result.findings.extend(findings)
    result.parsed = parsed
    if parsed is None or parsed.file is None:
        return result
    file = parsed.file
    channel_root = os.path.normpath(os.path.join(root, channel))
    why = _escapes(channel_root, file)
    if why:
        result.findings.append(
            finding(
                "pairing.path_escape",
                source,
                f"{source}: file {file!r} is {why}; images must be inside {channel}/",
                field="file",
                expected=f"a relative path inside {channel}/",
                actual=file,
            )
        )
        return result
    image_rel = os.path.normpath(file).replace(os.sep, "/")
    image_name = f"{channel}/{image_rel}"
    result.image = image_name
    json_stem = _stem(rel_json)
    if _stem(image_rel) != json_stem:
        result.findings.append(
            finding(
                "pairing.name_mismatch",
                source,
                f"{source} describes {image_name}: the JSON and the image must share a base name",
                field="file",
                expected=f"{json_stem}.<ext>",
                actual=file,
            )
        )
    image_path = os.path.join(channel_root, image_rel)
    try:
        with open(image_path, "rb") as fh:
            img_bytes = fh.read()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        result.findings.append(
            finding(
                "pairing.missing_image",
                source,
                f"{source}: file {file!r} does not exist in {channel}/",
                field="file",
                expected=f"an image in {channel}/",
                actual=file,
            )
        )
        return result
    info, img_findings = inspect_image(
        img_bytes, image_name, max_pixels=opts.max_pixels, full_decode=opts.full_decode
    )
    result.info = info
    if info is not None and parsed.width is not None and parsed.height is not None:
        img_findings += check_against_annotation(
            info, image_name, source, parsed.width, parsed.height, parsed.depth
        )
    if convert_dir is not None:
        img_findings = _convert(
            img_findings, img_bytes, info, data, Path(convert_dir), channel, image_rel, rel_json
        )
        result.converted = any(f.rule == "image.channels" for f in img_findings) and not any(
            f.rule == "image.channels" and f.severity == "error" for f in img_findings
        )
        if result.converted and info is not None:  # the tables describe the copy to train on
            result.info = replace(info, mode="RGB", channels=3, bits=8)
    result.findings.extend(img_findings)
    if convert_dir is not None:
        dest = Path(convert_dir)
        if not result.converted:
            link_or_copy(Path(image_path), dest / channel / image_rel)
            link_or_copy(Path(root, ann_dir, rel_json), dest / ann_dir / rel_json)
    return result


def _convert(findings, img_bytes, info, ann, dest: Path, channel, image_rel, rel_json):
    """Write an RGB copy for a channels finding; the finding becomes a warning naming it."""
    blocking = {"image.decode", "image.truncated", "image.too_large"}
    if info is None or any(f.rule in blocking for f in findings):
        return findings
    out = []
    for f in findings:
        if f.rule != "image.channels":
            out.append(f)
            continue
        copy = dest / channel / image_rel
        try:
            write_rgb_copy(img_bytes, info, copy)
            write_json_copy(ann, dest / annotation_channel(channel) / rel_json)
        except Exception as exc:  # a failed conversion leaves the error in place
            out.append(
                finding(
                    "image.channels",
                    f.file,
                    f"{f.message}; conversion to RGB failed: {exc}",
                    field=f.field,
                    expected=f.expected,
                    actual=f.actual,
                )
            )
            continue
        out.append(
            finding(
                "image.channels",
                f.file,
                f"{f.message}; converted: RGB copy written to {copy}",
                field=f.field,
                expected=f.expected,
                actual=f.actual,
                severity="warning",
            )
        )
    return out


def validate_image_json(
    root: Path, opts: ValidationOptions, agg: Aggregator, convert_dir: Path | None
) -> None:
    """Check every channel of an image+JSON dataset, folding results into ``agg``."""
    items: list[tuple[str, str]] = []
    images: dict[str, list[str]] = {}
    for channel in CHANNELS:
        ann_dir = annotation_channel(channel)
        img_folder, ann_folder = root / channel, root / ann_dir
        for folder, name in ((img_folder, channel), (ann_folder, ann_dir)):
            if not folder.is_dir():
                agg.findings.append(
                    finding(
                        "layout.missing_channel",
                        f"{name}/",
                        f"{name}/ is missing: image+JSON training needs train, validation, "
                        "train_annotation and validation_annotation",
                        expected=f"a {name}/ folder",
                        actual="missing",
                    )
                )
        listed = _list_files(img_folder) if img_folder.is_dir() else []
        images[channel] = []
        for rel in listed:
            if rel.lower().endswith(IMAGE_SUFFIXES):
                images[channel].append(rel)
            else:
                agg.findings.append(_stray(f"{channel}/{rel}", "an image"))
        for rel in _list_files(ann_folder) if ann_folder.is_dir() else []:
            if rel.endswith(ANNOTATION_SUFFIX):
                items.append((channel, rel))
            else:
                agg.findings.append(_stray(f"{ann_dir}/{rel}", "a .json annotation"))
    for channel in CHANNELS:
        n_json = sum(1 for ch, _ in items if ch == channel)
        if (root / annotation_channel(channel)).is_dir() and n_json == 0:
            agg.findings.append(
                finding(
                    "layout.missing_channel",
                    f"{annotation_channel(channel)}/",
                    f"{annotation_channel(channel)}/ holds no annotation JSON",
                    expected="at least one .json",
                    actual=0,
                )
            )

    state = {
        "root": str(root),
        "options": opts,
        "convert_dir": str(convert_dir) if convert_dir else None,
    }
    referenced: dict[str, str] = {}
    for result in pmap(check_json_item, items, opts.n_workers, state):
        agg.add(result)
        if result.image is not None:
            if result.image in referenced:
                agg.findings.append(
                    finding(
                        "pairing.duplicate_reference",
                        result.source,
                        f"{result.source} describes {result.image}, which "
                        f"{referenced[result.image]} already describes",
                        field="file",
                        expected="one JSON per image",
                        actual=result.image,
                    )
                )
            else:
                referenced[result.image] = result.source
    for channel in CHANNELS:
        for rel in images[channel]:
            name = f"{channel}/{rel}"
            if name not in referenced:
                stem = PurePosixPath(rel).with_suffix(ANNOTATION_SUFFIX).as_posix()
                agg.findings.append(
                    finding(
                        "pairing.missing_annotation",
                        name,
                        f"{name} has no annotation ({annotation_channel(channel)}/{stem} is "
                        "missing or describes another file)",
                        expected=f"{annotation_channel(channel)}/{stem}",
                        actual="missing",
                    )
                )


def _stray(name: str, expected: str) -> object:
    return finding(
        "layout.stray_file",
        name,
        f"{name} is not {expected}; it is ignored",
        expected=expected,
        actual=PurePosixPath(name).suffix or "no extension",
    )
