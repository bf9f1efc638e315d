"""Label statistics of a dataset and their picture, ``labels.png`` (``odp validate --report``).

What people look at before they trust a training set (Ultralytics draws the same): how many
boxes each class has in each split, how large the boxes are relative to their image (width
against height), their aspect ratios, and where their centres sit. The boxes are kept as a
compact float32 table (class, split, relative width, height and centre); beyond
:data:`MAX_BOXES` a uniform sample of them (reservoir sampling, seeded) is kept for the
size, shape and position panels, so memory stays bounded whatever the dataset; the class
counts are always exact.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

LABELS_FILE = "labels.png"
MAX_BOXES = 200_000
_COLUMNS = 7  # class, split index, width, height, centre x, centre y (relative), log2 aspect


class LabelStats:
    """Accumulates boxes image by image (:meth:`add`); draws :meth:`plot`."""

    def __init__(self, splits: Iterable[str] = ("train", "validation"), cap: int = MAX_BOXES):
        self.splits = list(splits)
        self.cap = cap
        self.counts: Counter[tuple[str, int]] = Counter()  # (split, class) -> boxes
        self._rows = np.empty((0, _COLUMNS), dtype=np.float32)
        self._pending: list[tuple] = []
        self._seen = 0
        self._rng = np.random.default_rng(0)

    def add(
        self,
        split: str,
        boxes: Iterable[tuple[int, float, float, float, float]],
        width: int | None,
        height: int | None,
    ) -> None:
        """One image's boxes ``(class_id, left, top, width, height)`` in pixels."""
        if split not in self.splits:
            self.splits.append(split)
        s = self.splits.index(split)
        for cid, left, top, w, h in boxes:
            self.counts[(split, int(cid))] += 1
            if width and height and width > 0 and height > 0:  # a record may lack its size
                aspect = np.log2(max(w, 1e-6) / max(h, 1e-6))  # in pixels
                cx, cy = (left + w / 2) / width, (top + h / 2) / height
                self._pending.append((cid, s, w / width, h / height, cx, cy, aspect))
        if len(self._pending) >= 4096:
            self._flush()

    def _flush(self) -> None:
        """Fold the pending rows into the table: a uniform sample of all seen when full."""
        if not self._pending:
            return
        new = np.asarray(self._pending, dtype=np.float32)
        self._pending = []
        room = self.cap - len(self._rows)
        take = new[:room] if room > 0 else new[:0]
        self._rows = np.concatenate([self._rows, take])
        self._seen += len(take)
        for row in new[len(take) :]:  # reservoir: row number seen+1 kept with p = cap/seen
            self._seen += 1
            slot = int(self._rng.integers(0, self._seen))
            if slot < self.cap:
                self._rows[slot] = row

    @property
    def boxes(self) -> np.ndarray:
        """The kept rows ``(class, split, width, height, centre x, centre y, log2 aspect)``
        (sizes and centres relative to the image, the aspect ratio in pixels)."""
        self._flush()
        return self._rows

    def plot(self, path: str | Path, class_names: Mapping[int, str]) -> Path:
        """``labels.png``: class counts per split, relative box width against height, aspect
        ratios per split, box centres."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        rows = self.boxes
        classes = sorted({c for _, c in self.counts} | set(class_names))
        fig = Figure(figsize=(11, 8.5))
        (counts_ax, size_ax), (aspect_ax, centre_ax) = fig.subplots(2, 2)
        width = 0.8 / max(1, len(self.splits))
        for i, split in enumerate(self.splits):
            values = [self.counts.get((split, c), 0) for c in classes]
            counts_ax.bar(np.arange(len(classes)) + i * width, values, width, label=split)
        counts_ax.set_xticks(
            np.arange(len(classes)) + width * (len(self.splits) - 1) / 2,
            [str(class_names.get(c, f"class_{c}")) for c in classes],
            rotation=45 if len(classes) > 6 else 0,
            ha="right" if len(classes) > 6 else "center",
            fontsize=8,
        )
        counts_ax.set_ylabel("boxes")
        counts_ax.set_title("Boxes per class and split")
        counts_ax.legend(fontsize=8)
        if len(rows):
            size_ax.hist2d(rows[:, 2], rows[:, 3], bins=50, range=[[0, 1], [0, 1]], cmap="Blues")
            ratios = rows[:, 6]
            for s, split in enumerate(self.splits):
                mine = ratios[rows[:, 1] == s]
                if len(mine):
                    aspect_ax.hist(mine, bins=40, range=(-4, 4), alpha=0.6, label=split)
            aspect_ax.legend(fontsize=8)
            centre_ax.hist2d(rows[:, 4], rows[:, 5], bins=50, range=[[0, 1], [0, 1]], cmap="Blues")
        size_ax.set(xlabel="width / image width", ylabel="height / image height")
        size_ax.set_title("Box sizes")
        aspect_ax.set(xlabel="log2(width / height)", ylabel="boxes")
        aspect_ax.set_title("Aspect ratios")
        centre_ax.set(xlabel="centre x / image width", ylabel="centre y / image height")
        centre_ax.set_title("Box centres")
        centre_ax.invert_yaxis()  # as in the image: y grows downwards
        sampled = f" (a sample of {len(rows)} of {self._seen})" if self._seen > len(rows) else ""
        fig.suptitle(f"Label statistics: {sum(self.counts.values())} boxes{sampled}")
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        FigureCanvasAgg(fig)
        fig.savefig(path, dpi=100, format="png")
        return path


__all__ = ["LABELS_FILE", "MAX_BOXES", "LabelStats"]
