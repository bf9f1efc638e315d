"""Pascal VOC import: layouts, splits, class order, difficult, coordinates."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipeline_lib.importers import import_voc
from pipeline_lib.validation import ValidationOptions, validate

NAMES = ["circle", "square", "triangle"]
FAST = ValidationOptions(great_expectations=False, workers=1)


def _xml(filename: str, ann: dict, difficult: set[int] = frozenset(), size=None) -> str:
    w, h = size or (ann["image_size"][0]["width"], ann["image_size"][0]["height"])
    objs = []
    for i, b in enumerate(ann["annotations"]):
        xmin, ymin = b["left"] + 1, b["top"] + 1
        xmax, ymax = b["left"] + b["width"], b["top"] + b["height"]
        objs.append(
            f"<object><name>{NAMES[b['class_id']]}</name><pose>Unspecified</pose>"
            f"<truncated>0</truncated><difficult>{int(i in difficult)}</difficult>"
            f"<bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin><xmax>{xmax}</xmax>"
            f"<ymax>{ymax}</ymax></bndbox></object>"
        )
    return (
        f"<annotation><folder>x</folder><filename>{filename}</filename><size><width>{w}</width>"
        f"<height>{h}</height><depth>3</depth></size>{''.join(objs)}</annotation>"
    )


def _devkit(root: Path, synth, difficult_first=False, imagesets=True) -> Path:
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    stems = []
    for i, (img, ann) in enumerate(synth):
        shutil.copy(img, root / "JPEGImages" / img.name)
        diff = {0} if difficult_first and i == 0 else set()
        (root / "Annotations" / f"{img.stem}.xml").write_text(_xml(img.name, ann, diff))
        stems.append(img.stem)
    if imagesets:
        main = root / "ImageSets" / "Main"
        main.mkdir(parents=True)
        (main / "train.txt").write_text("\n".join(stems[:7]) + "\n")
        (main / "val.txt").write_text("\n".join(stems[7:]) + "\n")
    return root


def _anns(out: Path, channel: str) -> dict[str, dict]:
    return {
        p.stem: json.loads(p.read_text()) for p in (out / f"{channel}_annotation").glob("*.json")
    }


def test_vocdevkit_roundtrip_and_imagesets_split(tmp_path, synth):
    src = _devkit(tmp_path / "voc", synth)
    out = tmp_path / "out"
    summary = import_voc(str(src), str(out), classes=NAMES)
    assert "ImageSets/Main" in summary and "train 7, validation 3" in summary
    train = _anns(out, "train")
    assert len(train) == 7 and len(_anns(out, "validation")) == 3
    img, ann = synth[0]
    got = train[img.stem]
    assert got["annotations"] == ann["annotations"]  # 1-based VOC -> pixels, exactly
    assert got["image_size"] == ann["image_size"]
    assert got["categories"] == [{"class_id": i, "name": n} for i, n in enumerate(NAMES)]
    report = validate(str(out), FAST)
    assert report.ok and report.findings == [], report.human_summary()


def test_class_list_fixes_order_and_filters(tmp_path, synth):
    src = _devkit(tmp_path / "voc", synth)
    out = tmp_path / "out"
    summary = import_voc(str(src), str(out), classes=["triangle", "circle"])
    assert "objects of classes not in --classes skipped: square" in summary
    anns = {**_anns(out, "train"), **_anns(out, "validation")}
    ids = {b["class_id"] for a in anns.values() for b in a["annotations"]}
    assert ids <= {0, 1}
    cats = next(iter(anns.values()))["categories"]
    assert cats == [{"class_id": 0, "name": "triangle"}, {"class_id": 1, "name": "circle"}]


def test_default_class_order_is_sorted_names(tmp_path, synth):
    src = _devkit(tmp_path / "voc", synth)
    import_voc(str(src), str(tmp_path / "out"))
    ann = next(iter(_anns(tmp_path / "out", "train").values()))
    assert [c["name"] for c in ann["categories"]] == sorted(NAMES)


@pytest.mark.parametrize("mode", ["keep", "drop"])
def test_difficult(tmp_path, synth, mode):
    src = _devkit(tmp_path / "voc", synth, difficult_first=True)
    out = tmp_path / "out"
    summary = import_voc(str(src), str(out), classes=NAMES, difficult=mode)
    img, ann = synth[0]
    got = _anns(out, "train")[img.stem]["annotations"]
    if mode == "keep":
        assert got[0]["difficult"] == 1 and "difficult" not in got[-1] or len(got) == 1
        assert "1 boxes marked" in summary
        assert validate(str(out), FAST).findings == []  # a known field
    else:
        assert len(got) == len(ann["annotations"]) - 1
        assert "1 dropped" in summary


def test_random_split_is_seeded_and_generic_folder(tmp_path, synth):
    src = tmp_path / "plain"
    (src / "annotations").mkdir(parents=True)
    (src / "images").mkdir()
    for img, ann in synth:
        shutil.copy(img, src / "images" / img.name)
        (src / "annotations" / f"{img.stem}.xml").write_text(_xml("wrong-name.jpg", ann))
    a = import_voc(str(src), str(tmp_path / "a"), val_fraction=0.3, seed=4)
    import_voc(str(src), str(tmp_path / "b"), val_fraction=0.3, seed=4)
    assert "train 7, validation 3" in a
    assert sorted(_anns(tmp_path / "a", "validation")) == sorted(
        _anns(tmp_path / "b", "validation")
    )
    assert validate(str(tmp_path / "a"), FAST).ok


def test_identical_images_stay_in_one_channel(tmp_path, synth):
    src = tmp_path / "plain"
    (src / "images").mkdir(parents=True)
    img, ann = synth[0]
    for i in range(6):
        shutil.copy(img, src / "images" / f"copy{i}.jpg")
        (src / f"copy{i}.xml").write_text(_xml(f"copy{i}.jpg", ann))
    for img, ann in synth[1:5]:
        shutil.copy(img, src / "images" / img.name)
        (src / f"{img.stem}.xml").write_text(_xml(img.name, ann))
    import_voc(str(src), str(tmp_path / "out"), val_fraction=0.5)
    train, val = _anns(tmp_path / "out", "train"), _anns(tmp_path / "out", "validation")
    copies = {k for k in train if k.startswith("copy")}, {k for k in val if k.startswith("copy")}
    assert sorted(map(len, copies)) == [0, 6]
    assert "dataset.train_validation_overlap" not in {
        f.rule for f in validate(str(tmp_path / "out"), FAST).findings
    }


def test_zero_based_coordinates_are_kept(tmp_path, synth):
    src = tmp_path / "plain"
    src.mkdir()
    img, ann = synth[0]
    shutil.copy(img, src / img.name)
    xml = _xml(img.name, ann).replace(f"<xmin>{ann['annotations'][0]['left'] + 1}<", "<xmin>0<")
    (src / f"{img.stem}.xml").write_text(xml)
    summary = import_voc(str(src), str(tmp_path / "out"), val_fraction=0)
    box = _anns(tmp_path / "out", "train")[img.stem]["annotations"][0]
    assert box["left"] == 0
    assert "0-based" in summary


def test_bad_inputs(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError):
        import_voc(str(tmp_path / "empty"), str(tmp_path / "out"))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.xml").write_text("<annotation><object>")
    with pytest.raises(ValueError, match="a.xml"):
        import_voc(str(tmp_path / "bad"), str(tmp_path / "out"))
    with pytest.raises(ValueError):
        import_voc(str(tmp_path / "bad"), str(tmp_path / "out"), difficult="maybe")
