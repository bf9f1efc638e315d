"""Property tests: valid generated datasets always pass; any single injected defect is found."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from dataset_defects import DEFECTS, inject
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline_lib.synthetic import SynthConfig, generate
from pipeline_lib.validation import ValidationOptions, validate

FAST = ValidationOptions(great_expectations=False, workers=1)
_BASES: dict[int, Path] = {}


@pytest.fixture(scope="module", autouse=True)
def _remove_bases():
    """The base datasets live across hypothesis examples; gone with the module's tests."""
    yield
    for path in _BASES.values():
        shutil.rmtree(path, ignore_errors=True)
    _BASES.clear()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    images=st.integers(2, 9),
    classes=st.integers(1, 4),
    max_objects=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_valid_generated_datasets_always_pass(images, classes, max_objects, seed):
    with tempfile.TemporaryDirectory() as tmp:
        cfg = SynthConfig(images=images, classes=classes, max_objects=max_objects, seed=seed)
        generate(tmp, cfg)
        report = validate(tmp, FAST)
        assert report.ok, report.human_summary()
        # tiny datasets may leave a class unused or only in validation: warnings, by design
        assert {f.rule for f in report.findings} <= {
            "class.validation_only",
            "class.unused_category",
        }


def _base(seed: int) -> Path:
    if seed not in _BASES:
        path = Path(tempfile.mkdtemp(prefix="odp-prop-"))
        generate(path, SynthConfig(images=8, classes=3, seed=seed))
        _BASES[seed] = path
    return _BASES[seed]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    defect=st.sampled_from(sorted(DEFECTS)),
    channel=st.sampled_from(["train", "validation"]),
    index=st.integers(0, 10),
    seed=st.integers(0, 2),
)
def test_any_single_injected_defect_is_found(defect, channel, index, seed):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "d"
        shutil.copytree(_base(seed), root)
        expected = inject(root, defect, channel, index)
        report = validate(str(root), FAST)
        assert (expected.rule, expected.file) in {(f.rule, f.file) for f in report.findings}, (
            report.human_summary()
        )
