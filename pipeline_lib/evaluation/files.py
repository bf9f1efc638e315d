"""``odp map``: mAP of detection files against ground-truth annotation files, no model.

* Ground truth: a folder of SageMaker annotation JSONs, or an image+JSON dataset root (its
  ``validation_annotation/`` is used). Optional per-box ``difficult`` (VOC) and
  ``iscrowd`` (COCO) keys are honoured.
* Detections: a folder of JSON files with the same base names, in the verbose response
  layout ``{"file", "image_size", "annotations": [{"class_id", "score", "left", "top",
  "width", "height"}]}`` (pixels). SageMaker's plain response ``{"prediction": [[class,
  score, xmin, ymin, xmax, ymax], ...]}`` (normalized to [0, 1]) is read too and converted
  to pixels with the ground truth's ``image_size``.

Images are evaluated in sorted file-name order, detections in file order; equal scores
keep that order, so results are reproducible.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import localfs, storage
from ..annotations import AnnotationError, ImageAnnotation, check_class_id, class_map, load_json
from ..gate.paths import Confined
from ..gate.rules import GateError
from .dispatch import evaluate_store
from .store import DetectionStore
from .types import MetricName

GT_CHANNEL_DIR = "validation_annotation"


@dataclass(frozen=True)
class GroundTruthFile:
    """One ground-truth JSON: the parsed record plus VOC ``difficult`` / COCO ``iscrowd`` flags."""

    path: Path
    annotation: ImageAnnotation
    difficult: np.ndarray
    crowd: np.ndarray

    @property
    def stem(self) -> str:
        return self.path.stem

    def boxes(self) -> tuple[np.ndarray, np.ndarray]:
        """``(N, 4)`` pixel ``xmin, ymin, xmax, ymax`` and ``(N,)`` class ids."""
        arr = self.annotation.label_array()
        return arr[:, 1:5], arr[:, 0].astype(np.int64)


def _flag(item: object, key: str, source: str, where: str) -> bool:
    value = item.get(key, 0) if isinstance(item, Mapping) else 0
    if isinstance(value, bool) or (isinstance(value, int | float) and value in (0, 1)):
        return bool(value)
    raise AnnotationError(source, f"{where}.{key}", "0, 1, true or false", value)


def read_ground_truth_file(path: Path) -> GroundTruthFile:
    """Parse one SageMaker annotation JSON strictly (errors name the file and field): a file
    the caller named. Files of a dataset are read through the gate (:func:`load_ground_truth`)."""
    return parse_ground_truth(localfs.read_regular(path), Path(path))


def parse_ground_truth(raw: bytes, path: Path) -> GroundTruthFile:
    """One ground-truth JSON from its bytes (``path`` names it in errors and gives its stem)."""
    data = load_json(raw, str(path))  # duplicate keys refused too
    ann = ImageAnnotation.from_json(data, str(path))
    items = data["annotations"]
    difficult = np.array(
        [_flag(it, "difficult", str(path), f"annotations[{i}]") for i, it in enumerate(items)],
        dtype=bool,
    )
    crowd = np.array(
        [_flag(it, "iscrowd", str(path), f"annotations[{i}]") for i, it in enumerate(items)],
        dtype=bool,
    )
    return GroundTruthFile(Path(path), ann, difficult, crowd)


def ground_truth_dir(root: Path) -> Path:
    """The folder holding the ground-truth JSONs: ``root/validation_annotation`` or ``root``.
    A ``validation_annotation/`` that is a symlink leaving ``root`` is refused
    (``pairing.path_escape``)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"ground truth folder not found: {root}")
    if (root / GT_CHANNEL_DIR).is_dir():
        if not Confined(root).contains(root / GT_CHANNEL_DIR):
            raise GateError(
                "pairing.path_escape",
                f"{GT_CHANNEL_DIR}/ is a symlink to a folder outside the dataset; a channel "
                "folder must be inside the dataset folder itself",
            )
        return root / GT_CHANNEL_DIR
    if any(root.glob("*.json")):
        return root
    raise FileNotFoundError(
        f"{root}: no annotation JSON files (expected *.json or a {GT_CHANNEL_DIR}/ folder)"
    )


