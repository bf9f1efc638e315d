"""SageMaker Object Detection annotation formats as typed models.

* image+JSON: one JSON per image, ``{"file", "image_size": [{width,height,depth}],
  "annotations": [{class_id,left,top,width,height}], "categories": [{class_id,name}]}``
* augmented manifest line: ``{"source-ref": ..., "<attr>": {"image_size", "annotations"},
  "<attr>-metadata": {"class-map": {...}, ...}}``

Coordinates are pixels with the SageMaker convention: (left, top, width, height).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from . import bounds, localfs, storage

if TYPE_CHECKING:  # numpy is imported where it is used: `odp convert` starts without it
    import numpy as np

CHANNELS = ("train", "validation")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# At most 10,000 classes: ids are bounded where they are parsed, before anything (a class
# table, a per-class array, a contiguity check over 0..max) is sized by them.
MAX_CLASS_ID = bounds.MAX_CLASSES - 1  # 9,999


class AnnotationError(ValueError):
    """A malformed annotation, naming the file, field, what was expected and what was found.

    ``rule`` is the name of the input rule it breaks (:mod:`pipeline_lib.gate.rules`)."""

    def __init__(
        self, source: str, field: str, expected: str, actual: object, rule: str = "json.schema"
    ):
        self.source, self.field, self.expected, self.actual = source, field, expected, actual
        self.rule = rule
        super().__init__(f"{source}: field '{field}': expected {expected}, got {actual!r}")


class DuplicateKeyError(ValueError):
    """A JSON object that names a key twice (``json.loads`` would keep the last silently)."""

    def __init__(self, key: str):
        self.key = key
        super().__init__(f"duplicate key {key!r}")


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKeyError(key)
            seen.add(key)
    return out


def loads_strict(text: str | bytes) -> object:
    """``json.loads`` that refuses duplicated keys (:class:`DuplicateKeyError`); the one
    parser of every JSON read from a dataset (annotations, manifest lines, COCO files)."""
    return json.loads(text, object_pairs_hook=_unique_keys)


def load_json(raw: str | bytes, source: str) -> object:
    """Parse a dataset's JSON document strictly; raises :class:`AnnotationError` naming
    ``source`` (rule ``json.malformed`` or ``json.duplicate_key``)."""
    try:
        return loads_strict(raw)
    except DuplicateKeyError as exc:
        raise AnnotationError(
            source, exc.key, "each key once in an object", f"{exc.key!r} twice",
            rule="json.duplicate_key",
        ) from None  # fmt: skip
    except RecursionError:
        raise AnnotationError(
            source, "<file>", "JSON nested at most a few hundred levels deep",
            "nested too deeply", rule="json.malformed",
        ) from None  # fmt: skip
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer of 4300+ digits
        raise AnnotationError(
            source, "<file>", "valid UTF-8 JSON", str(exc) or type(exc).__name__,
            rule="json.malformed",
        ) from None  # fmt: skip


def check_class_id(cid: int, source: str, field: str) -> int:
    """``cid`` when it is at most :data:`MAX_CLASS_ID`; else :class:`AnnotationError`."""
    if cid > MAX_CLASS_ID:
        raise AnnotationError(
            source, field, f"a class id <= {MAX_CLASS_ID}", cid, rule="class.id_too_large"
        )
    return cid


@dataclass(frozen=True)
class Box:
    """One object: class id and a pixel box (left, top, width, height)."""

    class_id: int
    left: float
    top: float
    width: float
    height: float

    @property
    def corners(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) in pixels."""
        return (self.left, self.top, self.left + self.width, self.top + self.height)

    def to_json(self) -> dict:
        return {
            "class_id": self.class_id,
            "left": _num(self.left),
            "top": _num(self.top),
            "width": _num(self.width),
            "height": _num(self.height),
        }


# ---------------------------------------------------------------- box rules
# The one geometric check of a box, shared by the converter and the validators (pixel boxes
# of image+JSON and manifests, normalized boxes of RecordIO labels with width = height = 1).
# Callers check that the values are finite first.


def has_positive_size(width: float, height: float) -> bool:
    """Whether a box has a positive width and height."""
    return width > 0 and height > 0


