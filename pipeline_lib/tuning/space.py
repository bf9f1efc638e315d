"""A search space written as SageMaker's ``ParameterRanges`` (``CreateHyperParameterTuningJob``).

``ContinuousParameterRanges``, ``IntegerParameterRanges`` and ``CategoricalParameterRanges``
with SageMaker's field names and string values, and ``ScalingType`` honoured:

* ``Linear``: uniform over [MinValue, MaxValue].
* ``Logarithmic``: uniform in log space (MinValue > 0).
* ``ReverseLogarithmic``: ``1 - x`` uniform in log space, for continuous ranges inside
  [0, 1) (momentum-like values crowding near 1).
* ``Auto``: logarithmic when the range is positive and spans at least two orders of
  magnitude (``MaxValue / MinValue >= 100``), linear otherwise.

Every range is checked against the hyperparameter rules of :mod:`pipeline_lib.hyperparameters`
before any trial starts; a refusal is a :class:`SpaceError` naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from ..hyperparameters import NAMES, REQUIRED, HyperparameterError, parse_value

if TYPE_CHECKING:
    import optuna

RANGE_KINDS = ("ContinuousParameterRanges", "IntegerParameterRanges", "CategoricalParameterRanges")
MAX_RANGES = 30  # SageMaker's limit on tunable hyperparameters per job
MAX_CATEGORICAL_VALUES = 30  # SageMaker's limit on the values of one categorical range
AUTO_LOG_SPAN = 100.0  # Auto picks log scale from two orders of magnitude up
_REVERSE_PREFIX = "1-"  # name of the variable sampled for a ReverseLogarithmic range


class SpaceError(ValueError):
    """An invalid search space: ``field`` is the JSON path of the offending value."""

    def __init__(self, field: str, problem: str):
        self.field, self.problem = field, problem
        super().__init__(f"{field}: {problem}")

    def __reduce__(self):
        return type(self), (self.field, self.problem)


class ScalingType(StrEnum):
    """SageMaker's ``ScalingType`` of a numeric range."""

    AUTO = "Auto"
    LINEAR = "Linear"
    LOGARITHMIC = "Logarithmic"
    REVERSE_LOGARITHMIC = "ReverseLogarithmic"


@dataclass(frozen=True)
class NumericRange:
    """A continuous or integer range, its scale resolved (never ``Auto``)."""

    name: str
    low: float
    high: float
    scaling: ScalingType
    integer: bool

    def suggest(self, trial: optuna.Trial) -> str:
        """Sample this range on ``trial``; the value as SageMaker's string."""
        if self.integer:
            log = self.scaling is ScalingType.LOGARITHMIC
            return str(trial.suggest_int(self.name, int(self.low), int(self.high), log=log))
        if self.scaling is ScalingType.REVERSE_LOGARITHMIC:
            # 1 - x is log-uniform over [1 - high, 1 - low]; the study records that variable.
            u = trial.suggest_float(
                _REVERSE_PREFIX + self.name, 1 - self.high, 1 - self.low, log=True
            )
            return repr(min(self.high, max(self.low, 1 - u)))
        log = self.scaling is ScalingType.LOGARITHMIC
        return repr(trial.suggest_float(self.name, self.low, self.high, log=log))


@dataclass(frozen=True)
class CategoricalRange:
    """A list of values, tried as given (strings, as SageMaker passes them)."""

    name: str
    values: tuple[str, ...]

    def suggest(self, trial: optuna.Trial) -> str:
        return str(trial.suggest_categorical(self.name, list(self.values)))


Range = NumericRange | CategoricalRange


@dataclass(frozen=True)
class SearchSpace:
    """The tunable hyperparameters of a tuning job, in the order they were given."""

    ranges: tuple[Range, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.ranges)

    def suggest(self, trial: optuna.Trial) -> dict[str, str]:
        """One trial's hyperparameters (SageMaker names, string values)."""
        return {r.name: r.suggest(trial) for r in self.ranges}

    def to_json(self) -> dict[str, list[dict[str, Any]]]:
        """The space back in ``ParameterRanges`` form, scales resolved (kept with the study)."""
        out: dict[str, list[dict[str, Any]]] = {k: [] for k in RANGE_KINDS}
        for r in self.ranges:
            if isinstance(r, CategoricalRange):
                out["CategoricalParameterRanges"].append({"Name": r.name, "Values": list(r.values)})
                continue
            kind = "IntegerParameterRanges" if r.integer else "ContinuousParameterRanges"
            low, high = (
                (str(int(r.low)), str(int(r.high))) if r.integer else (repr(r.low), repr(r.high))
            )
            out[kind].append(
                {"Name": r.name, "MinValue": low, "MaxValue": high, "ScalingType": r.scaling.value}
            )
        return {k: v for k, v in out.items() if v}


def parse_ranges(raw: object, where: str = "ParameterRanges") -> SearchSpace:
    """Check and parse a ``ParameterRanges`` object; :class:`SpaceError` names the field."""
    if not isinstance(raw, Mapping):
        raise SpaceError(where, f"expected an object with {', '.join(RANGE_KINDS)}")
    unknown = sorted(set(raw) - set(RANGE_KINDS))
    if unknown:
        raise SpaceError(
            f"{where}.{unknown[0]}",
            f"unknown kind of range; expected one of {', '.join(RANGE_KINDS)}",
        )
    ranges: list[Range] = []
    seen: dict[str, str] = {}
    for kind in RANGE_KINDS:
        items = raw.get(kind, [])
        if not isinstance(items, list):
            raise SpaceError(f"{where}.{kind}", "expected a list of ranges")
        for i, item in enumerate(items):
            field = f"{where}.{kind}[{i}]"
            rng = _parse_one(kind, item, field)
            if rng.name in seen:
                raise SpaceError(
                    f"{field}.Name", f"{rng.name!r} is already tuned by {seen[rng.name]}"
                )
            seen[rng.name] = field
            ranges.append(rng)
    if not ranges:
        raise SpaceError(where, "no hyperparameter to tune: give at least one range")
    if len(ranges) > MAX_RANGES:
        raise SpaceError(where, f"{len(ranges)} ranges; SageMaker allows at most {MAX_RANGES}")
    return SearchSpace(tuple(ranges))


