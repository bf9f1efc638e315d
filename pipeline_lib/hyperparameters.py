"""The SageMaker Object Detection hyperparameter set: parse strings, validate, defaults.

SageMaker passes every value as a string in ``hyperparameters.json``. :func:`parse` turns
such a mapping into a typed :class:`Hyperparameters`, naming the key, the value and the
allowed range on any error. Unknown keys are an error, never silently ignored.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from . import bounds, localfs

BASE_NETWORKS = ("vgg-16", "resnet-50", "mobilenet-1.0", "mobilenet-0.25")
OPTIMIZERS = ("sgd", "adam", "rmsprop", "adadelta")
KV_STORES = ("local", "device", "dist_sync", "dist_async", "dist_device_sync")
#: Training augmentation (beyond SageMaker): ``ssd`` is GluonCV's SSD default (colour
#: distortion, zoom-out expansion up to 4x, constrained crop, flip); ``light`` drops the
#: expansion (objects keep their size); ``flip`` only flips.
AUGMENTATIONS = ("ssd", "light", "flip")
LR_SCHEDULES = ("step", "cosine")
#: Which graph training builds (beyond SageMaker): ``gluoncv`` (GluonCV's SSD, every base
#: network) or ``sagemaker`` (MXNet example/ssd's, the graph SageMaker's Object Detection
#: trains and serves; ``vgg-16`` and ``resnet-50``). A seed model's own format wins.
MODEL_FORMATS = ("gluoncv", "sagemaker")
SAGEMAKER_GRAPH_BASES = ("vgg-16", "resnet-50")


MAX_FILE_BYTES = 1 << 20  # hyperparameters.json is a few hundred bytes
IMAGE_SHAPE_RANGE = (300, 1024)  # SageMaker's documented range; the SSD anchors need >= 300
# Upper bounds (documented in the README's limits table): checked before anything is sized.
MAX_EPOCHS = 10_000
MAX_SAMPLES = 1_000_000_000
MAX_BATCH = 1024
MAX_LABEL_WIDTH = 2 + 5 * 10_000  # 10,000 objects in one image
MAX_RUNTIME_SECONDS = 28 * 86_400  # SageMaker's own MaxRuntimeInSeconds bound
MAX_SEED = 2**32 - 1  # numpy's seed range
MAX_STEPS = 100  # lr_scheduler_step entries


class HyperparameterError(ValueError):
    """An invalid hyperparameter value: names key, value and what is allowed (and the file,
    ``where``, when it came from one)."""

    def __init__(self, key: str, value: object, allowed: str, where: str | None = None):
        self.key, self.value, self.allowed, self.where = key, value, allowed, where
        message = f"hyperparameter '{key}'={bounds.show(value)} is invalid: expected {allowed}"
        super().__init__(f"{where}: {message}" if where else message)

    def __reduce__(self):  # picklable with its arguments (worker processes, tests)
        return type(self), (self.key, self.value, self.allowed, self.where)


class HyperparameterFileError(HyperparameterError):
    """A ``hyperparameters.json`` that is not a JSON object of values at all."""

    def __init__(self, where: str, problem: str, allowed: str = "a JSON object of strings"):
        ValueError.__init__(self, f"{where}: {problem}; expected {allowed}")
        self.key, self.value, self.allowed, self.where = "<file>", problem, allowed, where

    def __reduce__(self):
        return type(self), (self.where, self.value, self.allowed)


@dataclass(frozen=True)
class Hyperparameters:
    """SageMaker Object Detection hyperparameters (defaults as documented by AWS)."""

    num_classes: int
    num_training_samples: int
    base_network: str = "vgg-16"
    use_pretrained_model: int = 1
    epochs: int = 30
    learning_rate: float = 0.001
    lr_scheduler_step: tuple[int, ...] = ()
    lr_scheduler_factor: float = 0.1
    mini_batch_size: int = 32
    momentum: float = 0.9
    weight_decay: float = 0.0005
    optimizer: str = "sgd"
    image_shape: int = 300
    label_width: int = 350
    nms_threshold: float = 0.45
    overlap_threshold: float = 0.5
    freeze_layer_pattern: str = ""
    kv_store: str = "device"
    early_stopping: bool = False
    early_stopping_min_epochs: int = 10
    early_stopping_patience: int = 5
    early_stopping_tolerance: float = 0.0
    # Beyond SageMaker
    seed: int = 0
    num_workers: int = -1  # -1: one data worker per core
    max_runtime_seconds: int = 0  # 0: no limit
    # the learning-rate schedule spans this many seconds (default: max_runtime_seconds);
    # epochs becomes an upper bound (training/budget.py). 0: the schedule spans epochs.
    time_budget_seconds: int = 0
    augmentation: str = "ssd"
    lr_schedule: str = "step"  # step: lr_scheduler_step/factor; cosine: to 0 at `epochs`
    lr_warmup_epochs: int = 0  # linear warm-up from lr/10 over these first epochs
    model_format: str = "gluoncv"
    extra: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def to_strings(self, sagemaker_only: bool = False) -> dict[str, str]:
        """All values as SageMaker-style strings (for hyperparams.json / hyperparameters.json);
        ``sagemaker_only``: only SageMaker's own names (what its jobs write)."""
        out = {}
        for f in fields(self):
            if f.name == "extra" or (sagemaker_only and f.name not in SAGEMAKER_NAMES):
                continue
            out[f.name] = _to_string(getattr(self, f.name))
        return out


