"""Validation of MXNet RecordIO detection datasets (``.rec`` with ``.idx``).

The framing is read here, byte by byte, rather than through ``mxnet.recordio.MXRecordIO``:
the C reader aborts on the first bad magic number with no offset, while a validator must name
every bad record and carry on. The layout is dmlc's: each part is ``uint32 magic 0xced7230a``,
``uint32 lrecord`` (upper 3 bits: continuation flag 0 whole / 1 first / 2 middle / 3 last;
lower 29 bits: length), the bytes, padding to 4. Parts of a split record are joined with the
magic number between them. A record is then MXNet's ``IRHeader`` (``struct 'IfQQ'``: flag,
label, id, id2), ``flag`` float32 labels when ``flag > 0`` (as ``mxnet.recordio.unpack``),
and the encoded image.

Detection labels: ``[A, B, extra header (A - 2 values), objects (B values each)]`` with
``A >= 2`` and ``B >= 5``; each object starts ``cls, xmin, ymin, xmax, ymax`` normalized to
[0, 1]; rows with ``cls == -1`` are padding. im2rec/GluonCV write ``A = 4`` with image width
and height as the extra header; those are compared with the real image size.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..annotations import MAX_CLASS_ID, has_positive_size, leaves_image
from .dataset import Aggregator, ItemResult
from .images import inspect_image
from .options import ValidationOptions
from .parallel import pmap, worker_state
from .records import ParsedRecord
from .report import Finding, finding

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)
_IR_FORMAT = "IfQQ"
_IR_SIZE = struct.calcsize(_IR_FORMAT)
_LEN_MASK = (1 << 29) - 1


@dataclass(frozen=True)
class RecordSpan:
    """Where one logical record's parts lie in the file."""

    index: int
    offset: int
    parts: tuple[tuple[int, int], ...]  # (data offset, length)


def scan(path: Path, findings: list[Finding]) -> Iterator[RecordSpan]:
    """Walk the framing (reading headers only) and yield each record's parts.

    Framing problems become findings; after a bad magic number the scan resynchronises at
    the next 4-byte-aligned magic, so later records are still checked.
    """
    name = path.name
    size = path.stat().st_size
    index = 0
    with open(path, "rb") as fh:
        pos = 0
        parts: list[tuple[int, int]] = []
        start = 0
        while pos < size:
            fh.seek(pos)
            head = fh.read(8)
            if len(head) < 8:
                findings.append(_frame(name, pos, "recordio.header", "8-byte part header", head))
                return
            magic, lrec = struct.unpack("<II", head)
            if magic != MAGIC:
                findings.append(
                    finding(
                        "recordio.magic",
                        name,
                        f"{name}: no RecordIO magic at byte {pos} (record {index})",
                        record=f"offset {pos}",
                        expected=f"{MAGIC:#010x}",
                        actual=f"{magic:#010x}",
                    )
                )
                nxt = _resync(fh, pos + 4, size)
                if nxt is None:
                    return
                pos, parts = nxt, []
                continue
            cflag, length = lrec >> 29, lrec & _LEN_MASK
            data_at = pos + 8
            if data_at + length > size:
                findings.append(
                    finding(
                        "recordio.header",
                        name,
                        f"{name}: record {index} at byte {pos} claims {length} bytes but the "
                        f"file ends after {size - data_at}",
                        record=f"offset {pos}",
                        expected=f"<= {size - data_at} bytes",
                        actual=length,
                    )
                )
                return
            next_pos = data_at + length + (-length % 4)
            if cflag > 3:
                findings.append(_frame(name, pos, "recordio.header", "flag 0..3", cflag))
                pos, parts = next_pos, []
                continue
            if cflag in (0, 1):
                if parts:
                    findings.append(_frame(name, pos, "recordio.header", "a last part", cflag))
                parts, start = [], pos
            elif not parts:
                findings.append(_frame(name, pos, "recordio.header", "a first part", cflag))
                pos = next_pos
                continue
            parts.append((data_at, length))
            pos = next_pos
            if cflag in (0, 3):
                yield RecordSpan(index, start, tuple(parts))
                index += 1
                parts = []


def _frame(name: str, pos: int, rule: str, expected: str, actual: object) -> Finding:
    return finding(
        rule,
        name,
        f"{name}: bad record framing at byte {pos}: expected {expected}, found {actual!r}",
        record=f"offset {pos}",
        expected=expected,
        actual=actual,
    )


def _resync(fh, pos: int, size: int) -> int | None:
    pos += -pos % 4
    while pos < size:
        fh.seek(pos)
        chunk = fh.read(1 << 20)
        for i in range(0, len(chunk) - 3, 4):
            if chunk[i : i + 4] == MAGIC_BYTES:
                return pos + i
        pos += max(4, len(chunk) - len(chunk) % 4)
    return None


