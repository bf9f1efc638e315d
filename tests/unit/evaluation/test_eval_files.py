"""``odp map``: detection files against ground-truth files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline_lib.annotations import AnnotationError
from pipeline_lib.cli import main
from pipeline_lib.evaluation.files import evaluate_detection_files, load_ground_truth
from pipeline_lib.evaluation.voc import VOCMetric
from pipeline_lib.synthetic import SynthConfig, generate


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    generate(root, SynthConfig(images=40, classes=3, seed=5, val_fraction=0.5))
    return root


def _write_detections(root: Path, out: Path, seed: int = 0, layout: str = "verbose") -> dict:
    """Jittered truth plus false alarms; returns stem -> (boxes, classes, scores)."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    made = {}
    for p in sorted((root / "validation_annotation").glob("*.json")):
        gt = json.loads(p.read_text())
        w, h = gt["image_size"][0]["width"], gt["image_size"][0]["height"]
        rows = []
        for a in gt["annotations"]:
            box = np.array([a["left"], a["top"], a["left"] + a["width"], a["top"] + a["height"]])
            rows.append([a["class_id"], rng.random(), *(box + rng.normal(0, 6, 4))])
        for _ in range(int(rng.integers(0, 3))):
            x, y = rng.uniform(0, 100, 2)
            rows.append([int(rng.integers(0, 3)), rng.random(), x, y, x + 40, y + 40])
        arr = np.array(rows, dtype=np.float64).reshape(-1, 6)
        made[p.stem] = (arr[:, 2:], arr[:, 0].astype(int), arr[:, 1])
        if layout == "verbose":
            anns = [
                {
                    "class_id": int(r[0]),
                    "score": r[1],
                    "left": r[2],
                    "top": r[3],
                    "width": r[4] - r[2],
                    "height": r[5] - r[3],
                }
                for r in arr.tolist()
            ]
            doc = {"file": gt["file"], "image_size": gt["image_size"], "annotations": anns}
        else:  # SageMaker's plain response, normalized
            norm = arr.copy()
            norm[:, (2, 4)] /= w
            norm[:, (3, 5)] /= h
            doc = {"prediction": norm.tolist()}
        (out / p.name).write_text(json.dumps(doc))
    return made


def _reference(root: Path, made: dict, metric: str, iou: float) -> float:
    m = VOCMetric(iou, metric)
    for t in load_ground_truth(root):
        b, c = t.boxes()
        db, dc, ds = made.get(t.stem, (np.zeros((0, 4)), np.zeros(0), np.zeros(0)))
        m.update(db, dc, ds, b, c, t.difficult)
    return m.get().mAP


@pytest.mark.parametrize("metric,iou", [("voc07", 0.5), ("voc", 0.5), ("voc", 0.7)])
def test_map_of_files(dataset: Path, tmp_path: Path, metric: str, iou: float) -> None:
    made = _write_detections(dataset, tmp_path / "dets")
    r = evaluate_detection_files(dataset, tmp_path / "dets", metric=metric, iou=iou)
    assert r["metrics"]["mAP"] == pytest.approx(_reference(dataset, made, metric, iou), abs=1e-12)
    assert 0 < r["metrics"]["mAP"] < 1
    assert r["num_images"] == r["num_detection_files"] == len(made)
    names = [c["name"] for c in r["per_class"]]
    assert names == ["circle", "square", "triangle"]
    assert sum(c["num_gt"] for c in r["per_class"]) == sum(
        len(v[1]) for v in load_gt_counts(dataset)
    )
    # the annotation folder itself works as well as the dataset root
    r2 = evaluate_detection_files(dataset / "validation_annotation", tmp_path / "dets", metric, iou)
    assert r2["metrics"] == r["metrics"]


def load_gt_counts(root: Path):
    return [t.boxes() for t in load_ground_truth(root)]


def test_coco_and_normalized_prediction_layout(dataset: Path, tmp_path: Path) -> None:
    _write_detections(dataset, tmp_path / "verbose", layout="verbose")
    _write_detections(dataset, tmp_path / "plain", layout="plain")
    a = evaluate_detection_files(dataset, tmp_path / "verbose", metric="coco")
    b = evaluate_detection_files(dataset, tmp_path / "plain", metric="coco")
    assert set(a["metrics"]) >= {
        "mAP",
        "AP",
        "AP50",
        "AP75",
        "APs",
        "APm",
        "APl",
        "AR1",
        "AR10",
        "AR100",
        "ARs",
        "ARm",
        "ARl",
    }
    for k, v in a["metrics"].items():
        assert (
            b["metrics"][k] == pytest.approx(v, abs=1e-9)
            if v is not None
            else b["metrics"][k] is None
        )


