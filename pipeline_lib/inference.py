"""Load a trained model artifact and run detection, SageMaker-style.

Uses only the exported inference graph (``model_algo_1-symbol.json`` + ``-0000.params``):
no training code is needed. Images are resized to ``image_shape`` squared and normalised
as in training (in the graph, or on the host for a graph exported before it did:
:mod:`pipeline_lib.preprocessing`); boxes come back in the pixels of the original image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mxnet as mx
import numpy as np

from .artifact import (
    HYPERPARAMS,
    PARAMS,
    SYMBOL,
    ArtifactError,
    error_summary,
    model_folder,
    read_artifact_config,
)
from .hyperparameters import HyperparameterError, parse_value
from .preprocessing import detections_in_pixels, normalized_batch, pixel_batch, takes_pixels


@dataclass
class Predictor:
    """A loaded detection network: ``predict_arrays`` for numpy images (requests and their
    formats: :mod:`pipeline_lib.serving`)."""

    net: mx.gluon.SymbolBlock
    image_shape: int
    classes: dict[int, str]
    hyperparameters: dict[str, str]
    ctx: mx.Context
    pixels_in: bool = False  # the graph takes uint8 pixels and normalises them itself

    @classmethod
    def load(cls, path: str | Path, ctx: mx.Context | None = None) -> Predictor:
        """Load from ``model.tar.gz``, a folder holding it, or an unpacked artifact folder."""
        from . import storage

        ctx = ctx or (mx.gpu(0) if mx.context.num_gpus() else mx.cpu())
        with storage.local_file(path) as local, model_folder(local) as model_dir:
            hp, classes = read_artifact_config(model_dir, path)
            import json
            import warnings

            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    net = mx.gluon.SymbolBlock.imports(
                        str(model_dir / SYMBOL), ["data"], str(model_dir / PARAMS), ctx=ctx
                    )
                pixels_in = takes_pixels(json.loads((model_dir / SYMBOL).read_text("utf-8")))
            except (mx.base.MXNetError, AssertionError, ValueError) as exc:
                first = error_summary(exc)
                raise ArtifactError(
                    f"{path}: the inference graph cannot be loaded: {first}"
                ) from None
        net.hybridize(static_alloc=True, static_shape=True)
        try:
            image_shape = parse_value("image_shape", hp.get("image_shape", "300"))
        except HyperparameterError as exc:
            raise ArtifactError(f"{path}: {HYPERPARAMS}: {exc}") from None
        return cls(net, image_shape, classes, hp, ctx, pixels_in)

    def _preprocess(self, images: list[np.ndarray]) -> mx.nd.NDArray:
        """The network's input for ``images`` (uint8 RGB): resized pixels, or for an older
        graph the normalised batch."""
        size = self.image_shape
        if not self.pixels_in:
            return mx.nd.array(normalized_batch(images, size), ctx=self.ctx)
        batch = pixel_batch(images, size)
        if self.ctx.device_type == "cpu":  # the network reads the fresh batch in place
            return mx.nd.from_numpy(batch, zero_copy=True)
        return mx.nd.array(batch, ctx=self.ctx, dtype=batch.dtype)

    def predict_arrays(
        self, images: list[np.ndarray], batch_size: int = 16, net: mx.gluon.Block | None = None
    ) -> list[np.ndarray]:
        """Detections per image: ``(N, 6)`` ``[class_id, score, xmin, ymin, xmax, ymax]`` pixels
        (``net``: a variant of the loaded network sharing its weights, e.g. another NMS)."""
        net = net or self.net
        out: list[np.ndarray] = []
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            ids, scores, boxes = net(self._preprocess(chunk))
            ids, scores, boxes = ids.asnumpy(), scores.asnumpy(), boxes.asnumpy()
            for i, img in enumerate(chunk):
                h, w = img.shape[:2]
                out.append(
                    detections_in_pixels(ids[i], scores[i], boxes[i], h, w, self.image_shape)
                )
        return out
