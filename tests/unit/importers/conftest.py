"""Fixtures for the importer tests: synthetic images and the shared raccoon set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline_lib.synthetic import SynthConfig, generate

REPO_ROOT = Path(__file__).resolve().parents[3]
DATASETS = REPO_ROOT.parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def synth(tmp_path_factory) -> list[tuple[Path, dict]]:
    """(image path, SageMaker annotation) for 10 synthetic images, 3 classes."""
    root = tmp_path_factory.mktemp("synth")
    generate(root, SynthConfig(images=10, classes=3, seed=1))
    out = []
    for ch in ("train", "validation"):
        for p in sorted((root / f"{ch}_annotation").glob("*.json")):
            ann = json.loads(p.read_text())
            out.append((root / ch / ann["file"], ann))
    return out


@pytest.fixture(scope="session")
def raccoon() -> Path:
    path = DATASETS / "raccoon"
    if not path.is_dir():
        pytest.skip("../shared/datasets/raccoon is absent")
    return path
