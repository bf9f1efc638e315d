"""Dataset-level checks: counts, class ids across channels, categories, duplicate content.

Per-image work (in worker processes) yields one :class:`ItemResult` each; the
:class:`Aggregator` folds them in, one at a time, keeping only small per-image state (a
16-byte content hash and the image name), so memory stays flat in practice.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from .images import ImageInfo
from .labels import LabelStats
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
_MAX_LISTED = 100


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
    record: str | None = None


@dataclass
class _ClassUse:
    per_channel: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    files: list[tuple[str, str | None]] = field(default_factory=list)
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
        self._names: dict[int, tuple[str, tuple]] = {}  # id -> (name, (file, record))
        # id -> name -> [files naming it so, the first few of them]
        self._cat_votes: dict[int, dict[str, list]] = defaultdict(dict)
        self._digests: dict[bytes, tuple[str, str]] = {}
        self.tables = tables
        self.image_rows: list[tuple] = []
        self.box_rows: list[tuple] = []
        self.labels = LabelStats(channels)  # labels.png

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
                    use.files.append((r.source, r.record))
            for b in p.boxes:
                self._classes[b[0]].per_channel[ch] += 1
            self.labels.add(ch, p.boxes, p.width, p.height)
            if p.categories:
                self._add_categories(p.categories, (r.source, r.record))
        if r.info is not None and r.image is not None:
            self._add_digest(r.info.digest, ch, r.image)
        if self.tables:
            self._add_rows(r)

    def _add_categories(self, cats: dict[int, str], source: tuple[str, str | None]) -> None:
        for cid, name in cats.items():
            votes = self._cat_votes[cid].setdefault(name, [0, []])
            votes[0] += 1
            if len(votes[1]) < _MAX_LISTED:
                votes[1].append(source)
            self._names.setdefault(cid, (name, source))

    def _category_findings(self) -> list[Finding]:
        """Every file whose categories disagree with the majority (per id, then per name)."""
        out: list[Finding] = []
        canonical: dict[int, str] = {}
        for cid, by_name in sorted(self._cat_votes.items()):
            ranked = sorted(by_name.items(), key=lambda kv: -kv[1][0])  # stable: first seen wins
            canonical[cid] = ranked[0][0]
            self._names[cid] = (ranked[0][0], ranked[0][1][1][0])
            for name, (_count, sources) in ranked[1:]:
                for src in sources:
                    out.append(
                        finding(
                            "class.categories_inconsistent",
                            src[0],
                            f"{_show(src)}: class_id {cid} is named {name!r} here but "
                            f"{canonical[cid]!r} in {ranked[0][1][0]} other files",
                            record=src[1],
                            field="categories",
                            expected=canonical[cid],
                            actual=name,
                        )
                    )
        by_name: dict[str, list[int]] = defaultdict(list)
        for cid, name in canonical.items():
            by_name[name].append(cid)
        for name, ids in sorted(by_name.items()):
            if len(ids) > 1:
                src = self._cat_votes[ids[1]][name][1][0]
                out.append(
                    finding(
                        "class.categories_inconsistent",
                        src[0],
                        f"name {name!r} is used for class ids {ids}; each class needs one id",
                        record=src[1],
                        field="categories",
                        expected="one id per name",
                        actual=ids,
                    )
                )
        return out

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
        out: list[Finding] = self._category_findings()
        used = sorted(self._classes)
        known = sorted(set(used) | set(self._names))  # used or declared in categories
        if known:
            missing = sorted(set(range(known[-1] + 1)) - set(known))
            if missing:
                shown = _ranges(missing)
                for cid in (c for c in known if c > missing[0]):
                    if cid in self._classes:
                        use = self._classes[cid]
                        where, what = (
                            use.files[0],
                            (
                                f"used ({sum(use.per_channel.values())} boxes in {use.n_files} "
                                f"files, e.g. {_examples(use.files)})"
                            ),
                        )
                    else:
                        where, what = self._names[cid][1], "declared in categories"
                    out.append(
                        finding(
                            "class.not_contiguous",
                            where[0],
                            f"class_id {cid} is {what} but class ids {shown} never appear; "
                            "ids must be 0..K-1 across train+validation",
                            record=where[1],
                            field="annotations[].class_id",
                            expected=f"ids 0..{len(known) - 1}",
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
                            use.files[0][0],
                            f"class_id {cid} is used (e.g. {_examples(use.files)}) but no "
                            "file's categories name it",
                            record=use.files[0][1],
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
                            src[0],
                            f"category {cid} {name!r} is declared but no box uses it",
                            record=src[1],
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
                            self._classes[cid].files[0][0],
                            f"class_id {cid} ({name}) appears in validation "
                            f"({pc['validation']} boxes) but never in train: it cannot be learnt",
                            record=self._classes[cid].files[0][1],
                            field="annotations[].class_id",
                            expected="present in train",
                            actual=cid,
                        )
                    )
        self.findings.extend(out)
        return out


def _show(where: tuple[str, str | None]) -> str:
    return where[0] if where[1] is None else f"{where[0]} {where[1]}"


def _examples(files: list[tuple[str, str | None]]) -> str:
    return ", ".join(_show(w) for w in files)


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