def read_record(fh, span: RecordSpan) -> bytes:
    """The record's payload, parts joined with the magic number (dmlc's split convention)."""
    chunks = []
    for off, length in span.parts:
        fh.seek(off)
        chunks.append(fh.read(length))
    return MAGIC_BYTES.join(chunks)


def unpack(payload: bytes) -> tuple[int, list[float], int, bytes]:
    """(flag, labels, id, image bytes), as ``mxnet.recordio.unpack`` reads them."""
    flag, label, rid, _ = struct.unpack(_IR_FORMAT, payload[:_IR_SIZE])
    rest = payload[_IR_SIZE:]
    if flag > 0:
        labels = list(struct.unpack(f"<{flag}f", rest[: 4 * flag]))
        rest = rest[4 * flag :]
    else:
        labels = [label]
    return flag, labels, rid, rest


def check_record_span(span: RecordSpan) -> ItemResult:
    """Check one record's label and image (runs in a worker process)."""
    state = worker_state()
    opts: ValidationOptions = state["options"]
    path, channel = state["path"], state["channel"]
    name = Path(path).name
    rec = f"record {span.index} (offset {span.offset})"
    result = ItemResult(channel, name, image=f"{name}#{span.index}", record=rec)
    out = result.findings
    fh = state.get("fh")
    if fh is None or state.get("fh_path") != path:
        fh = state["fh"] = open(path, "rb")  # noqa: SIM115 - one handle per worker
        state["fh_path"] = path
    payload = read_record(fh, span)
    if len(payload) < _IR_SIZE:
        out.append(_label(name, rec, "an IRHeader (24 bytes)", f"{len(payload)} bytes", "header"))
        return result
    flag = struct.unpack_from("<I", payload, 0)[0]  # before the label is unpacked by it
    if flag > 0 and len(payload) < _IR_SIZE + 4 * flag:
        out.append(_label(name, rec, f"{flag} label floats", "record too short", "label"))
        return result
    flag, labels, _rid, img = unpack(payload)
    info, img_findings = inspect_image(
        img, f"{name} {rec}", max_pixels=opts.max_pixels, full_decode=opts.full_decode
    )
    result.info = info
    for f in img_findings:
        out.append(_with_record(f, name, rec))
    parsed = _check_label(labels, name, rec, info, opts, out)
    result.parsed = parsed
    return result


def _with_record(f: Finding, name: str, rec: str) -> Finding:
    return finding(
        f.rule,
        name,
        f.message,
        record=rec,
        field=f.field,
        expected=f.expected,
        actual=f.actual,
        severity=f.severity,
    )


def _label(name: str, rec: str, expected: str, actual: object, what: str) -> Finding:
    return finding(
        "recordio.label",
        name,
        f"{name} {rec}: {what}: expected {expected}, found {actual}",
        record=rec,
        field="label",
        expected=expected,
        actual=actual,
    )


def _check_label(labels, name, rec, info, opts, out) -> ParsedRecord | None:
    if len(labels) < 2 or not all(math.isfinite(v) for v in labels[:2]):
        out.append(_label(name, rec, "[header_width, object_width, ...]", labels[:8], "layout"))
        return None
    a, b = labels[0], labels[1]
    if not (a.is_integer() and a >= 2 and b.is_integer() and b >= 5):
        out.append(
            _label(name, rec, "header_width >= 2, object_width >= 5", [a, b], "label widths")
        )
        return None
    a, b = int(a), int(b)
    body = labels[a:]
    if len(labels) < a or len(body) % b:
        out.append(
            _label(
                name,
                rec,
                f"{a} header values then a multiple of {b}",
                f"{len(labels)} values",
                "label length (not enough label packed)",
            )
        )
        return None
    width = height = None
    if info is not None:
        width, height = info.width, info.height
        if a >= 4 and labels[2] > 0 and labels[3] > 0:
            if (int(labels[2]), int(labels[3])) != (width, height):
                out.append(
                    finding(
                        "image.size_mismatch",
                        name,
                        f"{name} {rec}: label header says {labels[2]:g}x{labels[3]:g} but the "
                        f"image is {width}x{height}",
                        record=rec,
                        field="label[2:4]",
                        expected=f"{width}x{height}",
                        actual=f"{labels[2]:g}x{labels[3]:g}",
                    )
                )
    parsed = ParsedRecord(None, width, height, 3)
    tol_x = opts.box_tolerance / width if width else 0.0
    tol_y = opts.box_tolerance / height if height else 0.0
    n = 0
    for i in range(0, len(body), b):
        cls, x0, y0, x1, y1 = body[i : i + 5]
        if cls == -1:
            continue  # padding
        n += 1
        where = f"object {i // b}"
        if not all(math.isfinite(v) for v in (cls, x0, y0, x1, y1)):
            out.append(_obj(name, rec, where, "box.non_finite", "finite", [cls, x0, y0, x1, y1]))
            continue
        if not (cls.is_integer() and cls >= 0):
            out.append(_obj(name, rec, where, "recordio.label", "class id >= 0", cls))
            continue
        if cls > MAX_CLASS_ID:
            out.append(_obj(name, rec, where, "class.id_too_large", f"<= {MAX_CLASS_ID}", cls))
            continue
        if not has_positive_size(x1 - x0, y1 - y0):
            out.append(
                _obj(
                    name,
                    rec,
                    where,
                    "box.non_positive",
                    "xmax > xmin, ymax > ymin",
                    [x0, y0, x1, y1],
                )
            )
            continue
        if leaves_image(x0, y0, x1, y1, 1, 1, tol_x, tol_y):
            out.append(
                _obj(
                    name, rec, where, "box.out_of_bounds", "coordinates in [0, 1]", [x0, y0, x1, y1]
                )
            )
        if width and height:
            box = (int(cls), x0 * width, y0 * height, (x1 - x0) * width, (y1 - y0) * height)
        else:
            box = (int(cls), x0, y0, x1 - x0, y1 - y0)
        parsed.boxes.append(box)
    parsed.n_boxes = n
    if n == 0 and opts.empty_policy == "reject":
        out.append(
            finding(
                "image.empty",
                name,
                f"{name} {rec}: no objects (empty-image policy is 'reject')",
                record=rec,
                field="label",
                expected="at least one object",
                actual=0,
            )
        )
    return parsed