def _to_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def _int(key: str, minimum: int, maximum: int) -> Callable:
    """An integer hyperparameter, through the one bounded parser (``"12"``, not ``"12.0"``
    or ``"1e3"``)."""

    def conv(raw: str) -> int:
        try:
            return bounds.parse_int(raw, key, minimum=minimum, maximum=maximum)
        except bounds.NumberError as exc:
            raise HyperparameterError(key, raw, exc.expected) from None

    return conv


def _float(key: str, minimum: float, maximum: float, open_min: bool = False) -> Callable:
    def conv(raw: str) -> float:
        try:
            return bounds.parse_float(raw, key, minimum=minimum, maximum=maximum,
                                      open_min=open_min)  # fmt: skip
        except bounds.NumberError as exc:
            raise HyperparameterError(key, raw, exc.expected) from None

    return conv


def _choice(key: str, choices: tuple[str, ...]) -> Callable:
    def conv(raw: str) -> str:
        v = str(raw).strip().lower()
        if v not in choices:
            raise HyperparameterError(key, raw, f"one of {', '.join(choices)}")
        return v

    return conv


def _bool(key: str) -> Callable:
    def conv(raw: str) -> bool:
        v = str(raw).strip().lower()
        if v in ("true", "1", "yes"):
            return True
        if v in ("false", "0", "no", ""):
            return False
        raise HyperparameterError(key, raw, "true or false")

    return conv


def _steps(raw: str) -> tuple[int, ...]:
    text = str(raw).strip()
    if text.lower() in ("", "none"):
        return ()
    parts = text.split(",")
    if len(parts) > MAX_STEPS:
        raise HyperparameterError("lr_scheduler_step", raw, f"at most {MAX_STEPS} epoch numbers")
    try:
        steps = tuple(bounds.parse_int(s, "lr_scheduler_step", maximum=MAX_EPOCHS) for s in parts)
    except bounds.NumberError:
        raise HyperparameterError(
            "lr_scheduler_step", raw, f"comma-separated epoch numbers <= {MAX_EPOCHS}, e.g. '10,20'"
        ) from None
    if any(s <= 0 for s in steps) or list(steps) != sorted(set(steps)):
        raise HyperparameterError(
            "lr_scheduler_step", raw, "strictly increasing positive epoch numbers"
        )
    return steps


def _pattern(raw: str) -> str:
    text = str(raw).strip()
    if text.lower() in ("", "false", "none"):
        return ""
    try:
        re.compile(text)
    except re.error as exc:
        raise HyperparameterError("freeze_layer_pattern", raw, f"a valid regex ({exc})") from None
    return text


_CONVERTERS: dict[str, Callable[[str], Any]] = {
    "num_classes": _int("num_classes", 1, bounds.MAX_CLASSES),
    "num_training_samples": _int("num_training_samples", 1, MAX_SAMPLES),
    "base_network": _choice("base_network", BASE_NETWORKS),
    "use_pretrained_model": _int("use_pretrained_model", 0, 1),
    "epochs": _int("epochs", 1, MAX_EPOCHS),
    "learning_rate": _float("learning_rate", 0, 1, open_min=True),
    "lr_scheduler_step": _steps,
    "lr_scheduler_factor": _float("lr_scheduler_factor", 0, 1, open_min=True),
    "mini_batch_size": _int("mini_batch_size", 1, MAX_BATCH),
    "momentum": _float("momentum", 0, 0.999),
    "weight_decay": _float("weight_decay", 0, 0.999),
    "optimizer": _choice("optimizer", OPTIMIZERS),
    "image_shape": _int("image_shape", *IMAGE_SHAPE_RANGE),
    "label_width": _int("label_width", 7, MAX_LABEL_WIDTH),
    "nms_threshold": _float("nms_threshold", 0, 0.999, open_min=True),
    "overlap_threshold": _float("overlap_threshold", 0, 0.999, open_min=True),
    "freeze_layer_pattern": _pattern,
    "kv_store": _choice("kv_store", KV_STORES),
    "early_stopping": _bool("early_stopping"),
    "early_stopping_min_epochs": _int("early_stopping_min_epochs", 1, MAX_EPOCHS),
    "early_stopping_patience": _int("early_stopping_patience", 1, MAX_EPOCHS),
    "early_stopping_tolerance": _float("early_stopping_tolerance", 0, 1),
    "seed": _int("seed", 0, MAX_SEED),
    "num_workers": _int("num_workers", -1, 64),
    "max_runtime_seconds": _int("max_runtime_seconds", 0, MAX_RUNTIME_SECONDS),
    "time_budget_seconds": _int("time_budget_seconds", 0, MAX_RUNTIME_SECONDS),
    "augmentation": _choice("augmentation", AUGMENTATIONS),
    "lr_schedule": _choice("lr_schedule", LR_SCHEDULES),
    "lr_warmup_epochs": _int("lr_warmup_epochs", 0, MAX_EPOCHS),
    "model_format": _choice("model_format", MODEL_FORMATS),
}
REQUIRED = ("num_classes", "num_training_samples")
#: Every hyperparameter name training accepts.
NAMES: tuple[str, ...] = tuple(_CONVERTERS)
#: SageMaker Object Detection's own names (the rest are odp's extras).
SAGEMAKER_NAMES: tuple[str, ...] = NAMES[: NAMES.index("early_stopping_tolerance") + 1]


