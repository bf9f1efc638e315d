"""pipeline_lib.bounds: the one bounded number parser (issue 27)."""

from __future__ import annotations

import argparse

import pytest

from pipeline_lib import bounds


@pytest.mark.parametrize("value", ["12", 12, " 12 ", "1_2", "+12"])
def test_integers_written_as_integers(value):
    assert bounds.parse_int(value, "n", minimum=0, maximum=100) == 12


@pytest.mark.parametrize(
    "value", ["12.0", 12.0, "1e1", "1e308", 1e308, True, None, "", "0x10", "1" + "0" * 100, [12]]
)
def test_anything_else_is_refused_naming_field_and_range(value):
    with pytest.raises(bounds.NumberError, match=r"^n=.* is invalid: expected an integer in \[0, "):
        bounds.parse_int(value, "n", minimum=0, maximum=10**200)


def test_bounds_and_huge_values_are_shown_short():
    with pytest.raises(bounds.NumberError) as err:
        bounds.parse_int(10**5000, "epochs", minimum=1, maximum=10)
    assert "about 5001 digits" in str(err.value) and len(str(err.value)) < 120


@pytest.mark.parametrize("value", ["nan", "inf", float("nan"), 10**400, "1" * 50, "x"])
def test_floats_are_finite(value):
    with pytest.raises(bounds.NumberError):
        bounds.parse_float(value, "x", minimum=0, maximum=1)


def test_open_bounds():
    assert bounds.parse_float("1", "x", minimum=0, maximum=1, open_min=True) == 1.0
    with pytest.raises(bounds.NumberError, match="expected a number > 0 and <= 1"):
        bounds.parse_float("0", "x", minimum=0, maximum=1, open_min=True)


def test_environment_limits(monkeypatch):
    monkeypatch.setenv("ODP_TEST_LIMIT", "abc")
    with pytest.raises(bounds.NumberError, match="ODP_TEST_LIMIT='abc' is invalid"):
        bounds.env_int("ODP_TEST_LIMIT", 5, maximum=10)
    monkeypatch.setenv("ODP_TEST_LIMIT", "")
    assert bounds.env_int("ODP_TEST_LIMIT", 5, maximum=10) == 5


def test_argparse_types_exit_with_usage():
    parser = argparse.ArgumentParser()
    parser.add_argument("--resize", type=bounds.arg_int(1, 8192))
    assert parser.parse_args(["--resize", "600"]).resize == 600
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["--resize", "100000"])
    assert exit_.value.code == 2