def test_missing_detection_file_counts_as_no_detections(dataset: Path, tmp_path: Path) -> None:
    made = _write_detections(dataset, tmp_path / "dets")
    first = sorted(made)[0]
    (tmp_path / "dets" / f"{first}.json").unlink()
    del made[first]
    r = evaluate_detection_files(dataset, tmp_path / "dets")
    assert r["images_without_detection_file"] == 1
    assert r["metrics"]["mAP"] == pytest.approx(_reference(dataset, made, "voc07", 0.5))


def test_difficult_flag_in_ground_truth(dataset: Path, tmp_path: Path) -> None:
    gt = tmp_path / "gt"
    shutil.copytree(dataset / "validation_annotation", gt)
    first = sorted(gt.glob("*.json"))[0]
    doc = json.loads(first.read_text())
    doc["annotations"][0]["difficult"] = 1
    first.write_text(json.dumps(doc))
    _write_detections(dataset, tmp_path / "dets")
    base = evaluate_detection_files(dataset, tmp_path / "dets")
    r = evaluate_detection_files(gt, tmp_path / "dets")
    assert (
        sum(c["num_gt"] for c in r["per_class"]) == sum(c["num_gt"] for c in base["per_class"]) - 1
    )


def test_errors_name_the_file_and_field(dataset: Path, tmp_path: Path) -> None:
    dets = tmp_path / "dets"
    _write_detections(dataset, dets)
    victim = sorted(dets.glob("*.json"))[1]
    doc = json.loads(victim.read_text())
    doc["annotations"] = [
        {"class_id": 0, "score": "high", "left": 1, "top": 1, "width": 2, "height": 2}
    ]
    victim.write_text(json.dumps(doc))
    with pytest.raises(AnnotationError, match=rf"{victim.name}.*annotations\[0\]\.score"):
        evaluate_detection_files(dataset, dets)
    doc["annotations"] = [{"class_id": 0, "left": 1, "top": 1, "width": 2, "height": 2}]
    victim.write_text(json.dumps(doc))
    with pytest.raises(AnnotationError, match=r"annotations\[0\]\.score"):
        evaluate_detection_files(dataset, dets)
    doc["annotations"] = [
        {"class_id": -1, "score": 1, "left": 1, "top": 1, "width": 2, "height": 2}
    ]
    victim.write_text(json.dumps(doc))
    with pytest.raises(AnnotationError, match=r"class_id"):
        evaluate_detection_files(dataset, dets)
    victim.write_text("{not json")
    with pytest.raises(AnnotationError, match=rf"{victim.name}.*valid UTF-8 JSON"):
        evaluate_detection_files(dataset, dets)
    victim.unlink()
    (dets / "stranger.json").write_text(json.dumps({"annotations": []}))
    with pytest.raises(ValueError, match=r"stranger\.json: no ground-truth file stranger\.json"):
        evaluate_detection_files(dataset, dets)
    with pytest.raises(FileNotFoundError):
        evaluate_detection_files(tmp_path / "nowhere", dets)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no annotation JSON"):
        evaluate_detection_files(empty, dets)
    with pytest.raises(ValueError, match="metric"):
        evaluate_detection_files(dataset, tmp_path / "empty", metric="map")  # type: ignore[arg-type]


def test_cli_map(dataset: Path, tmp_path: Path, capsys) -> None:
    _write_detections(dataset, tmp_path / "dets")
    assert main(["map", str(dataset), str(tmp_path / "dets"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["metric"] == "voc07" and 0 < out["metrics"]["mAP"] < 1
    assert main(["map", str(dataset), str(tmp_path / "dets"), "--metric", "coco"]) == 0
    assert "AP50=" in capsys.readouterr().out
    (tmp_path / "dets" / "zzz.json").write_text("{}")
    assert main(["map", str(dataset), str(tmp_path / "dets")]) == 1
    assert "zzz.json" in capsys.readouterr().err
