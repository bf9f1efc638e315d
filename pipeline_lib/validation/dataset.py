"""Dataset-level checks: counts, class ids across channels, categories, duplicate content.

Per-image work (in worker processes) yields one :class:`ItemResult` each; the
:class:`Aggregator` folds them in, one at a time, keeping only small per-image state (a
16-byte content hash and the image name), so memory stays flat in practice.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from .images import ImageInfo
from .records import ParsedRecord
from .report import Finding, finding

IMAGE_COLUMNS = (
    "channel",
    "file",
    "format",
    "mode",
    "width",
    "height",
    "channels",
    "bits",
    "declared_width",
    "declared_height",
    "n_boxes",
    "bytes",
)
BOX_COLUMNS = (
    "channel",
    "file",
    "class_id",
    "left",
    "top",
    "width",
    "height",
    "right",
    "bottom",
    "area",
    "image_width",
    "image_height",
)
_EXAMPLES = 3


@dataclass
class ItemResult:
    """What one record (JSON file, manifest line or RecordIO record) produced."""

    channel: str
    source: str
    image: str | None = None
    findings: list[Finding] = field(default_factory=list)
    parsed: ParsedRecord | None = None
    info: ImageInfo | None = None
    converted: bool = False


@dataclass
class _ClassUse:
    per_channel: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    files: list[str] = field(default_factory=list)
    n_files: int = 0


class Aggregator:
    """Folds item results into counts, dataset-level findings and the GX tables."""

    def __init__(self, channels: tuple[str, ...] = ("train", "validation"), tables: bool = True):
        self.channels = channels
        self.findings: list[Finding] = []
        self.images = dict.fromkeys(channels, 0)
        self.boxes = dict.fromkeys(channels, 0)
        self.empty = dict.fromkeys(channels, 0)
        self.max_objects = 0
        self.converted = 0
        self._classes: dict[int, _ClassUse] = defaultdict(_ClassUse)
        self._names: dict[int, tuple[str, str]] = {}  # id -> (name, first source)
        self._name_ids: dict[str, int] = {}
        self._digests: dict[bytes, tuple[str, str]] = {}
        self.tables = tables
        self.image_rows: list[tuple] = []
        self.box_rows: list[tuple] = []

    def add(self, r: ItemResult) -> None:
        """Fold one item in (call in a deterministic order for reproducible reports)."""
        self.findings.extend(r.findings)
        self.converted += r.converted
        ch = r.channel
        self.images[ch] = self.images.get(ch, 0) + 1
        p = r.parsed
        if p is not None:
            self.boxes[ch] = self.boxes.get(ch, 0) + len(p.boxes)
            if p.n_boxes == 0:
                self.empty[ch] = self.empty.get(ch, 0) + 1
            self.max_objects = max(self.max_objects, p.n_boxes)
            for cid in {b[0] for b in p.boxes}:
                use = self._classes[cid]
                use.n_files += 1
                if len(use.files) < _EXAMPLES:
                    use.files.append(r.source)
            for b in p.boxes:
                self._classes[b[0]].per_channel[ch] += 1
            if p.categories:
                self._add_categories(p.categories, r.source)
        if r.info is not None and r.image is not None:
            self._add_digest(r.info.digest, ch, r.image)
        if self.tables:
            self._add_rows(r)

    def _add_categories(self, cats: dict[int, str], source: str) -> None:
        for cid, name in cats.items():
            if cid in self._names and self._names[cid][0] != name:
                first_name, first_src = self._names[cid]
                self.findings.append(
                    finding(
                        "class.categories_inconsistent",
                        source,
                        f"{source}: class_id {cid} is named {name!r} here but {first_name!r} "
                        f"in {first_src}",
                        field="categories",
                        expected=first_name,
                        actual=name,
                    )
                )
                continue
            if name in self._name_ids and self._name_ids[name] != cid:
                self.findings.append(
                    finding(
                        "class.categories_inconsistent",
                        source,
                        f"{source}: name {name!r} has class_id {cid} here but "
                        f"{self._name_ids[name]} elsewhere",
                        field="categories",
                        expected=self._name_ids[name],
                        actual=cid,
                    )
                )
                continue
            self._names.setdefault(cid, (name, source))
            self._name_ids.setdefault(name, cid)

    def _add_digest(self, digest: bytes, channel: str, image: str) -> None:
        first = self._digests.get(digest)
        if first is None:
            self._digests[digest] = (channel, image)
            return
        if first[0] == channel:
            self.findings.append(
                finding(
                    "image.duplicate",
                    image,
                    f"{image} has the same bytes as {first[1]}",
                    expected="distinct images",
                    actual=first[1],
                )
            )
        else:
            self.findings.append(
                finding(
                    "dataset.train_validation_overlap",
                    image,
                    f"{image} has the same bytes as {first[1]}: train and validation must "
                    "not share images (validation mAP would be inflated)",
                    expected="disjoint channels",
                    actual=first[1],
                )
            )

    def _add_rows(self, r: ItemResult) -> None:
        p, info = r.parsed, r.info
        name = r.image or r.source
        if info is not None:
            self.image_rows.append(
                (
                    r.channel,
                    name,
                    info.format,
                    info.mode,
                    info.width,
                    info.height,
                    info.channels,
                    info.bits,
                    p.width if p else None,
                    p.height if p else None,
                    p.n_boxes if p else None,
                    info.nbytes,
                )
            )
        if p is not None:
            iw, ih = p.width, p.height
            for cid, left, top, w, h in p.boxes:
                self.box_rows.append(
                    (r.channel, name, cid, left, top, w, h, left + w, top + h, w * h, iw, ih)
                )

    # ------------------------------------------------------------------ dataset level

    def class_names(self) -> dict[int, str]:
        names = {cid: n for cid, (n, _) in self._names.items()}
        for cid in self._classes:
            names.setdefault(cid, f"class_{cid}")
        return dict(sorted(names.items()))

    def class_counts(self) -> dict[int, dict]:
        names = self.class_names()
        out = {}
        for cid in sorted(set(self._classes) | set(self._names)):
            use = self._classes.get(cid)
            row = {"name": names.get(cid, f"class_{cid}")}
            for ch in self.channels:
                row[ch] = use.per_channel.get(ch, 0) if use else 0
            out[cid] = row
        return out

    def finish(self) -> list[Finding]:
        """Dataset-level findings (class ids, categories); call once after the last add."""
        out: list[Finding] = []
        used = sorted(self._classes)
        if used:
            missing = sorted(set(range(used[-1] + 1)) - set(used))
            if missing:
                shown = _ranges(missing)
                for cid in (c for c in used if c > missing[0]):
                    use = self._classes[cid]
                    out.append(
                        finding(
                            "class.not_contiguous",
                            use.files[0],
                            f"class_id {cid} is used ({sum(use.per_channel.values())} boxes in "
                            f"{use.n_files} files, e.g. {', '.join(use.files)}) but class ids "
                            f"{shown} never appear; ids must be 0..K-1 across train+validation",
                            field="annotations[].class_id",
                            expected=f"ids 0..{len(used) - 1}",
                            actual=cid,
                        )
                    )
        if self._names:
            for cid in used:
                if cid not in self._names:
                    use = self._classes[cid]
                    out.append(
                        finding(
                            "class.unnamed",
                            use.files[0],
                            f"class_id {cid} is used (e.g. {', '.join(use.files)}) but no "
                            "file's categories name it",
                            field="categories",
                            expected=f"a category for class_id {cid}",
                            actual=None,
                        )
                    )
            for cid, (name, src) in sorted(self._names.items()):
                if cid not in self._classes:
                    out.append(
                        finding(
                            "class.unused_category",
                            src,
                            f"category {cid} {name!r} is declared but no box uses it",
                            field="categories",
                            expected="at least one box",
                            actual=0,
                        )
                    )
        if "validation" in self.channels and "train" in self.channels:
            for cid in used:
                pc = self._classes[cid].per_channel
                if pc.get("validation", 0) and not pc.get("train", 0):
                    name = self.class_names().get(cid)
                    out.append(
                        finding(
                            "class.validation_only",
                            self._classes[cid].files[0],
                            f"class_id {cid} ({name}) appears in validation "
                            f"({pc['validation']} boxes) but never in train: it cannot be learnt",
                            field="annotations[].class_id",
                            expected="present in train",
                            actual=cid,
                        )
                    )
        self.findings.extend(out)
        return out


def _ranges(ids: list[int]) -> str:
    parts, start, prev = [], ids[0], ids[0]
    for i in ids[1:] + [None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        parts.append(str(start) if start == prev else f"{start}..{prev}")
        if i is not None:
            start = prev = i
    return ", ".join(parts)
