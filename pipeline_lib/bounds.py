"""The one parser of the numbers a user sets: bounded, and integers that are integers.

Every hyperparameter, DAG Param, Kubernetes setting, environment limit, ``odp`` option and
detection field that takes a number goes through :func:`parse_int` or :func:`parse_float`,
each with a documented upper bound, before anything is sized by it:

* an integer is written as one: ``12`` or ``"12"`` (``"1_000"`` too), never ``12.0``,
  ``"1e3"`` or ``1e308`` (a float that happens to be whole is refused, so ``epochs=1e308``
  cannot become a 309-digit loop bound);
* a number is finite (no NaN or infinity) and, like an integer, inside ``[minimum,
  maximum]``; text longer than :data:`MAX_TEXT` characters is refused before conversion;
* a bad value is a :class:`NumberError` (a ``ValueError``) naming the field, the value (cut
  short) and the allowed range.

Standard library only, the lowest layer: everything may use it.
"""

from __future__ import annotations

import math
import os
import re

MAX_TEXT = 40  # characters of a number's text: a 64-bit integer needs 20
#: Most classes a dataset or model may have (class ids ``0..MAX_CLASSES - 1``): nothing is
#: ever sized by a bigger id.
MAX_CLASSES = 10_000
_INT = re.compile(r"[+-]?[0-9]+(?:_[0-9]+)*")


class NumberError(ValueError):
    """A value that is not a number in its allowed range: names field, value, range."""

    def __init__(self, name: str, value: object, expected: str):
        self.name, self.value, self.expected = name, value, expected
        super().__init__(f"{name}={show(value)} is invalid: expected {expected}")

    def __reduce__(self):  # picklable (worker processes)
        return type(self), (self.name, self.value, self.expected)


def show(value: object, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters (a value may be huge)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        digits = int(value.bit_length() * math.log10(2)) + 1  # str() of it may not even work
        return f"an integer of about {digits} digits"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe(kind: str, minimum: float | None, maximum: float | None, *,
             open_min: bool = False, open_max: bool = False) -> str:  # fmt: skip
    """``an integer in [1, 10000]``, ``a number > 0 and <= 1``, ..."""
    lo = None if minimum is None else f"{'>' if open_min else '>='} {minimum}"
    hi = None if maximum is None else f"{'<' if open_max else '<='} {maximum}"
    if lo and hi and not (open_min or open_max):
        return f"{kind} in [{minimum}, {maximum}]"
    return " and ".join([kind + (f" {lo}" if lo else ""), *([hi] if hi else [])])


def parse_int(
    value: object,
    name: str,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
) -> int:
    """``value`` (an ``int`` or its decimal text) as an integer in ``[minimum, maximum]``."""
    expected = describe("an integer", minimum, maximum)
    if isinstance(value, bool):
        raise NumberError(name, value, expected)
    if isinstance(value, int):
        number = value
    elif isinstance(value, str):
        text = value.strip()
        if len(text) > MAX_TEXT or not _INT.fullmatch(text):
            raise NumberError(name, value, expected)
        number = int(text)
    else:
        raise NumberError(name, value, expected)
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise NumberError(name, value, expected)
    return number


def parse_float(
    value: object,
    name: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    open_min: bool = False,
    open_max: bool = False,
) -> float:
    """``value`` (a number or its text) as a finite float in the range (``open_min`` /
    ``open_max``: the bound itself excluded)."""
    expected = describe("a number", minimum, maximum, open_min=open_min, open_max=open_max)
    if isinstance(value, bool):
        raise NumberError(name, value, expected)
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:  # an int beyond float range
            raise NumberError(name, value, expected) from None
    elif isinstance(value, str) and len(value.strip()) <= MAX_TEXT:
        try:
            number = float(value.strip())
        except ValueError:
            raise NumberError(name, value, expected) from None
    else:
        raise NumberError(name, value, expected)
    if not math.isfinite(number):
        raise NumberError(name, value, expected)
    if minimum is not None and (number <= minimum if open_min else number < minimum):
        raise NumberError(name, value, expected)
    if maximum is not None and (number >= maximum if open_max else number > maximum):
        raise NumberError(name, value, expected)
    return number


def env_int(variable: str, default: int, *, minimum: int = 1, maximum: int) -> int:
    """A limit from environment variable ``variable`` (unset or empty: ``default``), bounded
    like every other number; a bad value is a :class:`NumberError` naming the variable."""
    raw = os.environ.get(variable, "").strip()
    if not raw:
        return default
    return parse_int(raw, variable, minimum=minimum, maximum=maximum)


def arg_int(minimum: int | None = None, maximum: int | None = None):
    """An ``argparse`` ``type=`` for a bounded integer option (a bad value: exit 2)."""
    import argparse

    def convert(text: str) -> int:
        try:
            return parse_int(text, "value", minimum=minimum, maximum=maximum)
        except NumberError as exc:
            raise argparse.ArgumentTypeError(f"{show(text)}: expected {exc.expected}") from None

    convert.__name__ = "integer"
    return convert


def arg_float(minimum: float | None = None, maximum: float | None = None, **kwargs):
    """An ``argparse`` ``type=`` for a bounded, finite number option."""
    import argparse

    def convert(text: str) -> float:
        try:
            return parse_float(text, "value", minimum=minimum, maximum=maximum, **kwargs)
        except NumberError as exc:
            raise argparse.ArgumentTypeError(f"{show(text)}: expected {exc.expected}") from None

    convert.__name__ = "number"
    return convert
