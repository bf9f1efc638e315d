"""Fixtures for the validation tests: small synthetic datasets and the shared test data."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipeline_lib.synthetic import SynthConfig, generate

REPO_ROOT = Path(__file__).resolve().parents[3]
SHARED = REPO_ROOT.parent / "shared"
DATASETS = SHARED / "datasets"

_CACHE: dict[tuple, Path] = {}


@pytest.fixture(scope="session")
def synth_cache(tmp_path_factory):
    """Make (once per session) and copy synthetic datasets: ``synth_cache(dest, images=..)``."""

    def make(dest: Path, images: int = 10, classes: int = 3, seed: int = 0) -> Path:
        key = (images, classes, seed)
        if key not in _CACHE:
            src = tmp_path_factory.mktemp("synth")
            generate(src, SynthConfig(images=images, classes=classes, seed=seed))
            _CACHE[key] = src
        shutil.copytree(_CACHE[key], dest)
        return dest

    return make


@pytest.fixture
def dataset(tmp_path, synth_cache) -> Path:
    """A fresh copy of a valid 10-image, 3-class synthetic dataset."""
    return synth_cache(tmp_path / "data")


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    if not DATASETS.is_dir():
        pytest.skip("../shared/datasets is absent")
    return DATASETS