def leaves_image(
    xmin: float,
    ymin: float,
    xmax: float,
    ymax: float,
    width: float,
    height: float,
    tol_x: float = 0.0,
    tol_y: float | None = None,
) -> bool:
    """Whether a box's corners leave the ``width x height`` image by more than the tolerance
    (``tol_x`` horizontally, ``tol_y`` vertically; ``tol_y`` defaults to ``tol_x``)."""
    tol_y = tol_x if tol_y is None else tol_y
    return xmin < -tol_x or ymin < -tol_y or xmax > width + tol_x or ymax > height + tol_y


def _num(x: float) -> int | float:
    """Write integral floats as ints, as SageMaker examples do."""
    return int(x) if float(x).is_integer() else float(x)


@dataclass
class ImageAnnotation:
    """Annotations of one image (the SageMaker image+JSON record)."""

    file: str
    width: int
    height: int
    depth: int = 3
    boxes: list[Box] = field(default_factory=list)
    categories: dict[int, str] | None = None

    def to_json(self) -> dict:
        out: dict = {
            "file": self.file,
            "image_size": [{"width": self.width, "height": self.height, "depth": self.depth}],
            "annotations": [b.to_json() for b in self.boxes],
        }
        if self.categories is not None:
            out["categories"] = [
                {"class_id": k, "name": v} for k, v in sorted(self.categories.items())
            ]
        return out

    def label_array(self, normalized: bool = False) -> np.ndarray:
        """``(N, 5)`` float array of ``[cls, xmin, ymin, xmax, ymax]`` (pixels or [0, 1])."""
        import numpy as np

        arr = np.array([[b.class_id, *b.corners] for b in self.boxes], dtype=np.float64)
        arr = arr.reshape(-1, 5)
        if normalized:
            arr[:, (1, 3)] /= self.width
            arr[:, (2, 4)] /= self.height
        return arr

    @classmethod
    def from_json(cls, data: object, source: str = "<json>") -> ImageAnnotation:
        """Parse one image+JSON record strictly; raises :class:`AnnotationError`."""
        if not _is_mapping(data):
            raise AnnotationError(source, "<root>", "a JSON object", type(data).__name__)
        file = data.get("file")
        if not isinstance(file, str) or not file:
            raise AnnotationError(source, "file", "a non-empty string", file)
        width, height, depth = _parse_image_size(data.get("image_size"), source)
        boxes = _parse_boxes(data.get("annotations"), source, "annotations")
        categories = None
        if "categories" in data:
            categories = _parse_categories(data["categories"], source)
        return cls(file, width, height, depth, boxes, categories)


def _is_mapping(value: object) -> bool:
    return type(value) is dict or isinstance(value, Mapping)  # dict first: the ABC is slow


def _int_field(value: object, source: str, name: str, minimum: int = 0) -> int:
    if type(value) is int and value >= minimum:  # the common case, fast
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AnnotationError(source, name, f"an integer >= {minimum}", value)
    if not math.isfinite(value) or float(value) != int(value) or int(value) < minimum:
        raise AnnotationError(source, name, f"an integer >= {minimum}", value)
    return int(value)


def _parse_image_size(value: object, source: str) -> tuple[int, int, int]:
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if not _is_mapping(value):
        raise AnnotationError(source, "image_size", "[{width, height, depth}]", value)
    width = _int_field(value.get("width"), source, "image_size.width", 1)
    height = _int_field(value.get("height"), source, "image_size.height", 1)
    depth = _int_field(value.get("depth", 3), source, "image_size.depth", 1)
    return width, height, depth


_COORDS = ("left", "top", "width", "height")


#: Larger magnitudes are no pixel coordinate (and 10**400 does not even fit a float).
_MAX_COORD = 1e15


def is_finite_coord(v: int | float) -> bool:
    """Whether a JSON number can be a coordinate: finite, and an int within float range."""
    if isinstance(v, int):
        return abs(v) <= _MAX_COORD
    return math.isfinite(v)


