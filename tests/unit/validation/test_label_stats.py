"""labels.png and the statistics behind it: exact class counts per split, relative sizes,
centres and pixel aspect ratios, a bounded sample beyond the cap; written by validate."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline_lib.synthetic import SynthConfig, generate
from pipeline_lib.validation import ValidationOptions, validate
from pipeline_lib.validation.labels import LabelStats

PNG = b"\x89PNG\r\n\x1a\n"


def test_counts_sizes_centres_and_aspects(tmp_path: Path) -> None:
    stats = LabelStats()
    stats.add("train", [(0, 10, 20, 40, 20), (1, 0, 0, 100, 50)], 200, 100)
    stats.add("validation", [(1, 50, 25, 10, 10)], 100, 100)
    assert stats.counts == {("train", 0): 1, ("train", 1): 1, ("validation", 1): 1}
    np.testing.assert_allclose(
        stats.boxes,
        [
            [0, 0, 0.2, 0.2, 0.15, 0.3, 1.0],  # 40x20 px: log2(2) = 1
            [1, 0, 0.5, 0.5, 0.25, 0.25, 1.0],
            [1, 1, 0.1, 0.1, 0.55, 0.3, 0.0],
        ],
        rtol=1e-6,
    )
    assert stats.plot(tmp_path / "labels.png", {0: "a", 1: "b"}).read_bytes()[:8] == PNG


def test_beyond_the_cap_a_uniform_sample_is_kept_and_counts_stay_exact() -> None:
    stats = LabelStats(cap=1000)
    for i in range(50):
        stats.add("train", [(i % 2, 0, 0, 10 + j, 10) for j in range(100)], 1000, 1000)
    assert sum(stats.counts.values()) == 5000
    rows = stats.boxes
    assert len(rows) == 1000
    # every image's boxes are represented about equally (a uniform sample, not the first)
    widths = np.round(rows[:, 2] * 1000) - 10
    assert 30 < widths.mean() < 70


def test_validate_writes_labels_png(tmp_path: Path) -> None:
    generate(tmp_path / "data", SynthConfig(images=12, classes=2, seed=1))
    validate(
        str(tmp_path / "data"),
        ValidationOptions(great_expectations=False),
        str(tmp_path / "report"),
    )
    assert (tmp_path / "report" / "labels.png").read_bytes()[:8] == PNG
