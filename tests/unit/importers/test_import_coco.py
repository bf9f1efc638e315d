"""COCO import: category remapping, crowd handling, channels, image lookup."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipeline_lib.importers import import_coco
from pipeline_lib.validation import ValidationOptions, validate

FAST = ValidationOptions(great_expectations=False, workers=1)
COCO_IDS = {0: 3, 1: 17, 2: 90}  # synthetic class -> sparse COCO category id
NAMES = {3: "circle", 17: "square", 90: "triangle"}


def _coco(tmp: Path, synth, name="instances_train2017.json", crowd_on_first=False) -> Path:
    ann_dir, img_dir = tmp / "annotations", tmp / "train2017"
    ann_dir.mkdir(parents=True)
    img_dir.mkdir()
    images, anns = [], []
    for i, (img, ann) in enumerate(synth):
        shutil.copy(img, img_dir / img.name)
        size = ann["image_size"][0]
        images.append(
            {"id": 100 + i, "file_name": img.name, "width": size["width"], "height": size["height"]}
        )
        for j, b in enumerate(ann["annotations"]):
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": 100 + i,
                    "category_id": COCO_IDS[b["class_id"]],
                    "bbox": [b["left"], b["top"], b["width"], b["height"]],
                    "area": b["width"] * b["height"],
                    "iscrowd": int(crowd_on_first and i == 0 and j == 0),
                }
            )
    cats = [{"id": k, "name": v, "supercategory": "shape"} for k, v in NAMES.items()]
    path = ann_dir / name
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return path


def _anns(out: Path, channel: str) -> dict[str, dict]:
    return {
        p.stem: json.loads(p.read_text()) for p in (out / f"{channel}_annotation").glob("*.json")
    }


def test_remap_and_channel_from_name(tmp_path, synth):
    src = _coco(tmp_path / "coco", synth)
    out = tmp_path / "out"
    summary = import_coco(str(src), str(out))
    assert "remapped" in summary and "train 10, validation 0" in summary
    got = _anns(out, "train")
    img, ann = synth[0]
    assert got[img.stem]["annotations"] == ann["annotations"]
    assert got[img.stem]["categories"] == ann["categories"]


def test_train_and_val_files_build_both_channels(tmp_path, synth):
    train = _coco(tmp_path / "a", synth[:7])
    val = _coco(tmp_path / "b", synth[7:], name="instances_val2017.json")
    out = tmp_path / "out"
    import_coco(str(train), str(out))
    import_coco(str(val), str(out), images_dir=str(tmp_path / "b" / "train2017"))
    report = validate(str(out), FAST)
    assert report.images == {"train": 7, "validation": 3}
    assert report.ok and report.findings == [], report.human_summary()


@pytest.mark.parametrize("mode", ["drop", "keep"])
def test_crowd(tmp_path, synth, mode):
    src = _coco(tmp_path / "coco", synth, crowd_on_first=True)
    out = tmp_path / "out"
    summary = import_coco(str(src), str(out), crowd=mode)
    img, ann = synth[0]
    got = _anns(out, "train")[img.stem]["annotations"]
    if mode == "drop":
        assert len(got) == len(ann["annotations"]) - 1 and "1 dropped" in summary
    else:
        assert got[0]["iscrowd"] == 1 and "1 kept" in summary


def test_random_split_when_name_says_nothing(tmp_path, synth):
    src = _coco(tmp_path / "coco", synth, name="labels.json")
    (tmp_path / "coco" / "train2017").rename(tmp_path / "coco" / "annotations" / "images")
    out = tmp_path / "out"
    summary = import_coco(str(src), str(out), val_fraction=0.3, seed=1)
    assert "train 7, validation 3" in summary


def test_missing_images_and_bad_files(tmp_path, synth):
    src = _coco(tmp_path / "coco", synth)
    (tmp_path / "coco" / "train2017" / synth[0][0].name).unlink()
    summary = import_coco(str(src), str(tmp_path / "out"))
    assert "1 images not found" in summary
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"images": []}))
    with pytest.raises(ValueError, match="not a COCO"):
        import_coco(str(bad), str(tmp_path / "out2"))
    with pytest.raises(FileNotFoundError):
        import_coco(str(tmp_path / "none.json"), str(tmp_path / "out3"))
