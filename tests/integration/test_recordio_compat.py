"""Our .rec/.idx files read by MXNet's and GluonCV's own readers, im2rec's files read by ours,
a foreign RecordIO from the GluonCV tutorial, DataLoader workers, flat memory."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest

from pipeline_lib.annotations import iter_channel
from pipeline_lib.manifest import ManifestDetection, dataset_to_manifest
from pipeline_lib.recordio.convert import convert_to_recordio
from pipeline_lib.recordio.export import recordio_to_dataset
from pipeline_lib.recordio.reader import RecordIODetection, idx_path_for
from pipeline_lib.synthetic import SynthConfig, generate

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED = REPO_ROOT.parent / "shared"
DOG_VAL = SHARED / "datasets" / "foreign_recordio" / "gluoncv_dog_val"
IM2REC = Path(mx.__file__).parent / "tools" / "im2rec.py"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "data"
    generate(root, SynthConfig(images=30, classes=4, seed=3, max_objects=4))
    return root


@pytest.fixture(scope="module")
def converted(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("rec") / "ds"
    return out, convert_to_recordio(dataset, out, progress=False)


def _expected(dataset: Path, channel: str) -> list[np.ndarray]:
    return [
        ann.label_array(normalized=True).astype(np.float32)
        for _, ann in iter_channel(dataset, channel)
    ]


# ------------------------------------------------------------------ MXNet / GluonCV read ours


def test_image_det_iter_reads_ours(converted, dataset):
    out, result = converted
    rec = f"{out}_train.rec"
    it = mx.image.ImageDetIter(
        batch_size=4, data_shape=(3, 128, 128), path_imgrec=rec, path_imgidx=idx_path_for(rec)
    )
    max_objects = (result.label_width - 2) // 5
    assert it.label_shape == (max_objects, 5)  # the width we report is the one it needs
    it.reshape(label_shape=(max_objects, 5))
    got = []
    for batch in it:
        labels = batch.label[0].asnumpy()
        got.extend(labels[: labels.shape[0] - batch.pad])
    expected = _expected(dataset, "train")
    assert len(got) == len(expected)
    for lab, exp in zip(got, expected, strict=True):
        valid = lab[lab[:, 0] >= 0]
        np.testing.assert_allclose(valid, exp, atol=1e-6)
        assert (lab[len(exp) :] == -1).all()


def test_image_det_record_iter_reads_ours(converted, dataset):
    out, result = converted
    it = mx.io.ImageDetRecordIter(
        path_imgrec=f"{out}_validation.rec",
        batch_size=2,
        data_shape=(3, 128, 128),
        label_pad_width=result.label_width,
        shuffle=False,
        preprocess_threads=1,
    )
    got = []
    for batch in it:
        labels = batch.label[0].asnumpy()
        assert labels.shape[1] == 4 + result.label_width
        got.extend(labels[: labels.shape[0] - batch.pad])
    expected = _expected(dataset, "validation")
    assert len(got) == len(expected)
    for row, exp in zip(got, expected, strict=True):
        n = int(row[3])  # [C, H, W, label length, label..., -1 padding]
        assert row[4:6].tolist() == [2, 5] and n == 2 + 5 * len(exp)
        np.testing.assert_allclose(row[6 : 4 + n].reshape(-1, 5), exp, atol=1e-6)
        assert (row[4 + n :] == -1).all()


def test_gluoncv_record_file_detection_reads_ours(converted):
    from gluoncv.data import RecordFileDetection

    out, _ = converted
    theirs = RecordFileDetection(f"{out}_train.rec")
    ours = RecordIODetection(f"{out}_train.rec")
    assert len(theirs) == len(ours)
    for i in range(len(ours)):
        img, label = theirs[i]
        our_img, our_label = ours[i]
        assert np.array_equal(img.asnumpy(), our_img)
        np.testing.assert_array_equal(label, our_label)


# ------------------------------------------------------------------ im2rec writes, we read


def _im2rec(workdir: Path, prefix: str, root: Path, *flags: str) -> None:
    cmd = [sys.executable, str(IM2REC), str(workdir / prefix), str(root), *flags]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)  # noqa: S603  test-built argv, no shell
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_im2rec_pass_through_is_byte_identical_to_ours(converted, dataset, tmp_path):
    out, _ = converted
    shutil.copy(f"{out}_validation.lst", tmp_path / "val.lst")
    _im2rec(tmp_path, "val", dataset / "validation", "--pass-through", "--pack-label")
    assert (tmp_path / "val.rec").read_bytes() == Path(f"{out}_validation.rec").read_bytes()
    assert (tmp_path / "val.idx").read_text() == Path(f"{out}_validation.idx").read_text()


def test_im2rec_default_reencode_is_read_by_ours(converted, dataset, tmp_path):
    out, _ = converted
    shutil.copy(f"{out}_validation.lst", tmp_path / "val.lst")
    _im2rec(tmp_path, "val", dataset / "validation", "--pack-label")
    ds = RecordIODetection(tmp_path / "val.rec")
    anns = list(iter_channel(dataset, "validation"))
    assert len(ds) == len(anns)
    for i, (_, ann) in enumerate(anns):
        img, label = ds[i]
        assert img.shape == (ann.height, ann.width, 3)
        np.testing.assert_allclose(label[:, :4], ann.label_array()[:, 1:], atol=1e-3)
        assert ds.record(i).image[:2] == b"\xff\xd8"  # re-encoded as JPEG


def test_im2rec_wide_header_and_object_width_read_by_ours(dataset, tmp_path):
    """A hand-written SageMaker-style .lst with header [4, 6, W, H] and a difficult flag."""
    lines = []
    anns = list(iter_channel(dataset, "validation"))
    for i, (_, ann) in enumerate(anns):
        fields = [str(i), "4", "6", str(ann.width), str(ann.height)]
        for cls, *coords in ann.label_array(normalized=True).tolist():
            fields += [str(int(cls)), *map(repr, coords), "1"]
        lines.append("\t".join([*fields, ann.file]))
    (tmp_path / "wide.lst").write_text("\n".join(lines) + "\n")
    _im2rec(tmp_path, "wide", dataset / "validation", "--pass-through", "--pack-label")
    ds = RecordIODetection(tmp_path / "wide.rec")
    for i, (path, ann) in enumerate(anns):
        rec = ds.record(i)
        assert rec.label.header.tolist() == [4, 6, ann.width, ann.height]
        assert rec.label.objects.shape == (len(ann.boxes), 6) and rec.image == path.read_bytes()
        np.testing.assert_allclose(ds[i][1][:, :4], ann.label_array()[:, 1:], atol=1e-3)
    back = tmp_path / "back"
    recordio_to_dataset(tmp_path / "wide.rec", back, "validation", progress=False)
    for path, ann in anns:
        again = json.loads((back / "validation_annotation" / f"{path.stem}.json").read_text())
        assert again["annotations"] == [b.to_json() for b in ann.boxes]


# ------------------------------------------------------------------ foreign RecordIO


DOG_BOXES = [[130, 220, 320, 530, 0], [115, 120, 580, 420, 1], [480, 80, 700, 170, 2]]


@pytest.mark.skipif(not DOG_VAL.is_dir(), reason="../shared/datasets is not available")
def test_gluoncv_dog_val_round_trip(tmp_path):
    ds = RecordIODetection(DOG_VAL / "val.rec")
    assert len(ds) == 4
    dog = (DOG_VAL / "dog.jpg").read_bytes()
    for i in range(4):
        img, label = ds[i]
        assert img.shape == (576, 768, 3)
        np.testing.assert_allclose(label, DOG_BOXES, atol=1e-3)
        rec = ds.record(i)
        assert rec.label.header.tolist() == [4, 5, 768, 576] and rec.image == dog
    # without its .idx (rebuilt by a scan)
    shutil.copy(DOG_VAL / "val.rec", tmp_path / "val.rec")
    assert RecordIODetection(tmp_path / "val.rec").offsets.tolist() == ds.offsets.tolist()
    # RecordIO -> image+JSON -> RecordIO -> same boxes
    back = tmp_path / "json"
    assert recordio_to_dataset(DOG_VAL / "val.rec", back, "validation", progress=False) == 4
    for p in (back / "validation_annotation").iterdir():
        ann = json.loads(p.read_text())
        assert ann["image_size"] == [{"width": 768, "height": 576, "depth": 3}]
        corners = [
            [a["left"], a["top"], a["left"] + a["width"], a["top"] + a["height"], a["class_id"]]
            for a in ann["annotations"]
        ]
        assert corners == DOG_BOXES
    assert all(p.read_bytes() == dog for p in (back / "validation").iterdir())
    result = convert_to_recordio(back, tmp_path / "again", channel="validation", progress=False)
    assert result.label_width == 2 + 5 * 3
    again = RecordIODetection(tmp_path / "again.rec")
    for i in range(4):
        np.testing.assert_allclose(again[i][1], DOG_BOXES, atol=1e-3)
        np.testing.assert_array_equal(again.label(i).objects, ds.label(i).objects)


# ------------------------------------------------------------------ loaders in worker processes


def test_gluon_dataloader_workers(converted, dataset, tmp_path):
    out, _ = converted
    manifest = tmp_path / "train.manifest"  # local source-refs stay inside its folder
    dataset_to_manifest(shutil.copytree(dataset, tmp_path / "data"), manifest)
    for ds in (RecordIODetection(f"{out}_train.rec"), ManifestDetection(manifest)):
        loader = mx.gluon.data.DataLoader(ds, batch_size=1, shuffle=False, num_workers=2)
        for i, (img, label) in enumerate(loader):
            ref_img, ref_label = ds[i]
            assert np.array_equal(img.asnumpy()[0], ref_img)
            assert np.array_equal(label.asnumpy()[0], ref_label)
        assert i == len(ds) - 1


# ------------------------------------------------------------------ flat memory on 2 cores


def _replicated(src: Path, dst: Path, copies: int) -> Path:
    """``copies`` x the images of ``src`` under new names (hard links: cheap to make)."""
    for ch in ("train", "validation"):
        (dst / ch).mkdir(parents=True)
        (dst / f"{ch}_annotation").mkdir()
        for path, ann in iter_channel(src, ch):
            for k in range(copies):
                name = f"{path.stem}_{k:04d}{path.suffix}"
                (dst / ch / name).hardlink_to(path)
                obj = ann.to_json()
                obj["file"] = name
                (dst / f"{ch}_annotation" / f"{Path(name).stem}.json").write_text(json.dumps(obj))
    return dst


_MEASURE = textwrap.dedent(
    """
    import json, resource, sys
    from pipeline_lib.recordio import convert, write_engine
    write_engine.CHUNK_BYTES = 4 << 20  # small chunks: both runs fill them, so only growth shows
    res = convert.convert_to_recordio(sys.argv[1], sys.argv[2], workers=2, progress=False)
    print(json.dumps({
        "images": res.images,
        # VmHWM, not RUSAGE_SELF: ru_maxrss survives exec and would count pytest's own peak
        "self_kb": int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]),
        "children_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    }))
    """
)


def test_parallel_conversion_memory_is_flat(tmp_path):
    """2 workers, 80 MB vs 320 MB of images: peak memory does not follow the data (the
    chunk each worker holds, CHUNK_BYTES, is the bound)."""
    base = tmp_path / "base"
    generate(base, SynthConfig(images=10, classes=3, seed=2, min_size=700, max_size=900))
    small = _replicated(base, tmp_path / "small", 20)
    large = _replicated(base, tmp_path / "large", 80)
    runs = {}
    for name, data in (("small", small), ("large", large)):
        proc = subprocess.run(  # noqa: S603  test-built argv, no shell
            [sys.executable, "-c", _MEASURE, str(data), str(tmp_path / f"out-{name}" / "ds")],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=REPO_ROOT,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        runs[name] = json.loads(proc.stdout.strip().splitlines()[-1])
        shutil.rmtree(tmp_path / f"out-{name}")
    data_mb = sum(p.stat().st_size for p in (large / "train").iterdir()) / 2**20
    assert runs["large"]["images"] == 800 and data_mb > 250
    for key in ("self_kb", "children_kb"):
        growth_mb = (runs["large"][key] - runs["small"][key]) / 1024
        assert growth_mb < 16, (key, growth_mb, data_mb, runs)
