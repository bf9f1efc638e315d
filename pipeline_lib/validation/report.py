"""Findings and the validation report: ``report.json``, ``summary.txt``, the human summary."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import storage
from .rules import ERROR, RULES, WARNING

FIRST_FINDINGS = 20
_MAX_ACTUAL = 200


def _short(value: object) -> str | None:
    """Findings carry short printable values, whatever was found."""
    if value is None:
        return None
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= _MAX_ACTUAL else text[: _MAX_ACTUAL - 3] + "..."


@dataclass(frozen=True)
class Finding:
    """One problem: where it is, which rule it breaks, what was expected and what was found."""

    file: str
    rule: str
    code: str
    severity: str
    message: str
    record: str | None = None
    field: str | None = None
    expected: str | None = None
    actual: str | None = None

    def to_json(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        """One line for logs: ``E I004 image.channels train/a.jpg: ...``."""
        tag = "E" if self.severity == ERROR else "W"
        where = self.file + (f" [{self.record}]" if self.record is not None else "")
        return f"{tag} {self.code} {self.rule} {where}: {self.message}"


def finding(
    rule: str,
    file: str,
    message: str,
    *,
    record: str | int | None = None,
    field: str | None = None,
    expected: object = None,
    actual: object = None,
    severity: str | None = None,
) -> Finding:
    """Build a :class:`Finding` for a named rule (code and default severity come from it)."""
    r = RULES[rule]
    return Finding(
        file=file,
        rule=rule,
        code=r.code,
        severity=severity or r.severity,
        message=message,
        record=None if record is None else str(record),
        field=field,
        expected=_short(expected),
        actual=_short(actual),
    )


def _sort_key(f: Finding) -> tuple:
    return (f.severity != ERROR, f.file, f.record or "", f.code, f.field or "")


@dataclass
class ValidationReport:
    """The outcome of one validation run."""

    data: str
    format: str
    findings: list[Finding] = field(default_factory=list)
    images: dict[str, int] = field(default_factory=dict)
    boxes: dict[str, int] = field(default_factory=dict)
    empty_images: dict[str, int] = field(default_factory=dict)
    class_counts: dict[int, dict] = field(default_factory=dict)
    max_objects_per_image: int = 0
    great_expectations: dict | None = None
    report_dir: str | None = None
    converted: dict | None = None
    seconds: float = 0.0

    def __post_init__(self) -> None:
        self.findings.sort(key=_sort_key)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == WARNING]

    @property
    def ok(self) -> bool:
        """True when no finding is an error (warnings do not fail a dataset)."""
        return not any(f.severity == ERROR for f in self.findings)

    @property
    def label_width(self) -> int:
        """RecordIO label width: header (2) + 5 values per object for the fullest image."""
        return 2 + 5 * self.max_objects_per_image

    def relocate(self, old: str, new: str) -> None:
        """Point the report at ``new`` after its folder, written at ``old``, was moved."""
        import json

        def moved(value):
            return json.loads(
                json.dumps(value).replace(json.dumps(old)[1:-1], json.dumps(new)[1:-1])
            )

        self.report_dir = moved(self.report_dir)
        self.great_expectations = moved(self.great_expectations)
        self.converted = moved(self.converted)

    def findings_by_rule(self) -> dict[str, int]:
        return dict(sorted(Counter(f.rule for f in self.findings).items()))

    def summary_dict(self) -> dict:
        """JSON-able summary (what ``odp validate --json`` prints and XCom carries)."""
        out = {
            "ok": self.ok,
            "data": self.data,
            "format": self.format,
            "counts": {
                "images": dict(self.images),
                "boxes": dict(self.boxes),
                "empty_images": dict(self.empty_images),
                "errors": len(self.errors),
                "warnings": len(self.warnings),
            },
            "class_counts": {str(k): v for k, v in sorted(self.class_counts.items())},
            "max_objects_per_image": self.max_objects_per_image,
            "label_width": self.label_width,
            "findings_by_rule": self.findings_by_rule(),
            "first_findings": [f.to_json() for f in self.findings[:FIRST_FINDINGS]],
            "seconds": round(self.seconds, 3),
        }
        if self.great_expectations is not None:
            out["great_expectations"] = {
                k: v for k, v in self.great_expectations.items() if k != "results"
            }
        if self.converted is not None:
            out["converted"] = self.converted
        if self.report_dir is not None:
            out["report"] = storage.join(self.report_dir, "report.json")
        return out

    def to_json(self) -> dict:
        """Everything: the summary plus every finding and the full GX results."""
        out = self.summary_dict()
        out["findings"] = [f.to_json() for f in self.findings]
        if self.great_expectations is not None:
            out["great_expectations"] = self.great_expectations
        return out

    def human_summary(self) -> str:
        """A few readable lines: verdict, counts, classes, findings by rule, first findings."""
        verdict = "VALID" if self.ok else "INVALID"
        total = sum(self.images.values())
        lines = [
            f"{self.data} ({self.format}): {verdict} - {len(self.errors)} errors, "
            f"{len(self.warnings)} warnings in {total} images ({self.seconds:.1f} s)"
        ]
        for ch in sorted(self.images):
            lines.append(
                f"  {ch}: {self.images[ch]} images, {self.boxes.get(ch, 0)} boxes, "
                f"{self.empty_images.get(ch, 0)} without boxes"
            )
        if self.class_counts:
            parts = [
                f"{cid} {c['name']} ({'/'.join(str(c.get(ch, 0)) for ch in sorted(self.images))})"
                for cid, c in sorted(self.class_counts.items())
            ]
            lines.append(
                f"  boxes per class ({'/'.join(sorted(self.images))}): " + ", ".join(parts)
            )
        lines.append(
            f"  max objects per image {self.max_objects_per_image} -> label_width {self.label_width}"
        )
        if self.findings:
            by_rule = ", ".join(f"{k} {v}" for k, v in self.findings_by_rule().items())
            lines.append(f"  findings by rule: {by_rule}")
            lines.append("  first findings:")
            lines.extend(f"    {f.line()}" for f in self.findings[:FIRST_FINDINGS])
            if len(self.findings) > FIRST_FINDINGS:
                lines.append(f"    ... and {len(self.findings) - FIRST_FINDINGS} more")
        if self.converted:
            c = self.converted
            lines.append(
                f"  {c['note']}"
                if c.get("note")
                else f"  RGB copies of {c['images']} images in "
                f"{c['dir']} (a complete dataset: train from there)"
            )
        if self.great_expectations is not None:
            gx = self.great_expectations
            state = "passed" if gx.get("success") else "FAILED"
            lines.append(f"  Great Expectations: {state} ({gx.get('statistics_line', '')})")
        if self.report_dir is not None:
            lines.append(f"  report: {storage.join(self.report_dir, 'report.json')}")
            if self.great_expectations and self.great_expectations.get("data_docs"):
                lines.append(f"  data docs: {self.great_expectations['data_docs']}")
        return "\n".join(lines)

    def write(self, report_dir: str | Path) -> None:
        """Write ``report.json`` and ``summary.txt`` (local folder or s3:// prefix)."""
        with storage.atomic_write(storage.join(report_dir, "report.json")) as tmp:
            tmp.write_text(json.dumps(self.to_json(), indent=1, default=str) + "\n")
        with storage.atomic_write(storage.join(report_dir, "summary.txt")) as tmp:
            tmp.write_text(self.human_summary() + "\n")
