"""Validation of SageMaker augmented manifests (JSON Lines).

Each line: ``{"source-ref": <image URI or path>, "<label attr>": {"image_size": [...],
"annotations": [...]}, "<label attr>-metadata": {"class-map": {"0": "name"}, ...}}``.
The attributes named in ``ValidationOptions.manifest_attributes`` must all be present and in
that order (SageMaker's ``AttributeNames`` order decides how records are read), the first
being ``source-ref``. Local image paths (relative or absolute) must resolve inside the
manifest's folder and be regular files (the gate: :mod:`pipeline_lib.gate.paths`); s3:// URIs
are fetched. Video-frame manifests (sequence files, ``frames``, a ``video`` task type) are
refused with their own rule: this algorithm trains on still images only.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

from .. import storage
from ..annotations import DuplicateKeyError, loads_strict
from ..gate.paths import Confined, read_resolved
from ..gate.rules import GateError
from .dataset import Aggregator, ItemResult
from .images import check_against_annotation, inspect_image
from .options import ValidationOptions
from .parallel import pmap, worker_state
from .records import check_record
from .report import Finding, finding

SOURCE_REF = "source-ref"


def _video(line: Mapping, attr: str) -> str | None:
    """Why the line looks like a video-frame manifest, or None."""
    meta = line.get(f"{attr}-metadata")
    if isinstance(meta, Mapping) and "video" in str(meta.get("type", "")).lower():
        return f"{attr}-metadata.type is {meta.get('type')!r}"
    label = line.get(attr)
    if isinstance(label, Mapping) and ("frames" in label or "tracking-annotations" in label):
        return f"{attr} holds per-frame annotations"
    ref = line.get(SOURCE_REF)
    if isinstance(ref, str) and ref.lower().endswith(".json"):
        return f"source-ref {ref!r} is a frame-sequence file"
    if "frame-ref" in line or "source-ref-frames" in line:
        return "the line references video frames"
    return None


def _class_map(meta: object, src: str, rec: str, attr: str, out: list[Finding]):
    if meta is None:
        return None
    if not isinstance(meta, Mapping):
        out.append(
            finding(
                "manifest.class_map",
                src,
                f"{src} {rec}: {attr}-metadata is not an object",
                record=rec,
                field=f"{attr}-metadata",
                expected="an object",
                actual=type(meta).__name__,
            )
        )
        return None
    cmap = meta.get("class-map")
    if cmap is None:
        return None
    if not isinstance(cmap, Mapping):
        out.append(
            finding(
                "manifest.class_map",
                src,
                f"{src} {rec}: class-map is not an object",
                record=rec,
                field=f"{attr}-metadata.class-map",
                expected='{"0": "name", ...}',
                actual=cmap,
            )
        )
        return None
    cats: dict[int, str] = {}
    for key, name in cmap.items():
        if not (isinstance(key, str) and key.isdigit()) or not isinstance(name, str) or not name:
            out.append(
                finding(
                    "manifest.class_map",
                    src,
                    f"{src} {rec}: class-map entry {key!r}: {name!r} is not 'id': 'name'",
                    record=rec,
                    field=f"{attr}-metadata.class-map.{key}",
                    expected="a non-negative integer key and a name",
                    actual=f"{key!r}: {name!r}",
                )
            )
            continue
        cats[int(key)] = name
    return cats


def check_line(item: tuple[int, str]) -> ItemResult:
    """Check one manifest line and its image (runs in a worker process)."""
    lineno, text = item
    state = worker_state()
    opts: ValidationOptions = state["options"]
    src: str = state["name"]
    base: str = state["base"]
    rec = f"line {lineno}"
    result = ItemResult("manifest", src, record=rec)
    out = result.findings
    try:
        line = loads_strict(text)
    except DuplicateKeyError as exc:
        out.append(
            finding(
                "json.duplicate_key",
                src,
                f"{src} {rec}: key {exc.key!r} appears twice in one object "
                "(JSON readers would silently keep the last)",
                record=rec,
                field=exc.key,
                expected="each key once in an object",
                actual=f"{exc.key!r} twice",
            )
        )
        return result
    except (ValueError, RecursionError) as exc:  # also 4300+ digits, nesting
        why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        out.append(
            finding(
                "manifest.malformed_line",
                src,
                f"{src} {rec} is not valid JSON: {why}",
                record=rec,
                expected="one JSON object per line",
                actual=str(exc),
            )
        )
        return result
    if not isinstance(line, Mapping):
        out.append(
            finding(
                "manifest.malformed_line",
                src,
                f"{src} {rec} is a JSON {type(line).__name__}, not an object",
                record=rec,
                expected="a JSON object",
                actual=type(line).__name__,
            )
        )
        return result
    attrs = opts.manifest_attributes
    attr = opts.label_attribute
    why = _video(line, attr)
    if why:
        out.append(
            finding(
                "manifest.video",
                src,
                f"{src} {rec}: video-frame manifests are not supported ({why}); "
                "export the frames as images with per-image labels",
                record=rec,
                expected="an image object-detection manifest",
                actual=why,
            )
        )
        return result
    keys = list(line)
    present = [a for a in attrs if a in line]
    for a in attrs:
        if a not in line:
            rule = "manifest.source_ref" if a == SOURCE_REF else "manifest.label_attribute"
            out.append(
                finding(
                    rule,
                    src,
                    f"{src} {rec}: attribute {a!r} is missing (keys: {', '.join(keys)})",
                    record=rec,
                    field=a,
                    expected=f"attributes {list(attrs)} in this order",
                    actual=keys,
                )
            )
    order = [k for k in keys if k in attrs]
    if order != present:
        out.append(
            finding(
                "manifest.label_attribute",
                src,
                f"{src} {rec}: attributes appear as {order}, expected the order {list(attrs)}",
                record=rec,
                expected=list(attrs),
                actual=order,
            )
        )
    ref = line.get(attrs[0])
    if attrs[0] in line and (not isinstance(ref, str) or not ref):
        out.append(
            finding(
                "manifest.source_ref",
                src,
                f"{src} {rec}: {attrs[0]} should be an image URI or path",
                record=rec,
                field=attrs[0],
                expected="a non-empty string",
                actual=ref,
            )
        )
        ref = None
    label = line.get(attr)
    cats = _class_map(line.get(f"{attr}-metadata"), src, rec, attr, out)
    parsed = None
    if attr in line:
        found, parsed = check_record(
            label,
            src,
            require_file=False,
            tolerance=opts.box_tolerance,
            empty_policy=opts.empty_policy,
            record=rec,
            field_prefix=f"{attr}.",
            min_box_size=opts.min_box_size,
        )
        out.extend(found)
        if parsed is not None and cats:
            parsed.categories = cats
    result.parsed = parsed
    if isinstance(ref, str) and ref:
        _check_image(result, ref, base, rec, opts)
    return result


def _check_image(result: ItemResult, ref: str, base: str, rec: str, opts) -> None:
    src = result.source
    result.image = ref
    try:
        if storage.is_s3(ref):
            data = storage.read_bytes(ref)
        else:
            folder = worker_state().get("folder")
            if folder is None:
                folder = worker_state()["folder"] = Confined(base, "the manifest's folder")
            path = folder.resolve_ref(ref, f"{src} {rec}")
            data = read_resolved(path, ref, f"{src} {rec}", SOURCE_REF)
    except GateError as exc:
        result.findings.append(
            finding(
                exc.rule,
                src,
                exc.detail,
                record=rec,
                field=SOURCE_REF,
                expected="a regular file inside the manifest's folder, or an s3:// URI",
                actual=ref,
            )
        )
        return
    except Exception as exc:
        result.findings.append(
            finding(
                "pairing.missing_image",
                src,
                f"{src} {rec}: source-ref {ref!r} cannot be read ({type(exc).__name__})",
                record=rec,
                field=SOURCE_REF,
                expected="an existing image",
                actual=ref,
            )
        )
        return
    info, found = inspect_image(data, ref, max_pixels=opts.max_pixels, full_decode=opts.full_decode)
    for f in found:  # image findings carry the manifest line too
        result.findings.append(
            finding(
                f.rule,
                f.file,
                f"{f.message} ({src} {rec})",
                record=rec,
                field=f.field,
                expected=f.expected,
                actual=f.actual,
                severity=f.severity,
            )
        )
    result.info = info
    p = result.parsed
    if info is not None and p is not None and p.width is not None and p.height is not None:
        for f in check_against_annotation(info, ref, src, p.width, p.height, p.depth):
            result.findings.append(
                finding(
                    f.rule,
                    f.file,
                    f.message,
                    record=rec,
                    field=f.field,
                    expected=f.expected,
                    actual=f.actual,
                    severity=f.severity,
                )
            )


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    with open(path, encoding="utf-8", errors="replace") as fh:
        for i, text in enumerate(fh, start=1):
            if text.strip():
                yield i, text


def validate_manifest(path: Path, opts: ValidationOptions, agg: Aggregator) -> None:
    """Check every line of a manifest, folding results into ``agg``."""
    if opts.manifest_attributes[0] != SOURCE_REF:
        raise ValueError(
            f"the first manifest attribute must be {SOURCE_REF!r} for object detection, "
            f"got {opts.manifest_attributes[0]!r}"
        )
    state = {"options": opts, "name": path.name, "base": str(path.parent)}
    seen: dict[str, str] = {}
    n = 0
    for result in pmap(check_line, _lines(path), opts.n_workers, state):
        n += 1
        agg.add(result)
        ref = result.image
        if ref is not None:
            if ref in seen:
                agg.findings.append(
                    finding(
                        "pairing.duplicate_reference",
                        result.source,
                        f"{result.source} {result.record}: {ref} already appears on {seen[ref]}",
                        record=result.record,
                        field=SOURCE_REF,
                        expected="each image once",
                        actual=ref,
                    )
                )
            else:
                seen[ref] = result.record or "an earlier line"
    if n == 0:
        agg.findings.append(
            finding(
                "manifest.malformed_line",
                path.name,
                f"{path.name} has no lines",
                expected="one JSON object per line",
                actual="empty file",
            )
        )
