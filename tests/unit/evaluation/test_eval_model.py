"""``odp evaluate``: a model (here a fake predictor) over a validation set."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline_lib.evaluation.evaluate import evaluate_model, open_eval_data
from pipeline_lib.evaluation.files import evaluate_detection_files
from pipeline_lib.synthetic import SynthConfig, generate

PNG = b"\x89PNG\r\n\x1a\n"


class FakePredictor:
    """Knows the truth of every image (by pixel hash) and answers with jittered boxes."""

    classes = {0: "circle", 1: "square", 2: "triangle", 3: "never_in_data"}

    def __init__(self, root: Path, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.answers: dict[str, np.ndarray] = {}
        self.calls: list[int] = []
        for item in open_eval_data(root).items:
            img, boxes, classes = item.load()
            det = np.c_[classes, rng.random(len(classes)), boxes + rng.normal(0, 5, boxes.shape)]
            det = np.r_[det, [[3, 0.2, 0, 0, 30, 30], [int(rng.integers(0, 3)), 0.9, 5, 5, 40, 40]]]
            self.answers[hashlib.sha1(img.tobytes()).hexdigest()] = det  # noqa: S324  a content key, not security

    def predict_arrays(self, images, batch_size=16):
        self.calls.append(len(images))
        return [self.answers[hashlib.sha1(img.tobytes()).hexdigest()] for img in images]  # noqa: S324  a content key, not security


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    generate(root, SynthConfig(images=24, classes=3, seed=2, val_fraction=0.5))
    return root


def test_evaluate_model_writes_everything(dataset: Path, tmp_path: Path) -> None:
    predictor = FakePredictor(dataset)
    out = tmp_path / "eval"
    r = evaluate_model(None, dataset, out, predictor=predictor, batch_size=5)
    assert predictor.calls == [5, 5, 2]
    assert json.loads((out / "metrics.json").read_text()) == r
    n = len(list((dataset / "validation_annotation").glob("*.json")))
    assert r["num_images"] == n and r["metric"] == "voc07" and 0 < r["metrics"]["mAP"] <= 1
    by_name = {c["name"]: c for c in r["per_class"]}
    assert by_name["never_in_data"]["ap"] is None and by_name["never_in_data"]["no_ground_truth"]
    assert r["classes_without_ground_truth"] == ["never_in_data"]
    assert sum(c["num_gt"] for c in r["per_class"]) > 0
    assert len(list((out / "detections").glob("*.json"))) == n
    for png in ("pr_curves.png", "samples.png", "confusion_matrix.png"):
        assert (out / png).read_bytes()[:8] == PNG
    confusion = r["confusion_matrix"]
    assert confusion["rows"][-1] == "background" and confusion["columns"][-1] == "missed"
    # every object is counted once: found (as some class) or missed
    counted = sum(sum(row) for row in confusion["matrix"][:-1])
    assert counted == sum(c["num_gt"] for c in r["per_class"])
    # the detection files reproduce the same number through `odp map`
    again = evaluate_detection_files(dataset, out / "detections")
    assert again["metrics"]["mAP"] == pytest.approx(r["metrics"]["mAP"], abs=1e-12)
    # a rerun replaces the folder (idempotent)
    r2 = evaluate_model(None, dataset, out, metric="coco", predictor=predictor, overwrite=True)
    assert r2["metric"] == "coco" and "AP50" in r2["metrics"]
    assert json.loads((out / "metrics.json").read_text())["metric"] == "coco"


def test_other_input_formats_give_the_same_numbers(dataset: Path, tmp_path: Path) -> None:
    predictor = FakePredictor(dataset)
    base = evaluate_model(None, dataset, tmp_path / "a", predictor=predictor, num_samples=2)
    from pipeline_lib.manifest import dataset_to_manifest

    manifest = tmp_path / "val.jsonl"  # local source-refs stay inside the manifest's folder
    data = Path(shutil.copytree(dataset, tmp_path / "data"))
    dataset_to_manifest(data, manifest, channel="validation", relative=False)
    r = evaluate_model(None, manifest, tmp_path / "b", predictor=predictor, num_samples=2)
    assert r["metrics"]["mAP"] == pytest.approx(base["metrics"]["mAP"], abs=1e-12)
    from pipeline_lib.recordio.convert import convert_to_recordio

    convert_to_recordio(dataset, tmp_path / "val", channel="validation", workers=1, progress=False)
    r = evaluate_model(
        None, tmp_path / "val.rec", tmp_path / "c", predictor=predictor, num_samples=2
    )
    assert r["metrics"]["mAP"] == pytest.approx(base["metrics"]["mAP"], abs=1e-4)


def test_bad_predictor_and_data(dataset: Path, tmp_path: Path) -> None:
    class Broken:
        def predict_arrays(self, images, batch_size=16):
            return [np.zeros((2, 5)) for _ in images]

    with pytest.raises(ValueError, match=r"expected \(N, 6\)"):
        evaluate_model(None, dataset, tmp_path / "x", predictor=Broken())
    assert not (tmp_path / "x").exists()  # nothing half-written
    with pytest.raises(FileNotFoundError):
        evaluate_model(None, tmp_path / "missing", tmp_path / "y", predictor=Broken())
    with pytest.raises(ValueError, match="model path or a predictor"):
        evaluate_model(None, dataset, tmp_path / "z")


def _first_validation(root: Path) -> tuple[Path, dict]:
    path = sorted((root / "validation_annotation").glob("*.json"))[0]
    return path, json.loads(path.read_text())


@pytest.mark.parametrize("how", ["absolute", "dotdot", "image_link", "json_link", "channel_link"])
def test_evaluation_data_stays_inside_the_dataset(dataset: Path, tmp_path: Path, how: str) -> None:
    import os

    root = Path(shutil.copytree(dataset, tmp_path / "data"))
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(b"SECRET")
    path, ann = _first_validation(root)
    if how == "absolute":
        ann["file"] = str(secret)
    elif how == "dotdot":
        ann["file"] = "../../secret.jpg"
    elif how == "image_link":
        (root / "validation" / ann["file"]).unlink()
        os.symlink(secret, root / "validation" / ann["file"])
    elif how == "json_link":
        (tmp_path / "outside.json").write_text(json.dumps(ann))
        path.unlink()
        os.symlink(tmp_path / "outside.json", path)
    else:
        shutil.move(root / "validation", tmp_path / "elsewhere")
        os.symlink(tmp_path / "elsewhere", root / "validation")
    if how in ("absolute", "dotdot"):
        path.write_text(json.dumps(ann))
    with pytest.raises(ValueError, match=r"\[L005 pairing\.path_escape\]"):
        for item in open_eval_data(root).items:
            item.load()


def test_evaluation_images_pass_the_image_rules(dataset: Path, tmp_path: Path) -> None:
    from PIL import Image

    root = Path(shutil.copytree(dataset, tmp_path / "data"))
    _, ann = _first_validation(root)
    image = root / "validation" / ann["file"]
    Image.open(image).convert("L").save(image, format=Image.open(image).format)
    out = tmp_path / "eval"
    with pytest.raises(ValueError, match=rf"{image.name} is L .*\[I004 image\.channels\]"):
        evaluate_model(None, root, out, predictor=FakePredictor(dataset))
    assert not out.exists()
