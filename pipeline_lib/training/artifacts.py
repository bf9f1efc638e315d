"""Export of a trained network into the model artifact's files (training's side of it).

``model/`` gets the hybridized network with NMS (loadable with ``SymbolBlock.imports``
without any training code), the Gluon weights (to seed incremental training),
``hyperparams.json`` (the merged configuration, string values) and ``class_map.json``.
Packaging, reading and extracting ``model.tar.gz`` live in :mod:`pipeline_lib.artifact`.
"""

from __future__ import annotations

import json
from pathlib import Path

import mxnet as mx

from ..annotations import write_class_map
from ..artifact import CLASS_MAP, GLUON_PARAMS, HYPERPARAMS, PREFIX
from ..hyperparameters import Hyperparameters


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