def read_ground_truth_folder(folder: Path) -> list[GroundTruthFile]:
    """Every ``*.json`` of ``folder``, sorted by name, read through the gate: only regular
    files inside the folder (a symlink leaving it or a FIFO is refused, never followed)."""
    gated = Confined(folder, f"{Path(folder).name}/")
    files = []
    for name in json_names(folder):
        raw = gated.read(name, f"{gated.label}{name}", "annotation")
        files.append(parse_ground_truth(raw, Path(folder) / name))
    return files


def json_names(folder: Path) -> list[str]:
    """Names of the ``*.json`` entries of ``folder`` that are not folders or hidden (an odp
    output's ``.odp-complete``), sorted (a FIFO or an escaping symlink is listed, and
    refused when read)."""
    with os.scandir(folder) as it:
        return sorted(
            e.name
            for e in it
            if e.name.endswith(".json") and not e.name.startswith(".") and not e.is_dir()
        )


def load_ground_truth(root: Path) -> list[GroundTruthFile]:
    """All ground-truth files of a folder or dataset root, sorted by name (through the gate)."""
    folder = ground_truth_dir(root)
    files = read_ground_truth_folder(folder)
    if not files:
        raise FileNotFoundError(f"{folder}: no annotation JSON files")
    return files


def _number(value: object, source: str, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise AnnotationError(source, field, "a finite number", value)
    return float(value)


def read_detection_file(
    path: Path, image_size: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Detections of one image: ``(boxes (N, 4) pixel xmin..ymax, classes (N,), scores (N,))``,
    from a file the caller named (a regular file; a FIFO is refused, never waited on).

    ``image_size`` ``(width, height)`` converts SageMaker's normalized ``prediction`` rows.
    """
    return parse_detections(localfs.read_regular(path), str(path), image_size)


def parse_detections(
    raw: bytes, source: str, image_size: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`read_detection_file` from the file's bytes (``source`` names it in errors).
    Parsed strictly (duplicate keys, NaN refused); class ids at most ``MAX_CLASS_ID``."""
    data = load_json(raw, source)
    if not isinstance(data, Mapping):
        raise AnnotationError(source, "<root>", "a JSON object", type(data).__name__)
    rows: list[list[float]] = []
    if "annotations" in data:
        items = data["annotations"]
        if not isinstance(items, list):
            raise AnnotationError(source, "annotations", "a list of detections", items)
        for i, item in enumerate(items):
            where = f"annotations[{i}]"
            if not isinstance(item, Mapping):
                raise AnnotationError(source, where, "an object", item)
            cid = item.get("class_id")
            if isinstance(cid, bool) or not isinstance(cid, int | float) or cid != int(cid):
                raise AnnotationError(source, f"{where}.class_id", "an integer >= 0", cid)
            if cid < 0:
                raise AnnotationError(source, f"{where}.class_id", "an integer >= 0", cid)
            check_class_id(int(cid), source, f"{where}.class_id")
            if "score" not in item:
                raise AnnotationError(source, f"{where}.score", "a score (number)", None)
            score = _number(item["score"], source, f"{where}.score")
            left, top, w, h = (
                _number(item.get(k), source, f"{where}.{k}")
                for k in ("left", "top", "width", "height")
            )
            for k, v in (("width", w), ("height", h)):
                if v < 0:
                    raise AnnotationError(source, f"{where}.{k}", "a number >= 0", v)
            rows.append([float(cid), score, left, top, left + w, top + h])
    elif "prediction" in data:
        items = data["prediction"]
        if not isinstance(items, list):
            raise AnnotationError(
                source, "prediction", "a list of [class, score, x0, y0, x1, y1]", items
            )
        if image_size is None:
            raise AnnotationError(
                source, "prediction", "pixel 'annotations' (no image size)", "prediction"
            )
        width, height = image_size
        for i, row in enumerate(items):
            where = f"prediction[{i}]"
            if not isinstance(row, list) or len(row) != 6:
                raise AnnotationError(source, where, "[class, score, xmin, ymin, xmax, ymax]", row)
            vals = [_number(v, source, f"{where}[{j}]") for j, v in enumerate(row)]
            if vals[0] < 0 or vals[0] != int(vals[0]):
                raise AnnotationError(source, f"{where}[0]", "a class id (integer >= 0)", row[0])
            check_class_id(int(vals[0]), source, f"{where}[0]")
            if vals[4] < vals[2] or vals[5] < vals[3]:
                raise AnnotationError(source, where, "xmin <= xmax and ymin <= ymax", row)
            rows.append(
                [
                    vals[0],
                    vals[1],
                    vals[2] * width,
                    vals[3] * height,
                    vals[4] * width,
                    vals[5] * height,
                ]
            )
    else:
        raise AnnotationError(source, "annotations", "a list of detections", None)
    arr = np.array(rows, dtype=np.float64).reshape(-1, 6)
    return arr[:, 2:6], arr[:, 0].astype(np.int64), arr[:, 1]


def evaluate_detection_files(
    gt: str | Path,
    detections: str | Path,
    metric: MetricName = "voc07",
    iou: float = 0.5,
    class_names: Mapping[int, str] | None = None,
) -> dict:
    """mAP of a folder of detection JSONs against ground truth (see module doc).

    Returns a JSON-ready dict with ``metrics`` (``mAP``; for ``coco`` also ``AP``, ``AP50``,
    ...), ``per_class`` (AP, ground-truth and detection counts; ``ap`` null and
    ``no_ground_truth`` for classes without ground truth), ``num_images`` and file counts.
    A detection file without a ground-truth file of the same base name is an error; a
    ground-truth file without detections counts as an image with no detections.
    """
    with storage.local_dir(gt) as gt_root, storage.local_dir(detections) as det_root:
        truths = load_ground_truth(Path(gt_root))
        det_dir = Path(det_root)
        if not det_dir.is_dir():
            raise FileNotFoundError(f"detections folder not found: {detections}")
        det_folder = Confined(det_dir, f"{det_dir.name}/")  # through the gate, like the truth
        det_files = {n[: -len(".json")]: det_dir / n for n in json_names(det_dir)}
        known = {t.stem for t in truths}
        orphans = sorted(set(det_files) - known)
        if orphans:
            raise ValueError(
                f"{det_files[orphans[0]]}: no ground-truth file {orphans[0]}.json in "
                f"{ground_truth_dir(Path(gt_root))}"
                + (f" (and {len(orphans) - 1} more detection files)" if len(orphans) > 1 else "")
            )
        store = DetectionStore()
        missing = 0
        for t in truths:
            gboxes, gclasses = t.boxes()
            if t.stem in det_files:
                size = (t.annotation.width, t.annotation.height)
                name = det_files[t.stem].name
                raw = det_folder.read(name, f"{det_folder.label}{name}", "detections")
                pboxes, pclasses, pscores = parse_detections(raw, str(det_files[t.stem]), size)
            else:
                missing += 1
                pboxes, pclasses, pscores = np.zeros((0, 4)), np.zeros(0, np.int64), np.zeros(0)
            store.add_image(
                pboxes,
                pclasses,
                pscores,
                gboxes,
                gclasses,
                gt_difficult=t.difficult,
                gt_crowd=t.crowd,
            )
    names = (
        dict(class_names) if class_names is not None else class_map([t.annotation for t in truths])
    )
    result = evaluate_store(store, metric, iou, names).to_dict()
    result["num_detection_files"] = len(det_files)
    result["images_without_detection_file"] = missing
    return result
