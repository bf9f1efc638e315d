"""Importers refuse hostile and broken sources with one line, and never copy a file from
outside the source (a marker file beside it never reaches the output)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from pipeline_lib.cli import main
from pipeline_lib.importers import import_coco, import_voc

MARKER = b"SECRET-MARKER-0123456789"
NAMES = ["circle", "square", "triangle"]


def _coco(tmp: Path, synth) -> tuple[Path, dict]:
    """``tmp/coco/instances_train.json`` + ``tmp/coco/images/``, and the JSON as a dict."""
    root = tmp / "coco"
    (root / "images").mkdir(parents=True)
    images, anns = [], []
    for i, (img, ann) in enumerate(synth[:4]):
        shutil.copy(img, root / "images" / img.name)
        size = ann["image_size"][0]
        images.append({"id": i + 1, "file_name": img.name, **size})
        for b in ann["annotations"]:
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": b["class_id"] + 1,
                    "bbox": [b["left"], b["top"], b["width"], b["height"]],
                }
            )
    coco = {
        "images": images,
        "annotations": anns,
        "categories": [{"id": k + 1, "name": n} for k, n in enumerate(NAMES)],
    }
    return root / "instances_train.json", coco


def _run(args: list[str], capsys) -> tuple[int, str]:
    code = main(args)
    err = capsys.readouterr().err
    return code, err


def _never_copied(tmp_path: Path) -> None:
    for p in tmp_path.rglob("*"):
        if p.is_file() and not p.is_symlink() and p.name != "secret.jpg":
            assert MARKER not in p.read_bytes(), p


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink"])
def test_coco_file_name_outside_the_images_folder_is_refused(tmp_path, synth, how, capsys):
    (tmp_path / "secret.jpg").write_bytes(MARKER)
    path, coco = _coco(tmp_path, synth)
    if how == "dotdot":
        coco["images"][0]["file_name"] = "../../secret.jpg"
    elif how == "absolute":
        coco["images"][0]["file_name"] = str(tmp_path / "secret.jpg")
    else:
        os.symlink(tmp_path / "secret.jpg", path.parent / "images" / "link.jpg")
        coco["images"][0]["file_name"] = "link.jpg"
    path.write_text(json.dumps(coco))
    code, err = _run(["import", "coco", str(path), str(tmp_path / "out")], capsys)
    assert code == 1 and err.count("\n") == 1 and "[L005 pairing.path_escape]" in err
    assert "image id 1" in err
    assert not (tmp_path / "out").exists()
    _never_copied(tmp_path)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c["images"][1].update(file_name=c["images"][0]["file_name"]),
         r"images 1 and 2 share the file_name"),
        (lambda c: c["categories"].append({"id": 1, "name": "again"}),
         r"category id 1 is listed twice"),
        (lambda c: c["annotations"][0].pop("bbox"), r"annotations\[0\] \(id 1\): 'bbox' must be"),
        (lambda c: c["annotations"][0].update(bbox=["a", 1, 2, 3]), r"'bbox' must be \[x, y"),
        (lambda c: c["annotations"][0].update(bbox=[1, 2, 3]), r"4 finite numbers"),
        (lambda c: c["annotations"][0].pop("image_id"), r"needs an 'image_id'"),
    ],
)  # fmt: skip
def test_coco_structure_errors_are_one_line(tmp_path, synth, change, message, capsys):
    path, coco = _coco(tmp_path, synth)
    change(coco)
    path.write_text(json.dumps(coco))
    code, err = _run(["import", "coco", str(path), str(tmp_path / "out")], capsys)
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert str(path) in err
    assert re.search(message, err), err
    assert not (tmp_path / "out").exists()


def test_coco_duplicate_keys_and_corrupt_images(tmp_path, synth, capsys):
    path, coco = _coco(tmp_path, synth)
    path.write_text(json.dumps(coco)[:-1] + ', "images": []}')
    code, err = _run(["import", "coco", str(path), str(tmp_path / "out")], capsys)
    assert code == 1 and "key 'images' appears twice" in err
    path.write_text(json.dumps(coco))
    name = coco["images"][2]["file_name"]
    (path.parent / "images" / name).write_bytes(b"not an image at all")
    code, err = _run(["import", "coco", str(path), str(tmp_path / "out")], capsys)
    assert code == 1 and err.count("\n") == 1 and name in err and "[I001 image.decode]" in err


def test_coco_tiny_boxes_are_dropped_with_a_warning(tmp_path, synth):
    path, coco = _coco(tmp_path, synth)
    coco["annotations"][0]["bbox"][2] = 0.5
    path.write_text(json.dumps(coco))
    n = len(coco["annotations"])
    summary = import_coco(str(path), str(tmp_path / "out"))
    assert f"{n - 1} boxes" in summary and "warning: 1 boxes below the minimum box size" in summary
    summary = import_coco(str(path), str(tmp_path / "out2"), min_box_size=0.25)
    assert f"{n} boxes" in summary and "warning" not in summary


def _voc(tmp: Path, synth, obj_xml: str | None = None) -> Path:
    root = tmp / "voc"
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    for img, ann in synth[:4]:
        shutil.copy(img, root / "JPEGImages" / img.name)
        objs = "".join(
            f"<object><name>{NAMES[b['class_id']]}</name><bndbox><xmin>{b['left'] + 1}</xmin>"
            f"<ymin>{b['top'] + 1}</ymin><xmax>{b['left'] + b['width']}</xmax>"
            f"<ymax>{b['top'] + b['height']}</ymax></bndbox></object>"
            for b in ann["annotations"]
        )
        (root / "Annotations" / f"{img.stem}.xml").write_text(
            f"<annotation><filename>{img.name}</filename>{objs}{obj_xml or ''}</annotation>"
        )
    return root


def test_voc_missing_coordinate_names_file_and_object(tmp_path, synth, capsys):
    src = _voc(tmp_path, synth, "<object><name>circle</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
               "<xmax>5</xmax></bndbox></object>")  # fmt: skip
    code, err = _run(["import", "voc", str(src), str(tmp_path / "out")], capsys)
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert ".xml: object" in err and "(circle): bndbox has no <ymax>" in err
    assert not (tmp_path / "out").exists()


def test_voc_zero_area_boxes_warn_and_min_box_size_drops(tmp_path, synth):
    src = _voc(tmp_path, synth, "<object><name>circle</name><bndbox><xmin>5</xmin><ymin>5</ymin>"
               "<xmax>5</xmax><ymax>9</ymax></bndbox></object>")  # fmt: skip
    summary = import_voc(str(src), str(tmp_path / "out"), classes=NAMES, val_fraction=0)
    assert "warning: 4 boxes with xmax <= xmin" in summary
    assert "below the minimum box size" not in summary  # 1 px wide: kept at the default
    summary = import_voc(
        str(src), str(tmp_path / "out2"), classes=NAMES, val_fraction=0, min_box_size=2
    )
    assert "warning: 4 boxes below the minimum box size 2 px dropped" in summary
    for p in (tmp_path / "out2" / "train_annotation").glob("*.json"):
        assert all(b["width"] >= 2 for b in json.loads(p.read_text())["annotations"])


def test_voc_symlinked_image_or_xml_leaving_the_source_is_refused(tmp_path, synth, capsys):
    (tmp_path / "secret.jpg").write_bytes(MARKER)
    src = _voc(tmp_path, synth)
    os.symlink(tmp_path / "secret.jpg", src / "JPEGImages" / "zz.jpg")
    code, err = _run(["import", "voc", str(src), str(tmp_path / "out")], capsys)
    assert code == 1 and "[L005 pairing.path_escape]" in err and "zz.jpg" in err
    (src / "JPEGImages" / "zz.jpg").unlink()
    os.mkfifo(src / "Annotations" / "pipe.xml")
    code, err = _run(["import", "voc", str(src), str(tmp_path / "out")], capsys)
    assert code == 1 and "[L008 path.not_regular_file]" in err
    _never_copied(tmp_path)
