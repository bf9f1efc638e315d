"""Fixtures of the evaluation tests."""

from __future__ import annotations

import pytest
from evaluation_testdata import make_images


@pytest.fixture
def random_images():
    return make_images
