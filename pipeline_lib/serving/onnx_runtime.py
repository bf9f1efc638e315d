"""Serving without MXNet: the exported SSD up to its NMS in ``onnxruntime``, NMS in numpy.

The ONNX file (:mod:`pipeline_lib.serving.onnx_export`) holds the network up to the input
of its ``box_nms`` node: per image ``(K, 6)`` ``[class_id, score, xmin, ymin, xmax, ymax]``
rows (every anchor for every class, boxes in input pixels), plus the NMS attributes, the
rows kept after it, ``image_shape`` and the class map in its metadata. Its input is uint8
pixels when the model normalises them itself, else the normalised batch (an export of an
older model): the file's input type says which. :func:`box_nms`
reproduces MXNet 1.9's ``_contrib_box_nms`` (corner boxes, per class unless
``force_suppress``), so the detections equal the MXNet graph's. A SageMaker-format model's
file ends at the class probabilities and box offsets, with the anchors as a third output;
its ``MultiBoxDetection`` runs in numpy (:func:`~pipeline_lib.sagemaker_ssd.detection.
multibox_detection`). Nothing here imports MXNet: a serving image needs ``onnxruntime``,
numpy and OpenCV only.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass

import numpy as np

from ..artifact import ArtifactError
from ..preprocessing import detections_in_pixels, normalized_batch, pixel_batch
from ..sagemaker_ssd.detection import MultiBoxParams, multibox_detection

METADATA_KEY = "odp"


@dataclass(frozen=True)
class NmsParams:
    """The attributes of the exported graph's ``box_nms`` and the slice after it."""

    overlap_thresh: float
    topk: int
    valid_thresh: float
    force_suppress: bool
    keep: int  # rows kept after NMS (the graph's post-NMS slice); -1 for all

    def to_json(self) -> dict:
        """The metadata form."""
        return {
            "overlap_thresh": self.overlap_thresh,
            "topk": self.topk,
            "valid_thresh": self.valid_thresh,
            "force_suppress": self.force_suppress,
            "keep": self.keep,
        }


def box_nms(data: np.ndarray, p: NmsParams) -> np.ndarray:
    """MXNet's ``box_nms`` on ``(B, K, 6)`` rows (id 0, score 1, corners 2..5): per image,
    rows of a class (id not -1) scoring above ``valid_thresh``, best first (stable), the
    first ``topk``, greedy suppression of a later row whose IoU with a kept one exceeds
    ``overlap_thresh`` (same class unless ``force_suppress``); survivors first, then rows
    of -1, the first ``keep`` of them."""
    data = np.asarray(data, dtype=np.float32)
    out = np.full_like(data, -1.0)
    thresh = np.float32(p.overlap_thresh)
    for b in range(data.shape[0]):
        rows = data[b]
        # box_nms's default background_id is -1: those rows (the decoder's "no class") drop
        valid = np.flatnonzero((rows[:, 1] > np.float32(p.valid_thresh)) & (rows[:, 0] != -1))
        order = valid[np.argsort(-rows[valid, 1], kind="stable")]
        if p.topk > 0:
            order = order[: p.topk]
        rows = rows[order]
        ids, x1, y1, x2, y2 = rows[:, 0], rows[:, 2], rows[:, 3], rows[:, 4], rows[:, 5]
        width, height = x2 - x1, y2 - y1
        area = np.where((width < 0) | (height < 0), np.float32(0), width * height)
        # all pairwise IoUs at once (the same float32 operations as MXNet's, per pair)
        w = np.maximum(np.float32(0), np.minimum(x2[:, None], x2) - np.maximum(x1[:, None], x1))
        h = np.maximum(np.float32(0), np.minimum(y2[:, None], y2) - np.maximum(y1[:, None], y1))
        inter = w * h
        union = area[:, None] + area - inter
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = np.where(union <= 0, np.float32(0), inter / union)
        suppresses = iou > thresh
        if not p.force_suppress:
            suppresses &= ids[:, None] == ids
        keep = np.ones(len(rows), dtype=bool)
        for i in range(len(rows)):
            if keep[i]:
                keep[i + 1 :] &= ~suppresses[i, i + 1 :]
        kept = rows[keep]
        out[b, : len(kept)] = kept
    return out if p.keep < 0 else out[:, : p.keep]


