"""Every image+JSON rule: a failing case (an injected defect) and a passing case."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from dataset_defects import DEFECTS, inject
from PIL import Image

from pipeline_lib.validation import RULES, UnusableInputError, ValidationOptions, validate

FAST = ValidationOptions(great_expectations=False, workers=1)


def _rules_files(report) -> set[tuple[str, str]]:
    return {(f.rule, f.file) for f in report.findings}


def _first_json(root: Path, channel: str = "train") -> tuple[Path, dict]:
    path = sorted((root / f"{channel}_annotation").glob("*.json"))[0]
    return path, json.loads(path.read_text())


def test_synthetic_dataset_is_clean(dataset):
    report = validate(str(dataset), FAST)
    assert report.ok
    assert report.findings == []
    assert report.images == {"train": 8, "validation": 2}
    assert report.max_objects_per_image >= 1
    assert report.label_width == 2 + 5 * report.max_objects_per_image
    assert set(report.class_counts) == {0, 1, 2}


@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_each_injected_defect_is_found(dataset, defect):
    expected = inject(dataset, defect, "train", 1)
    report = validate(str(dataset), FAST)
    assert (expected.rule, expected.file) in _rules_files(report), report.human_summary()
    hit = next(f for f in report.findings if (f.rule, f.file) == (expected.rule, expected.file))
    assert hit.code == RULES[expected.rule].code
    assert Path(expected.file).name in hit.message  # the message names the file
    severe = {f.severity for f in report.findings if f.rule == expected.rule}
    assert report.ok == ("error" not in severe)


def test_all_defects_at_once_are_all_reported(tmp_path, synth_cache):
    root = synth_cache(tmp_path / "d", images=40, classes=3, seed=3)
    names = sorted(DEFECTS)
    expected = [inject(root, name, "train", i + 1) for i, name in enumerate(names)]
    report = validate(str(root), ValidationOptions(great_expectations=False, workers=2))
    found = _rules_files(report)
    missing = [e for e in expected if (e.rule, e.file) not in found]
    assert not missing, report.human_summary()
    assert not report.ok


def test_workers_do_not_change_the_report(tmp_path, synth_cache):
    root = synth_cache(tmp_path / "d", images=70, classes=3, seed=5)
    for i, name in enumerate(["grayscale", "class_gap", "size_mismatch", "duplicate_box"]):
        inject(root, name, "train", i * 7)
    one = validate(str(root), FAST)
    two = validate(str(root), ValidationOptions(great_expectations=False, workers=2))
    assert [f.to_json() for f in one.findings] == [f.to_json() for f in two.findings]
    assert one.summary_dict()["counts"] == two.summary_dict()["counts"]


# --------------------------------------------------------------- passing variants


def test_box_tolerance_allows_small_overhang(dataset):
    path, ann = _first_json(dataset)
    box = ann["annotations"][0]
    box["left"] = ann["image_size"][0]["width"] - box["width"] + 1.5
    path.write_text(json.dumps(ann))
    assert any(f.rule == "box.out_of_bounds" for f in validate(str(dataset), FAST).findings)
    opts = ValidationOptions(great_expectations=False, workers=1, box_tolerance=2)
    assert validate(str(dataset), opts).ok


def test_empty_policy_keep_counts_negatives(dataset):
    path, ann = _first_json(dataset)
    ann["annotations"] = []
    path.write_text(json.dumps(ann))
    rejected = validate(str(dataset), FAST)
    assert [f.rule for f in rejected.errors] == ["image.empty"]
    kept = validate(str(dataset), ValidationOptions(great_expectations=False, empty_policy="keep"))
    assert kept.ok and kept.empty_images["train"] == 1


def test_exif_orientation_matching_raw_pixels_is_a_warning(dataset):
    path, ann = _first_json(dataset)
    img = dataset / "train" / ann["file"]
    im = Image.open(img).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6
    im.save(img, format=Image.open(img).format, exif=exif.tobytes())
    report = validate(str(dataset), FAST)
    assert report.ok
    assert [f.rule for f in report.findings] == ["image.exif_orientation"]
    assert report.findings[0].severity == "warning"


def test_known_extra_box_fields_are_not_warned(dataset):
    path, ann = _first_json(dataset)
    ann["annotations"][0]["difficult"] = 1
    ann["annotations"][0]["iscrowd"] = 0
    path.write_text(json.dumps(ann))
    assert validate(str(dataset), FAST).findings == []


def test_integral_float_sizes_and_bare_image_size_object_pass(dataset):
    path, ann = _first_json(dataset)
    size = ann["image_size"][0]
    ann["image_size"] = {"width": float(size["width"]), "height": size["height"], "depth": 3}
    path.write_text(json.dumps(ann))
    assert validate(str(dataset), FAST).findings == []


# --------------------------------------------------------------- rules beyond DEFECTS


def test_missing_channel_is_reported(dataset):
    shutil.rmtree(dataset / "validation")
    shutil.rmtree(dataset / "validation_annotation")
    report = validate(str(dataset), FAST)
    files = {f.file for f in report.findings if f.rule == "layout.missing_channel"}
    assert files == {"validation/", "validation_annotation/"}


def test_duplicate_reference(dataset):
    path, ann = _first_json(dataset)
    other = sorted((dataset / "train_annotation").glob("*.json"))[1]
    other_ann = json.loads(other.read_text())
    (dataset / "train" / other_ann["file"]).unlink()
    other.write_text(json.dumps({**other_ann, "file": ann["file"]}))
    rules = {f.rule for f in validate(str(dataset), FAST).findings}
    assert {"pairing.duplicate_reference", "pairing.name_mismatch"} <= rules


def test_symlink_leaving_the_channel_is_an_escape(dataset, tmp_path):
    path, ann = _first_json(dataset)
    outside = tmp_path / "outside.jpg"
    img = dataset / "train" / ann["file"]
    shutil.move(img, outside)
    os.symlink(outside, img)
    report = validate(str(dataset), FAST)
    assert ("pairing.path_escape", f"train_annotation/{path.name}") in _rules_files(report)


def test_a_file_name_with_a_newline_is_refused_as_convert_refuses_it(dataset):
    path, ann = _first_json(dataset)
    img = dataset / "train" / ann["file"]
    ann["file"] = "a\nb.jpg"
    img.rename(dataset / "train" / ann["file"])
    path.write_text(json.dumps(ann))
    rules = {f.rule for f in validate(str(dataset), FAST).findings}
    assert "pairing.unusable_name" in rules


def test_absolute_path_is_an_escape(dataset):
    path, ann = _first_json(dataset)
    ann["file"] = str((dataset / "train" / ann["file"]).resolve())
    path.write_text(json.dumps(ann))
    assert "pairing.path_escape" in {f.rule for f in validate(str(dataset), FAST).findings}


def test_duplicate_image_within_a_channel(dataset):
    ann_paths = sorted((dataset / "train_annotation").glob("*.json"))
    a, b = (json.loads(p.read_text()) for p in ann_paths[:2])
    src, dst = dataset / "train" / a["file"], dataset / "train" / b["file"]
    dst.unlink()
    b["file"] = Path(b["file"]).stem + src.suffix
    shutil.copy(src, dataset / "train" / b["file"])
    b["image_size"], b["annotations"] = a["image_size"], a["annotations"]
    ann_paths[1].write_text(json.dumps(b))
    report = validate(str(dataset), FAST)
    assert ("image.duplicate", f"train/{b['file']}") in _rules_files(report)
    assert report.ok  # a warning


def test_validation_only_class_and_unused_category(tmp_path, synth_cache):
    root = synth_cache(tmp_path / "d", images=10, classes=3, seed=0)
    for p in sorted((root / "validation_annotation").glob("*.json"))[:1]:
        ann = json.loads(p.read_text())
        ann["annotations"][0]["class_id"] = 3
        ann["categories"].append({"class_id": 3, "name": "diamond"})
        ann["categories"].append({"class_id": 4, "name": "cross"})
        p.write_text(json.dumps(ann))
    report = validate(str(root), FAST)
    rules = {f.rule for f in report.findings}
    assert {"class.validation_only", "class.unused_category"} <= rules
    assert "class.not_contiguous" not in rules


def test_unnamed_class(dataset):
    path, ann = _first_json(dataset)
    ann["annotations"][0]["class_id"] = 3
    path.write_text(json.dumps(ann))
    rules = {f.rule for f in validate(str(dataset), FAST).findings}
    assert "class.unnamed" in rules


def test_all_problems_in_one_file_are_reported(dataset):
    path, ann = _first_json(dataset)
    ann["annotations"] = [
        {"class_id": 0, "left": 1, "top": 1, "width": -1, "height": 4},
        {"class_id": "x", "left": 1, "top": 1, "width": 2, "height": 2},
        {"class_id": 0, "left": 1e9, "top": 0, "width": 2, "height": 2},
        {"class_id": 0, "left": 1, "top": 1, "width": 2, "height": 2, "colour": "red"},
    ]
    path.write_text(json.dumps(ann))
    fields = {(f.rule, f.field) for f in validate(str(dataset), FAST).findings}
    assert ("box.non_positive", "annotations[0].width") in fields
    assert ("json.schema", "annotations[1].class_id") in fields
    assert ("box.out_of_bounds", "annotations[2]") in fields
    assert ("json.unknown_field", "annotations[3].colour") in fields


# --------------------------------------------------------------- unusable input


def test_missing_path_is_unusable(tmp_path):
    with pytest.raises(UnusableInputError):
        validate(str(tmp_path / "nope"), FAST)


def test_folder_that_is_not_a_dataset_is_unusable(tmp_path):
    (tmp_path / "random").mkdir()
    (tmp_path / "random" / "a.txt").write_text("x")
    with pytest.raises(UnusableInputError) as err:
        validate(str(tmp_path / "random"), FAST)
    assert isinstance(err.value, FileNotFoundError)


def test_full_decode_finds_corrupt_pixel_data(dataset):
    png = next((dataset / "train").glob("*.png"))
    data = bytearray(png.read_bytes())
    idat = data.index(b"IDAT")
    data[idat + 40 : idat + 240] = bytes(200)  # damage the compressed pixels, keep IEND
    png.write_bytes(bytes(data))
    assert validate(str(dataset), FAST).ok  # header and end marker are intact
    deep = validate(str(dataset), ValidationOptions(great_expectations=False, full_decode=True))
    assert [(f.rule, f.file) for f in deep.errors] == [("image.decode", f"train/{png.name}")]


def test_declared_unused_class_fills_a_gap_but_a_declared_outlier_does_not(dataset):
    path, ann = _first_json(dataset)
    ann["annotations"][0]["class_id"] = 4
    ann["categories"] += [{"class_id": 3, "name": "diamond"}, {"class_id": 4, "name": "cross"}]
    path.write_text(json.dumps(ann))
    report = validate(str(dataset), FAST)
    assert {f.rule for f in report.findings} == {"class.unused_category"}  # 3: declared only
    assert report.ok
    ann["categories"].append({"class_id": 9, "name": "ring"})
    path.write_text(json.dumps(ann))
    report = validate(str(dataset), FAST)
    gap = [f for f in report.findings if f.rule == "class.not_contiguous"]
    assert [(f.file, f.actual) for f in gap] == [(f"train_annotation/{path.name}", "9")]


def test_full_decode_is_strict_even_after_gluoncv_relaxed_pillow(dataset):
    """GluonCV's data package sets ImageFile.LOAD_TRUNCATED_IMAGES = True on import."""
    from PIL import ImageFile

    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        test_full_decode_finds_corrupt_pixel_data(dataset)
        assert ImageFile.LOAD_TRUNCATED_IMAGES is True
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = False