def parse(raw: Mapping[str, object]) -> Hyperparameters:
    """Parse a SageMaker hyperparameter mapping (string values) into typed values."""
    unknown = sorted(set(raw) - set(_CONVERTERS))
    if unknown:
        raise HyperparameterError(
            unknown[0], raw[unknown[0]], f"a known hyperparameter (unknown keys: {unknown})"
        )
    missing = [k for k in REQUIRED if k not in raw]
    if missing:
        raise HyperparameterError(missing[0], None, "a value: it is required")
    values = {k: _CONVERTERS[k](_scalar(k, v)) for k, v in raw.items()}
    hp = Hyperparameters(**values)
    if hp.model_format == "sagemaker" and hp.base_network not in SAGEMAKER_GRAPH_BASES:
        raise HyperparameterError(
            "model_format",
            raw["model_format"],
            f"gluoncv for base_network={hp.base_network} (SageMaker's graph has the "
            f"{' and '.join(SAGEMAKER_GRAPH_BASES)} bases)",
        )
    return hp


def parse_value(key: str, raw: object) -> Any:
    """One hyperparameter's typed value (the same rules as :func:`parse`)."""
    if key not in _CONVERTERS:
        raise HyperparameterError(key, raw, "a known hyperparameter")
    return _CONVERTERS[key](_scalar(key, raw))


def _scalar(key: str, value: object) -> str:
    """A value as SageMaker's string; a JSON object or list is refused (never ``str()``-ed:
    a deeply nested one would not even print)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float) or value is None:
        return _to_string(value)
    kind = "a JSON object" if isinstance(value, dict) else f"a {type(value).__name__}"
    raise HyperparameterError(key, kind, "a string value (SageMaker passes strings)")


def check_user_values(raw: Mapping[str, object]) -> None:
    """Check what a user sets before the data is known (a DAG run's Params, a tuning space).

    The same rules as :func:`parse`; only the keys the data dictates (``REQUIRED``: counted
    from the dataset when training starts) may be absent.
    """
    counted_later = {k: "1" for k in REQUIRED if k not in raw}
    parse({**counted_later, **raw})


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"key {key!r} appears twice")
        seen[key] = value
    return seen


def load(path: str) -> Hyperparameters:
    """Parse ``hyperparameters.json``. Anything wrong with it (not UTF-8 JSON, not an object,
    a duplicated, unknown or missing key, a bad value) is a :class:`HyperparameterError`
    whose message starts with the file."""
    try:  # a regular file only: a FIFO is refused, never waited on
        raw = localfs.read_regular(path, max_bytes=MAX_FILE_BYTES)
    except localfs.FileTooLargeError:
        raise HyperparameterFileError(path, f"larger than {MAX_FILE_BYTES} bytes") from None
    except localfs.NotRegularFileError as exc:
        raise HyperparameterFileError(path, str(exc).removeprefix(f"{path}: ")) from None
    try:
        data = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys)
    except UnicodeDecodeError as exc:
        raise HyperparameterFileError(path, f"not UTF-8 text ({exc.reason})") from None
    except ValueError as exc:  # JSONDecodeError, or a duplicated key
        raise HyperparameterFileError(path, f"not valid JSON ({exc})") from None
    except RecursionError:
        raise HyperparameterFileError(path, "JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise HyperparameterFileError(path, f"a JSON {type(data).__name__}, not an object")
    try:
        return parse(data)
    except HyperparameterError as exc:
        raise HyperparameterError(exc.key, exc.value, exc.allowed, where=path) from None


def replace(hp: Hyperparameters, **changes: Any) -> Hyperparameters:
    """A copy with some values changed."""
    return dataclasses.replace(hp, **changes)