@dataclass
class OnnxPredictor:
    """The ONNX counterpart of :class:`~pipeline_lib.inference.Predictor`."""

    session: object
    image_shape: int
    classes: dict[int, str]
    nms: NmsParams | None
    pixels_in: bool = False  # the input is uint8 pixels (the graph normalises them)
    multibox: MultiBoxParams | None = None  # SageMaker's graph: MultiBoxDetection in numpy

    @classmethod
    def load(cls, path: str | os.PathLike, threads: int | None = None) -> OnnxPredictor:
        """From an ONNX file written by :func:`~pipeline_lib.serving.onnx_export.export_onnx`
        (``threads``: onnxruntime's intra-op threads; ``None``: its default, every core)."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            meta = json.loads(session.get_modelmeta().custom_metadata_map[METADATA_KEY])
            nms = NmsParams(**meta["nms"]) if "nms" in meta else None
            multibox = None
            if "multibox" in meta:
                fields = dict(meta["multibox"])
                fields["variances"] = tuple(fields["variances"])
                multibox = MultiBoxParams(**fields)
            elif nms is None:
                raise KeyError("nms")
            classes = {int(k): str(v) for k, v in meta["classes"].items()}
            image_shape = int(meta["image_shape"])
            pixels_in = session.get_inputs()[0].type == "tensor(uint8)"
        except (KeyError, TypeError, ValueError, json.JSONDecodeError) as exc:
            raise ArtifactError(f"{path}: not an odp ONNX export ({exc})") from None
        except Exception as exc:  # onnxruntime's own errors share no base class
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ArtifactError(f"{path}: the ONNX model cannot be loaded: {first}") from None
        return cls(session, image_shape, classes, nms, pixels_in, multibox)

    def raw(self, batch: np.ndarray) -> np.ndarray:
        """The network's pre-NMS rows for its input batch (pixels or normalised)."""
        return self.session.run(None, {"data": batch})[0]

    @property
    def default_nms(self) -> float:
        """The exported model's NMS IoU threshold."""
        if self.multibox is not None:
            return self.multibox.nms_threshold
        return self.nms.overlap_thresh

    def _detect(self, batch: np.ndarray, nms_threshold: float | None = None) -> np.ndarray:
        """``(N, K, 6)`` rows after NMS (at ``nms_threshold``, else the model's), boxes in
        input pixels."""
        if self.multibox is None:
            nms = self.nms
            if nms_threshold is not None:
                nms = dataclasses.replace(nms, overlap_thresh=nms_threshold)
            return box_nms(self.raw(batch), nms)
        multibox = self.multibox
        if nms_threshold is not None:
            multibox = dataclasses.replace(multibox, nms_threshold=nms_threshold)
        cls_prob, loc_pred, anchors = self.session.run(None, {"data": batch})
        rows = multibox_detection(cls_prob, loc_pred, anchors, multibox)
        rows[..., 2:] *= np.float32(self.image_shape)
        return rows

    def predict_arrays(
        self, images: list[np.ndarray], batch_size: int = 16, nms_threshold: float | None = None
    ) -> list[np.ndarray]:
        """Detections per image, as :meth:`Predictor.predict_arrays
        <pipeline_lib.inference.Predictor.predict_arrays>` returns them (``nms_threshold``:
        another NMS IoU threshold than the exported graph's)."""
        out: list[np.ndarray] = []
        size = self.image_shape
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            prepare = pixel_batch if self.pixels_in else normalized_batch
            result = self._detect(prepare(chunk, size), nms_threshold)
            for i, img in enumerate(chunk):
                h, w = img.shape[:2]
                r = result[i]
                out.append(detections_in_pixels(r[:, 0:1], r[:, 1:2], r[:, 2:6], h, w, size))
        return out


__all__ = ["METADATA_KEY", "NmsParams", "OnnxPredictor", "box_nms"]
