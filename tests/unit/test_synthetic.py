import hashlib
import json

import numpy as np
import pytest
from PIL import Image

from pipeline_lib.annotations import iter_channel
from pipeline_lib.synthetic import SynthConfig, generate


def _digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes(tmp_path):
    cfg = SynthConfig(images=10, classes=3, seed=7)
    generate(tmp_path / "a", cfg)
    generate(tmp_path / "b", cfg)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    generate(tmp_path / "c", SynthConfig(images=10, classes=3, seed=8))
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_layout_boxes_and_categories(tmp_path):
    counts = generate(tmp_path, SynthConfig(images=20, classes=4, seed=1, max_objects=3))
    assert counts == {"train": 16, "validation": 4}
    seen = set()
    suffixes = set()
    for channel in ("train", "validation"):
        items = list(iter_channel(tmp_path, channel))
        assert len(items) == counts[channel]
        for image_path, ann in items:
            suffixes.add(image_path.suffix)
            with Image.open(image_path) as im:
                assert im.mode == "RGB"
                assert im.size == (ann.width, ann.height)
            assert 1 <= len(ann.boxes) <= 3
            assert ann.categories == {0: "circle", 1: "square", 2: "triangle", 3: "diamond"}
            for box in ann.boxes:
                x0, y0, x1, y1 = box.corners
                assert 0 <= x0 < x1 <= ann.width and 0 <= y0 < y1 <= ann.height
                seen.add(box.class_id)
    assert seen == {0, 1, 2, 3}
    assert suffixes == {".jpg", ".png"}


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="classes"):
        SynthConfig(classes=0)
    with pytest.raises(ValueError, match="images"):
        SynthConfig(images=1)


def test_regenerating_replaces_stale_files(tmp_path):
    generate(tmp_path / "d", SynthConfig(images=12, classes=2, seed=1))
    generate(tmp_path / "d", SynthConfig(images=4, classes=2, seed=1), overwrite=True)
    assert len(list((tmp_path / "d" / "train_annotation").glob("*.json"))) == 3
    assert not list(tmp_path.glob(".d.*"))


def _object_colours(root, cfg):
    """(class name, median RGB inside the box centre) of every train object."""
    out = []
    for ann_path in sorted((root / "train_annotation").glob("*.json")):
        ann = json.loads(ann_path.read_text())
        pixels = np.asarray(Image.open(root / "train" / ann["file"]).convert("RGB"))
        for box in ann["annotations"]:
            cx, cy = box["left"] + box["width"] // 2, box["top"] + box["height"] // 2
            patch = pixels[cy - 1 : cy + 2, cx - 1 : cx + 2].reshape(-1, 3)
            out.append((cfg.class_names[box["class_id"]], tuple(np.median(patch, axis=0))))
    return out


def test_shape_cue_classes_differ_only_by_shape(tmp_path):
    cfg = SynthConfig(images=40, classes=3, seed=3, cue="shape")
    generate(tmp_path / "a", cfg)
    generate(tmp_path / "b", cfg)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert cfg.class_names == ["rectangle", "ellipse", "triangle"]
    colours = _object_colours(tmp_path / "a", cfg)
    for name in ("rectangle", "ellipse"):  # filled at the box centre
        seen = {c for n, c in colours if n == name}
        assert len(seen) >= 5, f"{name}: one colour per class would be a colour cue"
    shapes = {}
    for ann_path in (tmp_path / "a" / "train_annotation").glob("*.json"):
        for box in json.loads(ann_path.read_text())["annotations"]:
            shapes.setdefault(box["class_id"], set()).add(round(box["width"] / box["height"], 1))
    assert all(len(ratios) >= 3 for ratios in shapes.values())  # aspect random too


def test_shape_cue_class_limit():
    with pytest.raises(ValueError, match="classes must be in 1..6 with cue shape"):
        SynthConfig(classes=7, cue="shape")
    with pytest.raises(ValueError, match="cue must be one of"):
        SynthConfig(cue="texture")
