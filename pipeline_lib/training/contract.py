"""The SageMaker training-container layout (``/opt/ml``) and how to lay one out."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

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
    hosts: tuple[str, ...] = ("algo-1",),
    current_host: str = "algo-1",
    attribute_names: tuple[str, ...] = ("source-ref", "bounding-box"),
) -> MLPaths:
    """Write config JSONs and link each channel folder into ``ML_ROOT/input/data``.

    Channels are symlinked (no copy); hyperparameter values are written as strings.
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
        os.symlink(Path(src).resolve(), dest, target_is_directory=True)
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
