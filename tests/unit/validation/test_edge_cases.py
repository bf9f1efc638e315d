"""Every file in ../shared/datasets/edge_cases gets the right verdict, with a message naming it."""

from __future__ import annotations

import json
import shutil

import pytest
from PIL import Image

from pipeline_lib.validation import ValidationOptions, validate

# file -> the rules its findings must carry (exactly); empty = accepted without remark.
VERDICTS: dict[str, set[str]] = {
    "mmcv/color.jpg": set(),
    "mmcv/color_exif.jpg": {"image.exif_orientation"},  # warning: size matches raw pixels
    "mmcv/gray_alpha.png": {"image.channels"},
    "mmcv/grayscale.jpg": {"image.channels"},
    "mmcv/grayscale_dim3.jpg": {"image.channels"},
    "mmcv/palette.gif": {"image.format", "image.channels"},
    "mmcv/uint16-5channel.tif": {"image.decode"},
    "pillow/broken.png": {"image.decode"},
    "pillow/broken_data_stream.png": {"image.truncated"},
    "pillow/hopper.jpg": set(),
    "pillow/hopper.png": set(),
    "pillow/hopper.webp": {"image.format"},
    "pillow/hopper_16bit_qtables.jpg": set(),
    "pillow/hopper_bad_exif.jpg": {"image.channels"},
    "pillow/hopper_bw_500.png": {"image.channels"},
    "pillow/hopper_gray.jpg": {"image.channels"},
    "pillow/hopper_idat_after_image_end.png": set(),
    **{f"pillow/hopper_orientation_{i}.jpg": {"image.exif_orientation"} for i in range(2, 9)},
    "pillow/invalid-exif.jpg": set(),
    "pillow/pil123rgba.png": {"image.channels"},
    "pillow/pil_sample_cmyk.jpg": {"image.channels"},
    "pillow/transparent.webp": {"image.format", "image.channels"},
    "pillow/truncated_app14.jpg": set(),
    "pillow/truncated_end_chunk.png": {"image.truncated"},
    "pillow/truncated_image.png": {"image.truncated"},
    "pillow/truncated_jpeg.jpg": {"image.truncated"},
    "pillow/uncompressed_la.png": {"image.channels"},
}
WARNING_ONLY = {"image.exif_orientation"}


def _name(rel: str) -> str:
    """Unique flat name keeping the suffix: ``pillow/hopper.png`` -> ``pillow__hopper_png.png``."""
    stem, ext = rel.replace("/", "__").rsplit(".", 1)
    return f"{stem}_{ext}.{ext}"


def test_verdict_table_covers_every_edge_case_file(shared_datasets):
    root = shared_datasets / "edge_cases"
    files = {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.name not in ("LICENSE", "SOURCE.txt")
    }
    assert files == set(VERDICTS)


@pytest.fixture(scope="module")
def edge_report(shared_datasets, tmp_path_factory):
    """One dataset holding every edge-case image in train/, validated once."""
    from pipeline_lib.synthetic import SynthConfig, generate

    root = tmp_path_factory.mktemp("edge")
    generate(root, SynthConfig(images=6, classes=1, seed=0))
    for rel in VERDICTS:
        src = shared_datasets / "edge_cases" / rel
        name = _name(rel)
        shutil.copy(src, root / "train" / name)
        try:
            width, height = Image.open(src).size
        except Exception:
            width, height = 100, 100
        ann = {
            "file": name,
            "image_size": [{"width": width, "height": height, "depth": 3}],
            "annotations": [{"class_id": 0, "left": 1, "top": 1, "width": 20, "height": 20}],
        }
        stem = name.rsplit(".", 1)[0]
        (root / "train_annotation" / f"{stem}.json").write_text(json.dumps(ann))
    return validate(str(root), ValidationOptions(great_expectations=False, workers=2))


@pytest.mark.parametrize("rel", sorted(VERDICTS))
def test_edge_case_verdict(edge_report, rel):
    name = _name(rel)
    mine = [f for f in edge_report.findings if name in f.file]
    assert {f.rule for f in mine} == VERDICTS[rel], [f.line() for f in mine]
    for f in mine:
        assert name in f.message
        assert f.severity == ("warning" if f.rule in WARNING_ONLY else "error")
