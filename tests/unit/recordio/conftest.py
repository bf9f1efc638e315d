"""Shared fixtures of the RecordIO tests: a small synthetic dataset and its conversion."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline_lib.recordio.convert import convert_to_recordio
from pipeline_lib.synthetic import SynthConfig, generate


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "data"
    generate(root, SynthConfig(images=20, classes=3, seed=7, max_objects=4))
    return root


@pytest.fixture(scope="module")
def converted(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("rec") / "ds"
    result = convert_to_recordio(dataset, out, workers=1, progress=False)
    return out, result
