"""The SageMaker training-container layout (``/opt/ml``): how to lay one out and read its config."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .. import localfs
from ..hyperparameters import Hyperparameters
from ..hyperparameters import load as load_hyperparameters
from .errors import TrainingError

CONTENT_TYPES = {
    "image+json": "application/x-image",
    "recordio": "application/x-recordio",
    "manifest": "application/x-recordio",
}


@dataclass(frozen=True)
class MLPaths:
    """The SageMaker container layout under one root."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "input" / "config"

    @property
    def data(self) -> Path:
        return self.root / "input" / "data"

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def output(self) -> Path:
        return self.root / "output"

    def channel(self, name: str) -> Path:
        return self.data / name


def prepare_ml_root(
    ml_root: str | Path,
    channels: Mapping[str, str | Path],
    hyperparameters: Mapping[str, object],
    input_format: str = "image+json",
    *,
    hosts: tuple[str, ...] = ("algo-1",),
    current_host: str = "algo-1",
    attribute_names: tuple[str, ...] = ("source-ref", "bounding-box"),
) -> MLPaths:
    """Write config JSONs and link each channel folder into ``ML_ROOT/input/data``.

    Channels are symlinked (no copy) to the absolute path given, not to its resolved target:
    a channel folder that is itself a symlink leaving its dataset stays visible to training,
    which refuses it as ``odp validate`` does. Hyperparameter values are written as strings.
    """
    paths = MLPaths(Path(ml_root))
    paths.config.mkdir(parents=True, exist_ok=True)
    paths.data.mkdir(parents=True, exist_ok=True)
    data_cfg = {}
    for name, src in channels.items():
        dest = paths.channel(name)
        if dest.is_symlink() or dest.is_file():
            dest.unlink()
        elif dest.is_dir():
            shutil.rmtree(dest)
        os.symlink(os.path.abspath(src), dest, target_is_directory=True)
        cfg: dict = {
            "ContentType": CONTENT_TYPES[input_format]
            if not name.endswith("_annotation") and name != "model"
            else "application/json",
            "TrainingInputMode": "File",
            "S3DistributionType": "FullyReplicated",
            "RecordWrapperType": "None",
        }
        if input_format == "manifest" and name in ("train", "validation"):
            cfg["RecordWrapperType"] = "RecordIO"
            cfg["AttributeNames"] = list(attribute_names)
        data_cfg[name] = cfg
    (paths.config / "hyperparameters.json").write_text(
        json.dumps({k: str(v) for k, v in hyperparameters.items()}, indent=1)
    )
    (paths.config / "inputdataconfig.json").write_text(json.dumps(data_cfg, indent=1))
    (paths.config / "resourceconfig.json").write_text(
        json.dumps({"current_host": current_host, "hosts": list(hosts)}, indent=1)
    )
    return paths


@dataclass(frozen=True)
class JobConfig:
    """The three config files of a training job, read."""

    hyperparameters: Hyperparameters
    input_data: dict  # inputdataconfig.json: channel -> ContentType, AttributeNames, ...
    resource: dict  # resourceconfig.json: current_host, hosts (one host when absent)

    @property
    def hosts(self) -> list[str]:
        return self.resource.get("hosts", ["algo-1"])

    @property
    def current_host(self) -> str:
        return self.resource.get("current_host", self.hosts[0])


MAX_CONFIG_BYTES = 1 << 20  # inputdataconfig.json / resourceconfig.json: a few hundred bytes


def read_config(paths: MLPaths) -> JobConfig:
    """Read ``input/config``: hyperparameters.json is required, the others are optional."""
    hp_path = paths.config / "hyperparameters.json"
    if not os.path.lexists(hp_path):
        raise FileNotFoundError(f"{hp_path} not found")
    hp = load_hyperparameters(str(hp_path))
    data_cfg = _read_json(paths.config / "inputdataconfig.json")
    resource = _read_json(paths.config / "resourceconfig.json") or {
        "current_host": "algo-1",
        "hosts": ["algo-1"],
    }
    return JobConfig(hp, data_cfg, resource)


def _read_json(path: Path) -> dict:
    """An optional config file: ``{}`` when absent; one that is not a JSON object is the
    job's configuration error, naming the file."""
    if not os.path.lexists(path):
        return {}
    try:  # a regular file only (a FIFO is refused, never waited on), bounded
        data = json.loads(localfs.read_regular(path, max_bytes=MAX_CONFIG_BYTES).decode("utf-8"))
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise TrainingError(f"{path} is not valid JSON: {exc}") from None
    except RecursionError:
        raise TrainingError(f"{path} is not valid JSON: nested too deeply") from None
    except (localfs.NotRegularFileError, localfs.FileTooLargeError) as exc:
        raise TrainingError(str(exc)) from None
    if not isinstance(data, dict):
        raise TrainingError(f"{path} holds a JSON {type(data).__name__}; expected an object")
    return data
