import hashlib

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
    generate(tmp_path / "d", SynthConfig(images=4, classes=2, seed=1))
    assert len(list((tmp_path / "d" / "train_annotation").glob("*.json"))) == 3
    assert not list(tmp_path.glob(".d.*"))
