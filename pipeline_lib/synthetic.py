"""Deterministic synthetic detection datasets: coloured shapes on textured backgrounds.

Two cues tell the classes apart:

* ``colour`` (the quickest demo): every class has its own shape AND its own fixed colour, so
  a detector can score well from colour alone;
* ``shape``: classes differ only by shape (rectangle, ellipse, triangle, diamond, cross,
  ring); colour, size, aspect ratio and background are random per object, so a detector
  must learn shapes. What the learn benchmark and the demo use.

Output is the SageMaker image+JSON layout (``train/ validation/ train_annotation/
validation_annotation/``). The same seed always gives byte-identical files.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .annotations import Box, ImageAnnotation, annotation_channel, write_annotation

# (name, RGB) per class: shape and colour both differ, so every class is learnable.
CLASSES: list[tuple[str, tuple[int, int, int]]] = [
    ("circle", (220, 40, 40)),
    ("square", (40, 90, 230)),
    ("triangle", (245, 200, 30)),
    ("diamond", (40, 190, 80)),
    ("cross", (200, 60, 220)),
    ("ring", (30, 210, 220)),
    ("hbar", (250, 140, 20)),
    ("vbar", (150, 90, 40)),
]


#: Class names of the ``shape`` cue: no two tell apart by colour, size or aspect.
SHAPE_CLASSES = ["rectangle", "ellipse", "triangle", "diamond", "cross", "ring"]
_SHAPE_DRAWN_AS = {"rectangle": "square", "ellipse": "circle"}
CUES = ("colour", "shape")


@dataclass(frozen=True)
class SynthConfig:
    """What to generate."""

    images: int = 100
    classes: int = 3
    seed: int = 0
    val_fraction: float = 0.2
    max_objects: int = 3
    min_size: int = 256
    max_size: int = 400
    cue: str = "colour"

    def __post_init__(self) -> None:
        if self.cue not in CUES:
            raise ValueError(f"cue must be one of {', '.join(CUES)}, got {self.cue!r}")
        if not 1 <= self.classes <= len(self.class_names_pool):
            raise ValueError(
                f"classes must be in 1..{len(self.class_names_pool)} with cue {self.cue}, "
                f"got {self.classes}"
            )
        if self.images < 2:
            raise ValueError(f"images must be >= 2 (train + validation), got {self.images}")
        if self.max_objects < 1:
            raise ValueError(f"max_objects must be >= 1, got {self.max_objects}")

    @property
    def class_names_pool(self) -> list[str]:
        return SHAPE_CLASSES if self.cue == "shape" else [name for name, _ in CLASSES]

    @property
    def class_names(self) -> list[str]:
        """The names of the classes generated, by class id."""
        return self.class_names_pool[: self.classes]


def _background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Low-contrast texture: a gradient, stripes and noise, in muted colours."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(70, 170, size=3)
    angle = rng.uniform(0, np.pi)
    freq = rng.uniform(0.02, 0.12)
    stripes = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * freq)[..., None]
    grad = (xx / w - 0.5)[..., None] * rng.uniform(-40, 40, size=3)
    noise = rng.normal(0, 12, size=(h, w, 3))
    img = base + 18 * stripes + grad + noise
    return np.clip(img, 0, 255).astype(np.uint8)


def _draw(draw: ImageDraw.ImageDraw, name: str, color, x0: int, y0: int, s: int, t: int) -> None:
    x1, y1 = x0 + s - 1, y0 + t - 1
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    fns: dict[str, Callable[[], None]] = {
        "circle": lambda: draw.ellipse([x0, y0, x1, y1], fill=color),
        "square": lambda: draw.rectangle([x0, y0, x1, y1], fill=color),
        "triangle": lambda: draw.polygon([(cx, y0), (x1, y1), (x0, y1)], fill=color),
        "diamond": lambda: draw.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=color),
        "cross": lambda: (
            draw.rectangle([x0, cy - t / 6, x1, cy + t / 6], fill=color),
            draw.rectangle([cx - s / 6, y0, cx + s / 6, y1], fill=color),
        ),
        "ring": lambda: draw.ellipse([x0, y0, x1, y1], outline=color, width=max(3, s // 6)),
        "hbar": lambda: draw.rectangle([x0, y0, x1, y1], fill=color),
        "vbar": lambda: draw.rectangle([x0, y0, x1, y1], fill=color),
    }
    fns[name]()


def _saturated_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    """A random vivid colour (HSV saturation and value >= 0.6)."""
    import colorsys

    r, g, b = colorsys.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0.6, 1), rng.uniform(0.6, 1))
    return int(r * 255), int(g * 255), int(b * 255)


def _shape_object(rng: np.random.Generator, cid: int, w: int, h: int):
    """Shape cue: what to draw, its colour and size; only the shape depends on the class."""
    name = SHAPE_CLASSES[cid]
    s = int(rng.integers(min(w, h) // 7, min(w, h) // 2.5))
    t = int(np.clip(s * rng.uniform(0.6, 1.6), 12, min(w, h) - 1))
    return _SHAPE_DRAWN_AS.get(name, name), _saturated_colour(rng), s, t


def _colour_object(rng: np.random.Generator, cid: int, w: int, h: int):
    """Colour cue: the class's own shape, fixed colour and aspect."""
    name, color = CLASSES[cid]
    s = int(rng.integers(min(w, h) // 6, min(w, h) // 2.5))
    t = s
    if name == "hbar":
        t = max(8, s // 3)
    elif name == "vbar":
        s, t = max(8, s // 3), s
    return name, color, s, t


def _iou(a: tuple, b: tuple) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def make_image(
    rng: np.random.Generator, cfg: SynthConfig, first_class: int = 0
) -> tuple[Image.Image, list[Box]]:
    """One image and its boxes; the first object is of ``first_class``."""
    w = int(rng.integers(cfg.min_size, cfg.max_size + 1))
    h = int(rng.integers(cfg.min_size, cfg.max_size + 1))
    img = Image.fromarray(_background(rng, w, h))
    draw = ImageDraw.Draw(img)
    boxes: list[Box] = []
    placed: list[tuple] = []
    for k in range(int(rng.integers(1, cfg.max_objects + 1))):
        cid = first_class if k == 0 else int(rng.integers(0, cfg.classes))
        draw_object = _shape_object if cfg.cue == "shape" else _colour_object
        for _attempt in range(20):
            name, color, s, t = draw_object(rng, cid, w, h)
            x0 = int(rng.integers(0, w - s))
            y0 = int(rng.integers(0, h - t))
            rect = (x0, y0, x0 + s, y0 + t)
            if all(_iou(rect, p) < 0.1 for p in placed):
                break
        else:
            continue
        placed.append(rect)
        _draw(draw, name, color, x0, y0, s, t)
        boxes.append(Box(cid, x0, y0, s, t))
    return img, boxes


def generate(out: str | Path, cfg: SynthConfig, *, overwrite: bool = False) -> dict[str, int]:
    """Write the dataset to ``out`` (published whole, atomically); image counts. An existing
    ``out`` is refused unless it is an earlier ``odp synth`` output and ``overwrite``."""
    from .storage import atomic_dir

    with atomic_dir(out, overwrite=overwrite, writer="odp synth") as tmp:
        return _generate(tmp, cfg)


def _generate(out: Path, cfg: SynthConfig) -> dict[str, int]:
    rng = np.random.default_rng(cfg.seed)
    n_val = max(1, int(round(cfg.images * cfg.val_fraction)))
    counts = {"train": cfg.images - n_val, "validation": n_val}
    categories = dict(enumerate(cfg.class_names))
    index = 0
    for channel, n in counts.items():
        (out / channel).mkdir(parents=True, exist_ok=True)
        for _ in range(n):
            # Cycling the first object's class puts every class in both channels.
            img, boxes = make_image(rng, cfg, first_class=index % cfg.classes)
            stem = f"{channel}_{index:06d}"
            ext = ".png" if index % 4 == 3 else ".jpg"
            buf = io.BytesIO()
            if ext == ".jpg":
                img.save(buf, format="JPEG", quality=92)
            else:
                img.save(buf, format="PNG")
            (out / channel / f"{stem}{ext}").write_bytes(buf.getvalue())
            ann = ImageAnnotation(f"{stem}{ext}", img.width, img.height, 3, boxes, categories)
            write_annotation(out / annotation_channel(channel) / f"{stem}.json", ann)
            index += 1
    return counts