def _coord(item: Mapping, key: str, source: str, where: str) -> float:
    v = item.get(key)
    if type(v) is float and math.isfinite(v):
        return v
    if type(v) is int:
        if abs(v) > _MAX_COORD:  # 10**400 would overflow float(): not a pixel position
            digits = f"an integer of {len(str(abs(v)))} digits"
            raise AnnotationError(
                source, f"{where}.{key}", "a coordinate", digits, "box.non_finite"
            )
        return float(v)
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise AnnotationError(source, f"{where}.{key}", "a finite number", v)
    if not math.isfinite(v):
        raise AnnotationError(source, f"{where}.{key}", "a finite number", v, rule="box.non_finite")
    return float(v)  # an int or float subclass


def _parse_boxes(value: object, source: str, name: str) -> list[Box]:
    if not isinstance(value, list):
        raise AnnotationError(source, name, "a list of boxes", value)
    boxes = []
    for i, item in enumerate(value):
        if not _is_mapping(item):
            raise AnnotationError(source, f"{name}[{i}]", "an object", item)
        cid = item.get("class_id")
        if type(cid) is not int or cid < 0:
            cid = _int_field(cid, source, f"{name}[{i}].class_id")
        if cid > MAX_CLASS_ID:
            check_class_id(cid, source, f"{name}[{i}].class_id")
        where = f"{name}[{i}]"
        boxes.append(Box(cid, *(_coord(item, key, source, where) for key in _COORDS)))
    return boxes


def _parse_categories(value: object, source: str) -> dict[int, str]:
    if not isinstance(value, list):
        raise AnnotationError(source, "categories", "a list of {class_id, name}", value)
    out: dict[int, str] = {}
    for i, item in enumerate(value):
        if not _is_mapping(item) or not isinstance(item.get("name"), str):
            raise AnnotationError(source, f"categories[{i}]", "{class_id, name}", item)
        where = f"categories[{i}].class_id"
        cid = check_class_id(_int_field(item.get("class_id"), source, where), source, where)
        out[cid] = item["name"]
    return out


# ---------------------------------------------------------------- image+JSON layout


def annotation_channel(channel: str) -> str:
    """``train`` -> ``train_annotation``."""
    return f"{channel}_annotation"


def list_annotation_files(data: str, channel: str) -> list[str]:
    """The annotation JSON files of a channel of an image+JSON dataset (local folder or
    ``s3://`` prefix); local ones sorted by name. A missing folder lists nothing."""
    folder = storage.join(data, annotation_channel(channel))
    if storage.is_s3(data):
        return [u for u in storage.list_files(folder) if u.lower().endswith(".json")]
    try:
        with os.scandir(folder) as it:
            # anything but a folder: a FIFO or an escaping link is refused when read (the
            # gate), not silently left out
            names = [e.name for e in it if e.name.endswith(".json") and not e.is_dir()]
    except FileNotFoundError:
        return []
    return [os.path.join(folder, name) for name in sorted(names)]


def stem_key(name: str) -> str:
    """Image names that would share an annotation JSON (same stem, any case)."""
    return os.path.splitext(name)[0].lower()


def unique_name(name: str, used: set[str]) -> str:
    """``name``, or ``stem_1.ext``, ``stem_2.ext``... if its stem is taken; records it."""
    stem, ext = os.path.splitext(name)
    candidate, n = name, 1
    while stem_key(candidate) in used:
        candidate = f"{stem}_{n}{ext}"
        n += 1
    used.add(stem_key(candidate))
    return candidate


def read_annotation(path: Path, raw: bytes | None = None) -> ImageAnnotation:
    """Load one annotation JSON file (or its ``raw`` bytes, read by the caller) strictly."""
    if raw is None:
        raw = Path(path).read_bytes()
    return ImageAnnotation.from_json(load_json(raw, str(path)), str(path))


def write_annotation(path: Path, ann: ImageAnnotation) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(ann.to_json(), indent=1) + "\n", encoding="utf-8")


def iter_channel(root: Path, channel: str) -> Iterator[tuple[Path, ImageAnnotation]]:
    """Yield ``(image_path, annotation)`` for every JSON of a channel, in sorted order."""
    ann_dir = Path(root) / annotation_channel(channel)
    for json_path in sorted(ann_dir.glob("*.json")):
        ann = read_annotation(json_path)
        yield Path(root) / channel / ann.file, ann


