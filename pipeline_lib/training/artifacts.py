"""The model artifact: SageMaker's file names plus an inference-ready export.

``model/`` holds ``model_algo_1-symbol.json`` + ``model_algo_1-0000.params`` (the hybridized
network with NMS, loadable with ``SymbolBlock.imports`` without any training code),
``model_algo_1.gluon.params`` (Gluon weights, used to seed incremental training),
``hyperparams.json`` (the merged configuration, string values) and ``class_map.json``.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import mxnet as mx

from ..annotations import read_class_map, write_class_map
from ..hyperparameters import Hyperparameters
from ..storage import atomic_write

PREFIX = "model_algo_1"
SYMBOL = f"{PREFIX}-symbol.json"
PARAMS = f"{PREFIX}-0000.params"
GLUON_PARAMS = f"{PREFIX}.gluon.params"
HYPERPARAMS = "hyperparams.json"
CLASS_MAP = "class_map.json"


def export_model(net, model_dir: Path, hp: Hyperparameters, classes: dict[int, str]) -> None:
    """Write the artifact files for ``net`` (in its current weights) into ``model_dir``."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    net.save_parameters(str(model_dir / GLUON_PARAMS))
    net.set_nms(nms_thresh=hp.nms_threshold, nms_topk=400, post_nms=100)
    net.hybridize(static_alloc=True, static_shape=True)
    ctx = next(iter(net.collect_params().values())).list_ctx()[0]
    net(mx.nd.zeros((1, 3, hp.image_shape, hp.image_shape), ctx=ctx))
    net.export(str(model_dir / PREFIX), epoch=0)
    (model_dir / HYPERPARAMS).write_text(json.dumps(hp.to_strings(), indent=1))
    write_class_map(model_dir / CLASS_MAP, classes)


def package(model_dir: Path, tar_path: str | Path) -> str:
    """Tar ``model_dir``'s files into ``model.tar.gz`` (flat, as SageMaker does), atomically."""
    with atomic_write(tar_path) as tmp:
        with tarfile.open(tmp, "w:gz") as tar:
            for path in sorted(Path(model_dir).iterdir()):
                if path.is_file():
                    tar.add(path, arcname=path.name)
    return str(tar_path)


def unpack(tar_path: str | Path, dest: Path) -> Path:
    """Extract a ``model.tar.gz`` safely (no paths leaving ``dest``)."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tar_path, "r:gz") as tar:
        tar.extractall(dest, filter="data")
    return dest


def model_files(path: str | Path, scratch: Path) -> Path:
    """A folder with the artifact files: ``path`` itself, or ``model.tar.gz`` unpacked."""
    path = Path(path)
    if path.is_dir():
        tars = list(path.glob("*.tar.gz"))
        if not (path / SYMBOL).exists() and len(tars) == 1:
            return unpack(tars[0], scratch)
        return path
    return unpack(path, scratch)


def read_artifact_config(model_dir: Path) -> tuple[dict[str, str], dict[int, str]]:
    """``(hyperparams, class_map)`` of an unpacked artifact, with a clear error when incomplete."""
    missing = [n for n in (SYMBOL, PARAMS, HYPERPARAMS, CLASS_MAP) if not (model_dir / n).exists()]
    if missing:
        raise FileNotFoundError(f"model artifact in {model_dir} is missing {missing}")
    hp = json.loads((model_dir / HYPERPARAMS).read_text())
    return hp, read_class_map(model_dir / CLASS_MAP)
