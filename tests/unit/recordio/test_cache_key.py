"""The conversion cache key (content hash of an image+JSON dataset)."""

from __future__ import annotations

from recordio_helpers import copy_dataset

from pipeline_lib.recordio.cache_key import dataset_content_hash


def test_dataset_content_hash(dataset, tmp_path):
    h = dataset_content_hash(dataset, {"resize": None})
    copy = copy_dataset(dataset, tmp_path / "copy")
    assert dataset_content_hash(copy, {"resize": None}) == h  # location and mtime do not count
    assert dataset_content_hash(copy, {"resize": 300}) != h
    img = sorted((copy / "train").iterdir())[0]
    data = bytearray(img.read_bytes())
    data[-3] ^= 1
    img.write_bytes(bytes(data))
    h2 = dataset_content_hash(copy, {"resize": None})
    assert h2 != h and len(h2) == 64
    (copy / "notes.txt").write_text("not part of the dataset")
    assert dataset_content_hash(copy, {"resize": None}) == h2
