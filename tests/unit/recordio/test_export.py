"""RecordIO -> image+JSON: exact pixel inverses and the round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline_lib.annotations import iter_channel, read_annotation
from pipeline_lib.recordio.convert import convert_to_recordio
from pipeline_lib.recordio.export import pixel_value, recordio_to_dataset


def test_pixel_value_is_exact_inverse():
    rng = np.random.default_rng(0)
    for _ in range(2000):
        size = int(rng.integers(1, 5000))
        px = (
            float(rng.integers(0, size + 1))
            if rng.random() < 0.7
            else round(rng.random() * size, 2)
        )
        norm = np.float32(px / size)
        back = pixel_value(norm, size)
        assert np.float32(back / size) == norm
        assert back == px


def test_rec_to_json_round_trip_is_exact(converted, dataset, tmp_path):
    out, _ = converted
    back = tmp_path / "back"
    names = {0: "circle", 1: "square", 2: "triangle"}
    assert (
        recordio_to_dataset(f"{out}_train.rec", back, "train", class_names=names, progress=False)
        == 16
    )
    for img_path, ann in iter_channel(dataset, "train"):
        assert (back / "train" / ann.file).read_bytes() == img_path.read_bytes()
        again = read_annotation(back / "train_annotation" / f"{img_path.stem}.json")
        assert again == ann  # same ints, same ids, same categories
    # and converting the round-tripped data gives the very same bytes
    convert_to_recordio(back, tmp_path / "again", channel="train", progress=False)
    assert (tmp_path / "again.rec").read_bytes() == Path(f"{out}_train.rec").read_bytes()