_FIELDS = {
    "ContinuousParameterRanges": {"Name", "MinValue", "MaxValue", "ScalingType"},
    "IntegerParameterRanges": {"Name", "MinValue", "MaxValue", "ScalingType"},
    "CategoricalParameterRanges": {"Name", "Values"},
}


def _parse_one(kind: str, item: object, field: str) -> Range:
    if not isinstance(item, Mapping):
        raise SpaceError(field, "expected an object")
    extra = sorted(set(item) - _FIELDS[kind])
    if extra:
        raise SpaceError(f"{field}.{extra[0]}", f"unknown field; expected {sorted(_FIELDS[kind])}")
    name = _name(item, field)
    if kind == "CategoricalParameterRanges":
        return _categorical(name, item, field)
    return _numeric(name, item, field, integer=kind == "IntegerParameterRanges")


def _name(item: Mapping, field: str) -> str:
    name = item.get("Name")
    if not isinstance(name, str) or not name:
        raise SpaceError(f"{field}.Name", "expected a hyperparameter name")
    if name in REQUIRED:
        raise SpaceError(f"{field}.Name", f"{name!r} is counted from the data; it cannot be tuned")
    if name not in NAMES:
        raise SpaceError(f"{field}.Name", f"unknown hyperparameter {name!r}")
    return name


def _typed(name: str, raw: object, field: str) -> Any:
    """``raw`` (a SageMaker string; a JSON number is taken too) by the hyperparameter's rule."""
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise SpaceError(field, f"expected a string value, got {type(raw).__name__}")
    try:
        return parse_value(name, raw)
    except HyperparameterError as exc:
        raise SpaceError(field, f"{raw!r} is not a valid {name}: expected {exc.allowed}") from None


def _numeric(name: str, item: Mapping, field: str, integer: bool) -> NumericRange:
    for key in ("MinValue", "MaxValue"):
        if key not in item:
            raise SpaceError(f"{field}.{key}", "required")
    low = _typed(name, item["MinValue"], f"{field}.MinValue")
    high = _typed(name, item["MaxValue"], f"{field}.MaxValue")
    kind_name = "an IntegerParameterRanges" if integer else "a ContinuousParameterRanges"
    if isinstance(low, bool) or not isinstance(low, int | float):
        raise SpaceError(
            f"{field}.Name", f"{name} takes {type(low).__name__} values, not {kind_name} range"
        )
    if not integer and isinstance(low, int):
        raise SpaceError(f"{field}.Name", f"{name} is an integer: use IntegerParameterRanges")
    if integer and not isinstance(low, int):
        raise SpaceError(f"{field}.Name", f"{name} is continuous: use ContinuousParameterRanges")
    if not low < high:
        raise SpaceError(
            f"{field}.MaxValue", f"empty range: MaxValue {high} must be greater than MinValue {low}"
        )
    scaling = _scaling(item.get("ScalingType", "Auto"), f"{field}.ScalingType")
    return NumericRange(name, low, high, _resolve(scaling, low, high, integer, field), integer)


def _scaling(raw: object, field: str) -> ScalingType:
    try:
        return ScalingType(raw)
    except ValueError:
        allowed = ", ".join(s.value for s in ScalingType)
        raise SpaceError(field, f"{raw!r}: expected one of {allowed}") from None


def _resolve(
    scaling: ScalingType, low: float, high: float, integer: bool, field: str
) -> ScalingType:
    if scaling is ScalingType.AUTO:
        log = low > 0 and high / low >= AUTO_LOG_SPAN
        return ScalingType.LOGARITHMIC if log else ScalingType.LINEAR
    if scaling is ScalingType.LOGARITHMIC and low <= 0:
        raise SpaceError(
            f"{field}.ScalingType", f"Logarithmic needs MinValue > 0 (MinValue is {low})"
        )
    if scaling is ScalingType.REVERSE_LOGARITHMIC:
        if integer:
            raise SpaceError(
                f"{field}.ScalingType", "ReverseLogarithmic applies to continuous ranges only"
            )
        if not (0 <= low and high < 1):
            raise SpaceError(
                f"{field}.ScalingType",
                f"ReverseLogarithmic needs a range inside [0, 1) (got [{low}, {high}])",
            )
    return scaling


def _categorical(name: str, item: Mapping, field: str) -> CategoricalRange:
    values = item.get("Values")
    if not isinstance(values, list) or not values:
        raise SpaceError(f"{field}.Values", "expected a non-empty list of values")
    if len(values) > MAX_CATEGORICAL_VALUES:
        raise SpaceError(
            f"{field}.Values", f"{len(values)} values; at most {MAX_CATEGORICAL_VALUES}"
        )
    out: list[str] = []
    for i, raw in enumerate(values):
        _typed(name, raw, f"{field}.Values[{i}]")
        text = str(raw)
        if text in out:
            raise SpaceError(f"{field}.Values[{i}]", f"{text!r} is listed twice")
        out.append(text)
    return CategoricalRange(name, tuple(out))