def class_map(annotations: Iterator[ImageAnnotation] | list[ImageAnnotation]) -> dict[int, str]:
    """Class id -> name from the ``categories`` of the records; ids without a name get ``class_<id>``."""
    names: dict[int, str] = {}
    used: set[int] = set()
    for ann in annotations:
        if ann.categories:
            names.update(ann.categories)
        used.update(b.class_id for b in ann.boxes)
    for cid in used:
        names.setdefault(cid, f"class_{cid}")
    return dict(sorted(names.items()))


MAX_CLASS_MAP_BYTES = 4 << 20  # 10,000 names of a few hundred characters
MAX_CLASS_NAME = 1000  # characters of one class name


def read_class_map(path: Path) -> dict[int, str]:
    """Load ``class_map.json`` (``{"0": "name", ...}``): a regular file of its own (a FIFO or
    a file with several hard links is refused), at most ``MAX_CLASS_MAP_BYTES``."""
    raw = localfs.read_regular(path, single_link=True, max_bytes=MAX_CLASS_MAP_BYTES)
    return parse_class_map(raw, str(path))


def parse_class_map(raw: bytes, source: str) -> dict[int, str]:
    """A ``class_map.json`` from its bytes, strictly: a JSON object of at most
    ``MAX_CLASS_ID + 1`` entries, each key a class id ``0..MAX_CLASS_ID`` in decimal, each
    value a name of at most ``MAX_CLASS_NAME`` characters. Errors (:class:`AnnotationError`)
    name ``source`` and the first bad entry, never the whole file."""
    data = load_json(raw, source)
    if not isinstance(data, dict):
        raise AnnotationError(source, "<root>", "a JSON object of class id -> name",
                              type(data).__name__)  # fmt: skip
    if len(data) > MAX_CLASS_ID + 1:
        raise AnnotationError(source, "<root>", f"at most {MAX_CLASS_ID + 1} classes",
                              f"{len(data)} entries", rule="class.id_too_large")  # fmt: skip
    out: dict[int, str] = {}
    for key, name in data.items():
        if not (key.isascii() and key.isdigit() and len(key) <= len(str(MAX_CLASS_ID))):
            raise AnnotationError(source, key[:40], f"a class id 0..{MAX_CLASS_ID} as the key",
                                  key[:40], rule="class.id_too_large")  # fmt: skip
        if not isinstance(name, str) or len(name) > MAX_CLASS_NAME:
            shown = name[:40] + "..." if isinstance(name, str) else type(name).__name__
            raise AnnotationError(source, key, f"a class name of at most {MAX_CLASS_NAME} "
                                  "characters", shown)  # fmt: skip
        out[int(key)] = name
    return out


def parse_class_names(data: object, source: str) -> dict[int, str]:
    """Class names a user gives for a model: a class map ``{"0": "cat", ...}``, a
    ``categories`` list ``[{"class_id": 0, "name": "cat"}, ...]``, or a JSON object holding
    such a list under ``categories`` (an annotation file). :class:`AnnotationError` names
    ``source`` and the field otherwise."""
    if _is_mapping(data) and "categories" in data:
        data = data["categories"]
    if isinstance(data, list):
        return _parse_categories(data, source)
    if not _is_mapping(data):
        raise AnnotationError(
            source, "<file>", 'a class map {"0": "name", ...} or a categories list', data
        )
    out: dict[int, str] = {}
    for key, name in data.items():
        if not isinstance(key, str) or not key.isdigit() or not isinstance(name, str):
            raise AnnotationError(source, str(key), 'class id "0", "1", ... -> name', name)
        out[check_class_id(int(key), source, str(key))] = name
    return dict(sorted(out.items()))


def write_class_map(path: Path, classes: Mapping[int, str]) -> None:
    Path(path).write_text(json.dumps({str(k): v for k, v in sorted(classes.items())}, indent=1))


def detections_json(detections: np.ndarray, width: int, height: int) -> dict:
    """The verbose (``annotation=1``) response layout for ``(N, 6)`` detections
    ``[class_id, score, xmin, ymin, xmax, ymax]`` in pixels."""
    return {
        "image_size": [{"width": width, "height": height, "depth": 3}],
        "annotations": [
            {
                "class_id": int(r[0]),
                "score": float(r[1]),
                "left": float(r[2]),
                "top": float(r[3]),
                "width": float(r[4] - r[2]),
                "height": float(r[5] - r[3]),
            }
            for r in detections
        ],
    }
