"""Stand-in model folders and tarballs for the registry tests (not real networks)."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

CLASS_MAP = {"0": "circle", "1": "square"}


def make_model_dir(folder: Path, payload: str = "weights") -> Path:
    """A folder shaped like ML_ROOT/model (contents are stand-ins, not a real network)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model_algo_1-symbol.json").write_text('{"nodes": []}')
    (folder / "model_algo_1-0000.params").write_text(payload)
    (folder / "hyperparams.json").write_text(json.dumps({"epochs": "2"}))
    (folder / "class_map.json").write_text(json.dumps(CLASS_MAP))
    return folder


def make_tar(folder: Path, payload: str = "weights") -> Path:
    src = make_model_dir(folder / "src", payload)
    tar_path = folder / "model.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        for f in sorted(src.iterdir()):
            tar.add(f, arcname=f.name)
    return tar_path


def write_metrics(path: Path, value: float) -> Path:
    path.write_text(json.dumps({"metrics": {"mAP": value, "AP": {"circle": value, "square": 0}}}))
    return path
