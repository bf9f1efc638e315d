"""Checks of one annotation record (image+JSON file or a manifest line's label attribute).

Unlike :meth:`pipeline_lib.annotations.ImageAnnotation.from_json`, which stops at the first
problem, this walks the whole record and reports every problem it finds, with the field path.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..annotations import MAX_CLASS_ID, has_positive_size, is_finite_coord, leaves_image
from .report import Finding, finding

TOP_FIELDS = {"file", "image_size", "annotations", "categories"}
SIZE_FIELDS = {"width", "height", "depth"}
BOX_FIELDS = {"class_id", "left", "top", "width", "height"}
# Optional per-box fields written by our importers (and accepted without a warning):
# ``difficult`` (Pascal VOC, 0/1) and ``iscrowd`` (COCO, 0/1). The trainer ignores them.
EXTRA_BOX_FIELDS = {"difficult", "iscrowd"}
CATEGORY_FIELDS = {"class_id", "name"}


@dataclass
class ParsedRecord:
    """The usable part of a record, for dataset-level checks and the GX tables."""

    file: str | None
    width: int | None
    height: int | None
    depth: int | None
    # (class_id, left, top, width, height) of boxes whose fields are all well typed
    boxes: list[tuple[int, float, float, float, float]] = field(default_factory=list)
    categories: dict[int, str] | None = None
    n_boxes: int = 0  # boxes in the file, including malformed ones


def _is_int(v: object) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return True
    return isinstance(v, float) and math.isfinite(v) and v.is_integer()


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _unknown(obj: Mapping, known: set[str], source: str, where: str, record) -> list[Finding]:
    return [
        finding(
            "json.unknown_field",
            source,
            f"{source}: unknown field '{where}{k}' (ignored by training)",
            record=record,
            field=f"{where}{k}",
            expected=", ".join(sorted(known)),
            actual=k,
        )
        for k in obj
        if k not in known
    ]


def _schema(source: str, fld: str, expected: str, actual: object, record) -> Finding:
    shown = "missing" if actual is _MISSING else actual
    return finding(
        "json.schema",
        source,
        f"{source}: field '{fld}' should be {expected}, found {shown!r}",
        record=record,
        field=fld,
        expected=expected,
        actual=shown,
    )


_MISSING = object()


def _too_large(source: str, fld: str, cid: object, record) -> Finding:
    return finding(
        "class.id_too_large",
        source,
        f"{source}: {fld} is {cid}; class ids go up to {MAX_CLASS_ID} (at most "
        f"{MAX_CLASS_ID + 1} classes)",
        record=record,
        field=fld,
        expected=f"<= {MAX_CLASS_ID}",
        actual=cid,
    )


def check_record(
    data: object,
    source: str,
    *,
    require_file: bool = True,
    tolerance: float = 0.0,
    empty_policy: str = "reject",
    record: str | int | None = None,
    field_prefix: str = "",
    min_box_size: float = 1.0,
) -> tuple[list[Finding], ParsedRecord | None]:
    """Check one annotation object. Returns findings and what could be parsed (None if nothing).

    Class ids above :data:`MAX_CLASS_ID` are findings and never reach ``parsed`` (nothing
    downstream is sized by them); boxes below ``min_box_size`` pixels get a warning."""
    out: list[Finding] = []
    p = field_prefix
    if not isinstance(data, Mapping):
        out.append(_schema(source, p or "<root>", "a JSON object", type(data).__name__, record))
        return out, None
    known = TOP_FIELDS if require_file else TOP_FIELDS - {"file"}
    out += _unknown(data, known, source, p, record)

    file = data.get("file", _MISSING)
    if require_file and (not isinstance(file, str) or not file):
        out.append(_schema(source, f"{p}file", "a non-empty string", file, record))
        file = None
    elif not require_file:
        file = None

    width = height = depth = None
    size = data.get("image_size", _MISSING)
    if isinstance(size, list) and len(size) == 1:
        size = size[0]
    if not isinstance(size, Mapping):
        out.append(_schema(source, f"{p}image_size", "[{width, height, depth}]", size, record))
    else:
        out += _unknown(size, SIZE_FIELDS, source, f"{p}image_size.", record)
        ok = True
        for key in ("width", "height"):
            v = size.get(key, _MISSING)
            if not (_is_int(v) and v >= 1):
                out.append(_schema(source, f"{p}image_size.{key}", "an integer >= 1", v, record))
                ok = False
        if ok:
            width, height = int(size["width"]), int(size["height"])
        if "depth" in size:
            v = size["depth"]
            if not (_is_int(v) and v >= 1):
                out.append(_schema(source, f"{p}image_size.depth", "an integer >= 1", v, record))
            else:
                depth = int(v)

    parsed = ParsedRecord(file, width, height, depth)

    categories = data.get("categories", _MISSING)
    if categories is not _MISSING:
        parsed.categories = _check_categories(categories, source, p, record, out)

    anns = data.get("annotations", _MISSING)
    if not isinstance(anns, list):
        out.append(_schema(source, f"{p}annotations", "a list of boxes", anns, record))
        return out, parsed
    parsed.n_boxes = len(anns)
    if not anns and empty_policy == "reject":
        out.append(
            finding(
                "image.empty",
                source,
                f"{source}: no boxes (empty-image policy is 'reject'; "
                "use 'keep' to train on it as a negative)",
                record=record,
                field=f"{p}annotations",
                expected="at least one box",
                actual="[]",
            )
        )
    seen: dict[tuple, int] = {}
    for i, box in enumerate(anns):
        where = f"{p}annotations[{i}]"
        if not isinstance(box, Mapping):
            out.append(_schema(source, where, "an object", box, record))
            continue
        out += _unknown(box, BOX_FIELDS | EXTRA_BOX_FIELDS, source, f"{where}.", record)
        good = True
        cid = box.get("class_id", _MISSING)
        if not (_is_int(cid) and cid >= 0):
            out.append(_schema(source, f"{where}.class_id", "an integer >= 0", cid, record))
            good = False
        elif cid > MAX_CLASS_ID:
            out.append(_too_large(source, f"{where}.class_id", cid, record))
            good = False
        coords = []
        for key in ("left", "top", "width", "height"):
            v = box.get(key, _MISSING)
            if not _is_number(v):
                out.append(_schema(source, f"{where}.{key}", "a number", v, record))
                good = False
            elif not is_finite_coord(v):
                out.append(
                    finding(
                        "box.non_finite",
                        source,
                        f"{source}: {where}.{key} is {_short(v)}",
                        record=record,
                        field=f"{where}.{key}",
                        expected="a finite number",
                        actual=_short(v),
                    )
                )
                good = False
            else:
                coords.append(float(v))
        if not good:
            continue
        left, top, bw, bh = coords
        b = (int(cid), left, top, bw, bh)
        parsed.boxes.append(b)
        if not has_positive_size(bw, bh):
            out.append(
                finding(
                    "box.non_positive",
                    source,
                    f"{source}: {where} has width {bw:g} and height {bh:g}",
                    record=record,
                    field=f"{where}.{'width' if bw <= 0 else 'height'}",
                    expected="> 0",
                    actual=bw if bw <= 0 else bh,
                )
            )
        elif bw < min_box_size or bh < min_box_size:
            out.append(
                finding(
                    "box.tiny",
                    source,
                    f"{source}: {where} is {bw:g}x{bh:g} pixels, below the minimum box size "
                    f"{min_box_size:g} (degenerate in the source? too small to learn)",
                    record=record,
                    field=where,
                    expected=f">= {min_box_size:g} px wide and high",
                    actual=f"{bw:g}x{bh:g}",
                )
            )
        if has_positive_size(bw, bh) and width is not None and height is not None:
            t = tolerance
            if leaves_image(left, top, left + bw, top + bh, width, height, t):
                out.append(
                    finding(
                        "box.out_of_bounds",
                        source,
                        f"{source}: {where} spans x {left:g}..{left + bw:g}, y {top:g}.."
                        f"{top + bh:g}, outside the {width}x{height} image"
                        + (f" (tolerance {t:g} px)" if t else ""),
                        record=record,
                        field=where,
                        expected=f"0 <= x <= {width}, 0 <= y <= {height}",
                        actual=f"[{left:g}, {top:g}, {left + bw:g}, {top + bh:g}]",
                    )
                )
        if b in seen:
            out.append(
                finding(
                    "box.duplicate",
                    source,
                    f"{source}: {where} repeats annotations[{seen[b]}]",
                    record=record,
                    field=where,
                    expected="distinct boxes",
                    actual=list(b),
                )
            )
        else:
            seen[b] = i
    return out, parsed


def _check_categories(
    value: object, source: str, p: str, record, out: list[Finding]
) -> dict[int, str] | None:
    if not isinstance(value, list):
        out.append(_schema(source, f"{p}categories", "a list of {class_id, name}", value, record))
        return None
    cats: dict[int, str] = {}
    for i, item in enumerate(value):
        where = f"{p}categories[{i}]"
        if not isinstance(item, Mapping):
            out.append(_schema(source, where, "{class_id, name}", item, record))
            continue
        out += _unknown(item, CATEGORY_FIELDS, source, f"{where}.", record)
        cid, name = item.get("class_id", _MISSING), item.get("name", _MISSING)
        if not (_is_int(cid) and cid >= 0):
            out.append(_schema(source, f"{where}.class_id", "an integer >= 0", cid, record))
            continue
        if cid > MAX_CLASS_ID:
            out.append(_too_large(source, f"{where}.class_id", cid, record))
            continue
        if not isinstance(name, str) or not name:
            out.append(_schema(source, f"{where}.name", "a non-empty string", name, record))
            continue
        cid = int(cid)
        if cid in cats and cats[cid] != name:
            out.append(
                finding(
                    "class.categories_inconsistent",
                    source,
                    f"{source}: class_id {cid} is named both {cats[cid]!r} and {name!r}",
                    record=record,
                    field=where,
                    expected=cats[cid],
                    actual=name,
                )
            )
            continue
        cats[cid] = name
    return cats


def _short(v: object) -> object:
    """A number as a finding shows it: a 400-digit integer by its length."""
    if isinstance(v, int) and abs(v) > 10**15:
        return f"an integer of {len(str(abs(v)))} digits"
    return v
