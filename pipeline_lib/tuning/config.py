"""A tuning job's configuration file, as SageMaker tuning jobs are written.

Three shapes are accepted, so an existing SageMaker configuration works unchanged:

* the ``CreateHyperParameterTuningJob`` request: ``HyperParameterTuningJobConfig`` (with
  ``ParameterRanges``, ``Strategy``, ``ResourceLimits``, ``TrainingJobEarlyStoppingType``,
  ``HyperParameterTuningJobObjective``) and ``TrainingJobDefinition.StaticHyperParameters``;
* a ``HyperParameterTuningJobConfig`` object alone (``ParameterRanges`` at the top);
* a bare ``ParameterRanges`` object.

One extra beyond SageMaker, in ``ResourceLimits``: ``MaxTotalTrainingEpochs`` (an epoch
budget shared by all trials, see :mod:`.budget`) and ``MaxTrainingEpochsPerJob`` (the most
one trial may train of it).

Everything is checked before any trial starts: a :class:`~.space.SpaceError` names the field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..hyperparameters import REQUIRED, HyperparameterError, check_user_values
from .space import RANGE_KINDS, SearchSpace, SpaceError, parse_ranges

OBJECTIVE = "validation:mAP"
MAX_FILE_BYTES = 1 << 20
#: SageMaker Strategy -> (sampler, pruner when early stopping is on)
STRATEGIES = {
    "Bayesian": ("tpe", "median"),
    "Random": ("random", "median"),
    "Hyperband": ("tpe", "hyperband"),
}
_JOB_CONFIG = "HyperParameterTuningJobConfig"
#: The ResourceLimits read: SageMaker's, then odp's epoch budget (SageMaker has none).
LIMITS = (
    "MaxNumberOfTrainingJobs",
    "MaxParallelTrainingJobs",
    "MaxTotalTrainingEpochs",
    "MaxTrainingEpochsPerJob",
)


@dataclass(frozen=True)
class TuningConfig:
    """What a configuration file says; ``None`` where it is silent (the caller's default)."""

    space: SearchSpace
    static: dict[str, str] = field(default_factory=dict)
    sampler: str | None = None  # "tpe" | "random"
    pruner: str | None = None  # "median" | "hyperband" | "none"
    max_trials: int | None = None
    max_parallel: int | None = None
    epoch_budget: int | None = None  # ResourceLimits.MaxTotalTrainingEpochs (odp's extra)
    max_trial_epochs: int | None = None  # ResourceLimits.MaxTrainingEpochsPerJob


def load_config(path: str | Path) -> TuningConfig:
    """Read and check a tuning configuration file (see the module docstring)."""
    where = str(path)
    with open(path, "rb") as fh:
        raw = fh.read(MAX_FILE_BYTES + 1)
    if len(raw) > MAX_FILE_BYTES:
        raise SpaceError(where, f"larger than {MAX_FILE_BYTES} bytes")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise SpaceError(where, f"not valid JSON ({exc})") from None
    return parse_config(data, where)


def parse_config(data: object, where: str = "space") -> TuningConfig:
    """Check a configuration object in any of the three shapes."""
    if not isinstance(data, Mapping):
        raise SpaceError(where, "expected a JSON object (ParameterRanges or a tuning job config)")
    static: Mapping[str, Any] = {}
    if _JOB_CONFIG in data:
        job, base = data[_JOB_CONFIG], f"{where}: {_JOB_CONFIG}"
        definition = data.get("TrainingJobDefinition") or {}
        if not isinstance(definition, Mapping):
            raise SpaceError(f"{where}: TrainingJobDefinition", "expected an object")
        static = definition.get("StaticHyperParameters") or {}
        static_where = f"{where}: TrainingJobDefinition.StaticHyperParameters"
    elif "ParameterRanges" in data:
        job, base = data, f"{where}: "
        static = data.get("StaticHyperParameters") or {}
        static_where = f"{where}: StaticHyperParameters"
    elif set(data) & set(RANGE_KINDS) or not data:
        return TuningConfig(parse_ranges(data, f"{where}: ParameterRanges"))
    else:
        raise SpaceError(
            where, f"expected ParameterRanges or {_JOB_CONFIG}, found keys {sorted(data)[:5]}"
        )
    if not isinstance(job, Mapping):
        raise SpaceError(base, "expected an object")
    space = parse_ranges(job.get("ParameterRanges"), _sub(base, "ParameterRanges"))
    checked = _static(static, static_where, space)
    sampler, pruner = _strategy(job, base)
    limits = job.get("ResourceLimits") or {}
    if not isinstance(limits, Mapping):
        raise SpaceError(_sub(base, "ResourceLimits"), "expected an object")
    limit = {k: _positive(limits, _sub(base, f"ResourceLimits.{k}"), k) for k in LIMITS}
    return TuningConfig(
        space,
        checked,
        sampler,
        pruner,
        limit["MaxNumberOfTrainingJobs"],
        limit["MaxParallelTrainingJobs"],
        limit["MaxTotalTrainingEpochs"],
        limit["MaxTrainingEpochsPerJob"],
    )


def _sub(base: str, key: str) -> str:
    """The JSON path of ``key`` under ``base`` (``file: A.B``)."""
    return base + key if base.endswith(": ") else f"{base}.{key}"


def _static(static: object, where: str, space: SearchSpace) -> dict[str, str]:
    if not isinstance(static, Mapping):
        raise SpaceError(where, "expected an object of name -> string value")
    values = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in static.items()}
    for name in values:
        if name in space.names:
            raise SpaceError(f"{where}.{name}", "is also tuned in ParameterRanges; give it once")
    # SageMaker's tuning jobs carry their own metric definitions; not a hyperparameter here.
    values = {k: v for k, v in values.items() if not k.startswith("_tuning_objective")}
    try:
        check_user_values(values)
    except HyperparameterError as exc:
        raise SpaceError(f"{where}.{exc.key}", f"{exc.value!r}: expected {exc.allowed}") from None
    return {k: v for k, v in values.items() if k not in REQUIRED}


def _strategy(job: Mapping, base: str) -> tuple[str | None, str | None]:
    strategy = job.get("Strategy")
    if strategy is not None and strategy not in STRATEGIES:
        raise SpaceError(
            _sub(base, "Strategy"), f"{strategy!r}: expected one of {', '.join(STRATEGIES)}"
        )
    sampler, pruner = STRATEGIES.get(strategy, (None, None))
    early = job.get("TrainingJobEarlyStoppingType")
    if early not in (None, "Off", "Auto"):
        raise SpaceError(
            _sub(base, "TrainingJobEarlyStoppingType"), f"{early!r}: expected Off or Auto"
        )
    if early == "Off":
        pruner = "none"
    elif early == "Auto" and pruner is None:
        pruner = "median"
    objective = job.get("HyperParameterTuningJobObjective")
    if objective is not None:
        if not isinstance(objective, Mapping) or objective.get("MetricName") != OBJECTIVE:
            raise SpaceError(
                _sub(base, "HyperParameterTuningJobObjective.MetricName"),
                f"expected {OBJECTIVE!r} (the metric this algorithm reports)",
            )
        if objective.get("Type", "Maximize") != "Maximize":
            raise SpaceError(
                _sub(base, "HyperParameterTuningJobObjective.Type"), f"{OBJECTIVE} is maximized"
            )
    return sampler, pruner


def _positive(limits: Mapping, field: str, key: str) -> int | None:
    value = limits.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpaceError(field, f"{value!r}: expected an integer >= 1")
    return value
