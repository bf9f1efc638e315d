import json

import numpy as np
import pytest

from pipeline_lib.annotations import (
    AnnotationError,
    Box,
    ImageAnnotation,
    has_positive_size,
    leaves_image,
    read_annotation,
)

GOOD = {
    "file": "a.jpg",
    "image_size": [{"width": 100, "height": 50, "depth": 3}],
    "annotations": [{"class_id": 1, "left": 10, "top": 5, "width": 20, "height": 10}],
    "categories": [{"class_id": 0, "name": "cat"}, {"class_id": 1, "name": "dog"}],
}


def test_round_trip():
    ann = ImageAnnotation.from_json(GOOD)
    assert ann.boxes == [Box(1, 10, 5, 20, 10)]
    assert ann.categories == {0: "cat", 1: "dog"}
    assert ann.to_json() == GOOD


def test_label_array_pixels_and_normalized():
    ann = ImageAnnotation.from_json(GOOD)
    np.testing.assert_allclose(ann.label_array(), [[1, 10, 5, 30, 15]])
    np.testing.assert_allclose(ann.label_array(normalized=True), [[1, 0.1, 0.1, 0.3, 0.3]])


@pytest.mark.parametrize(
    "mutate,field",
    [
        (lambda d: d.pop("file"), "file"),
        (lambda d: d.update(image_size="big"), "image_size"),
        (lambda d: d["annotations"][0].update(class_id=-1), "annotations[0].class_id"),
        (lambda d: d["annotations"][0].update(left="x"), "annotations[0].left"),
        (lambda d: d["annotations"][0].update(width=float("inf")), "annotations[0].width"),
        (lambda d: d.update(categories=[{"id": 0}]), "categories[0]"),
    ],
)
def test_malformed_fields_are_named(mutate, field):
    data = json.loads(json.dumps(GOOD))
    mutate(data)
    with pytest.raises(AnnotationError) as err:
        ImageAnnotation.from_json(data, "x.json")
    assert err.value.field == field
    assert "x.json" in str(err.value)


def test_malformed_json_file(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    with pytest.raises(AnnotationError, match="bad.json"):
        read_annotation(path)


def test_box_rules_in_pixels_and_normalized():
    assert (
        has_positive_size(1, 0.5) and not has_positive_size(0, 3) and not has_positive_size(2, -1)
    )
    assert not leaves_image(0, 0, 10, 20, 10, 20)
    assert leaves_image(-0.5, 0, 10, 20, 10, 20) and not leaves_image(-0.5, 0, 10, 20, 10, 20, 0.5)
    assert leaves_image(0, 0, 10, 20.1, 10, 20, 0.5, 0.0)  # per-axis tolerance
    assert leaves_image(0.1, 0.1, 1.01, 0.5, 1, 1) and not leaves_image(0.1, 0.1, 1.0, 0.5, 1, 1)