def _obj(name, rec, where, rule, expected, actual) -> Finding:
    return finding(
        rule,
        name,
        f"{name} {rec} {where}: expected {expected}, found {actual}",
        record=rec,
        field=f"label {where}",
        expected=expected,
        actual=actual,
    )


def _check_index(rec_path: Path, spans_at: set[int], n_records: int, out: list[Finding]) -> None:
    idx = rec_path.with_suffix(".idx")
    name = idx.name
    if not idx.is_file():
        out.append(
            finding(
                "recordio.no_index",
                rec_path.name,
                f"{rec_path.name} has no {name} beside it; it will be rebuilt",
                expected=name,
                actual="missing",
            )
        )
        return
    keys = 0
    with open(idx, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            keys += 1
            parts = line.split()
            if len(parts) != 2 or not parts[1].isdigit():
                out.append(
                    finding(
                        "recordio.index",
                        name,
                        f"{name} line {lineno} is not 'key<TAB>offset'",
                        record=f"line {lineno}",
                        expected="key<TAB>offset",
                        actual=line.strip(),
                    )
                )
                continue
            if int(parts[1]) not in spans_at:
                out.append(
                    finding(
                        "recordio.index",
                        name,
                        f"{name} line {lineno}: offset {parts[1]} is not the start of a record",
                        record=f"line {lineno}",
                        expected="a record start offset",
                        actual=int(parts[1]),
                    )
                )
    if keys != n_records:
        out.append(
            finding(
                "recordio.index",
                name,
                f"{name} lists {keys} records, {rec_path.name} holds {n_records}",
                expected=n_records,
                actual=keys,
            )
        )


def _recs(path: Path) -> list[tuple[str, Path]]:
    if path.is_file():
        return [(path.stem, path)]
    out = []
    for channel in ("train", "validation"):
        for rec in sorted((path / channel).glob("*.rec")) if (path / channel).is_dir() else []:
            out.append((channel, rec))
    return out


def validate_recordio(path: Path, opts: ValidationOptions) -> Aggregator:
    """Check every record of one ``.rec`` or of ``train/*.rec`` + ``validation/*.rec``."""
    recs = _recs(path)
    channels = tuple(dict.fromkeys(ch for ch, _ in recs))
    agg = Aggregator(channels=channels, tables=opts.great_expectations)
    for channel, rec_path in recs:
        framing: list[Finding] = []
        spans_at: set[int] = set()
        n = 0
        state = {"options": opts, "path": str(rec_path), "channel": channel}

        def spans(rec_path=rec_path, framing=framing, spans_at=spans_at):
            for span in scan(rec_path, framing):
                spans_at.add(span.offset)
                yield span

        for result in pmap(check_record_span, spans(), opts.n_workers, state):
            n += 1
            agg.add(result)
        fh = worker_state().pop("fh", None)  # the inline path's handle
        if fh is not None:
            fh.close()
        agg.findings.extend(framing)
        _check_index(rec_path, spans_at, n, agg.findings)
        if n == 0:
            agg.findings.append(
                finding(
                    "recordio.header",
                    rec_path.name,
                    f"{rec_path.name} holds no records",
                    expected="at least one record",
                    actual=f"{os.path.getsize(rec_path)} bytes",
                )
            )
    return agg
