"""Validation of the image+JSON layout (``train/ validation/ *_annotation/``).

The main process lists the four folders; worker processes each take one annotation JSON,
check it, open its image header and return an :class:`ItemResult`; the main process folds
the results in order and then checks pairing the other way (images without a JSON).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path, PurePosixPath

from ..annotations import CHANNELS, AnnotationError, annotation_channel, load_json
from ..gate.channel import Channel
from ..gate.rules import GateError
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


def _channel(root: str, channel: str) -> Channel:
    """The gated channel (folders resolved once per worker process)."""
    cache = worker_state().setdefault("channels", {})
    if channel not in cache:
        cache[channel] = Channel(root, channel)
    return cache[channel]


def _refused(exc: GateError, source: str, field: str, expected: str, actual: str):
    return finding(exc.rule, source, exc.detail, field=field, expected=expected, actual=actual)


def check_json_item(item: tuple[str, str]) -> ItemResult:
    """Check one annotation JSON and its image (runs in a worker process)."""
    channel, rel_json = item
    state = worker_state()
    root: str = state["root"]
    opts: ValidationOptions = state["options"]
    convert_dir: str | None = state.get("convert_dir")
    gated = _channel(root, channel)
    ann_dir = annotation_channel(channel)
    source = f"{ann_dir}/{rel_json}"
    result = ItemResult(channel, source)
    expected_json = f"a regular JSON file inside {ann_dir}/"
    try:
        raw = gated.annotations.read(rel_json, source, "annotation")
        data = load_json(raw, source)
    except GateError as exc:
        result.findings.append(_refused(exc, source, "annotation", expected_json, rel_json))
        return result
    except FileNotFoundError:  # a symlink inside the folder to nothing
        result.findings.append(
            finding(
                "json.malformed",
                source,
                f"{source} cannot be read (a dangling link)",
                expected=expected_json,
                actual="missing",
            )
        )
        return result
    except AnnotationError as exc:
        result.findings.append(
            finding(
                exc.rule,
                source,
                f"{source} is not valid JSON: {exc.actual}"
                if exc.rule == "json.malformed"
                else f"{source}: key {exc.field!r} appears twice in one object "
                "(JSON readers would silently keep the last)",
                field=None if exc.rule == "json.malformed" else exc.field,
                expected=exc.expected,
                actual=exc.actual,
            )
        )
        return result
    findings, parsed = check_record(
        data,
        source,
        tolerance=opts.box_tolerance,
        empty_policy=opts.empty_policy,
        min_box_size=opts.min_box_size,
    )
    result.findings.extend(findings)
    result.parsed = parsed
    if parsed is None or parsed.file is None:
        return result
    file = parsed.file
    expected_image = f"a relative path inside {channel}/"
    try:
        gated.images.lexical(file, source)
    except GateError as exc:
        result.findings.append(_refused(exc, source, "file", expected_image, file))
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
    try:
        img_bytes = gated.images.read(file, source)
    except GateError as exc:
        result.findings.append(_refused(exc, source, "file", expected_image, file))
        return result
    except FileNotFoundError:
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
            link_or_copy(Path(gated.images.resolve(file, source)), dest / channel / image_rel)
            link_or_copy(  # copied: readers refuse an annotation JSON with several links
                Path(gated.annotations.resolve(rel_json, source)),
                dest / ann_dir / rel_json,
                link=False,
            )
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
