"""Logging a trained ``model.tar.gz`` as an MLflow pyfunc (MLflow 3 ``LoggedModel``).

The pyfunc's artifacts are the model's graph (``model_algo_1-symbol.json`` +
``-0000.params``: odp's GluonCV inference export, or SageMaker's training graph, which the
pyfunc runs as example/ssd infers), ``class_map.json`` (the archive's, the class names the
user gave, or ``class_<id>`` for a SageMaker job's archive, which has none),
``hyperparams.json`` and the original ``model.tar.gz`` (so the SageMaker-layout artifact is
always recoverable, and
:func:`~pipeline_lib.registry.resolve_model_uri` finds it in any registered version). The
signature has one ``binary`` column ``image`` and the request parameters; the input example
is a small JPEG. Serving needs the ``odp`` package installed (the training image has it).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..annotations import write_class_map
from ..artifact import (
    CLASS_MAP,
    HYPERPARAMS,
    MODEL_FILE,
    PARAMS,
    SYMBOL,
    extract,
    read_model_config,
)
from .pyfunc import IMAGE_COLUMN
from .request import ACCEPT_DEFAULT, MAX_DETECTIONS

NAME = "model"  # the LoggedModel's name within its run
_RUNTIME_PACKAGES = ("mlflow", "mxnet", "numpy", "opencv-python-headless", "pandas", "pillow")


def signature(default_nms: float):
    """Input: one ``binary`` column ``image``; params: the request options."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec("binary", IMAGE_COLUMN)]),
        params=ParamSchema(
            [
                ParamSpec("threshold", "double", 0.0),
                ParamSpec("max_detections", "long", MAX_DETECTIONS),
                ParamSpec("nms_threshold", "double", float(default_nms)),
                ParamSpec("accept", "string", ACCEPT_DEFAULT),
            ]
        ),
    )


def input_example():
    """A one-row DataFrame holding a small 3-channel JPEG."""
    import cv2
    import numpy as np
    import pandas as pd

    yy, xx = np.mgrid[0:64, 0:64]
    img = np.stack([xx * 4, yy * 4, (xx + yy) * 2], axis=-1).astype(np.uint8)
    _, data = cv2.imencode(".jpg", img)
    return pd.DataFrame({IMAGE_COLUMN: [data.tobytes()]})


def pip_requirements() -> list[str]:
    """The runtime packages, pinned to the versions installed here (no inference pass)."""
    from importlib.metadata import PackageNotFoundError, version

    reqs = []
    for name in _RUNTIME_PACKAGES:
        try:
            reqs.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            continue
    return reqs


@contextlib.contextmanager
def _pyfunc_kwargs(
    tar_path: str | os.PathLike, class_names: Mapping[int, str] | None = None
) -> Iterator[dict[str, Any]]:
    """What ``log_model``/``save_model`` take for ``tar_path`` (files in a scratch folder
    that lives as long as the block); ``class_names`` replace the model's."""
    from .detector import _nms_threshold
    from .pyfunc import DetectorModel

    with tempfile.TemporaryDirectory(prefix="odp-pyfunc-") as tmp:
        folder = extract(tar_path, Path(tmp) / "export")
        config = read_model_config(folder, tar_path, class_names)
        if config.class_names != "model":
            write_class_map(folder / CLASS_MAP, config.classes)
        nms = _nms_threshold(json.loads((folder / SYMBOL).read_text(encoding="utf-8")))
        tar = Path(tar_path)
        if tar.name != MODEL_FILE:  # keep the SageMaker file name beside it
            tar = Path(tmp) / MODEL_FILE
            shutil.copyfile(tar_path, tar)
        yield {
            "python_model": DetectorModel(),
            "artifacts": {
                "symbol": str(folder / SYMBOL),
                "params": str(folder / PARAMS),
                "class_map": str(folder / CLASS_MAP),
                "hyperparams": str(folder / HYPERPARAMS),
                "model_tar": str(tar),
            },
            "signature": signature(nms if nms is not None else 0.45),
            "input_example": input_example(),
            "pip_requirements": pip_requirements(),
        }


def log_detector(
    tar_path: str | os.PathLike,
    *,
    tags: dict[str, str] | None = None,
    name: str = NAME,
    class_names: Mapping[int, str] | None = None,
) -> Any:
    """Log ``tar_path`` as a pyfunc into the active run; returns MLflow's ``ModelInfo``
    (``model_id``, ``model_uri``)."""
    import mlflow.pyfunc

    with _pyfunc_kwargs(tar_path, class_names) as kwargs:
        return mlflow.pyfunc.log_model(name=name, tags=tags, **kwargs)


def save_detector(
    tar_path: str | os.PathLike,
    path: str | os.PathLike,
    class_names: Mapping[int, str] | None = None,
) -> Path:
    """Write the pyfunc of ``tar_path`` into the new folder ``path`` (no tracking store)."""
    import mlflow.pyfunc

    with _pyfunc_kwargs(tar_path, class_names) as kwargs:
        mlflow.pyfunc.save_model(str(path), **kwargs)
    return Path(path)
