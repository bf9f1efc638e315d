"""pipeline_lib.serving.detector and .batch, and ``odp predict``, on a real (tiny) model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline_lib.cli import main
from pipeline_lib.serving.batch import predict_batch
from pipeline_lib.serving.detector import Detector
from pipeline_lib.serving.request import PredictOptions, RequestError


@pytest.fixture(scope="module")
def detector(tiny_model: Path) -> Detector:
    return Detector.load(tiny_model)


def _images(training_data: Path) -> list[Path]:
    return sorted(
        p for p in (training_data / "validation").iterdir() if p.suffix in (".jpg", ".png")
    )


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0.0


def test_layouts_threshold_and_max_detections_agree(
    detector: Detector, training_data: Path
) -> None:
    data = _images(training_data)[0].read_bytes()
    plain = detector.predict([data])[0]["prediction"]
    verbose = detector.predict([data], PredictOptions(verbose=True))[0]
    h, w = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape[:2]
    assert verbose["image_size"] == [{"width": w, "height": h, "depth": 3}]
    assert len(plain) == len(verbose["annotations"]) > 0
    for row, ann in zip(plain, verbose["annotations"], strict=True):
        assert row[0] == ann["class_id"] and row[1] == pytest.approx(ann["score"])
        assert row[2] * w == pytest.approx(ann["left"], abs=1e-3)
        assert (row[5] - row[3]) * h == pytest.approx(ann["height"], abs=1e-3)
    scores = [r[1] for r in plain]
    assert scores == sorted(scores, reverse=True)
    cut = float(np.median(scores))
    kept = detector.predict([data], PredictOptions(threshold=cut))[0]["prediction"]
    assert kept == [r for r in plain if r[1] >= cut]
    assert detector.predict([data], PredictOptions(max_detections=3))[0]["prediction"] == plain[:3]


def test_nms_threshold_is_the_graphs_own(detector: Detector, training_data: Path) -> None:
    data = _images(training_data)[1].read_bytes()
    default = detector.predict([data])[0]["prediction"]
    same = detector.predict([data], PredictOptions(nms_threshold=detector.default_nms))[0]
    assert same["prediction"] == default
    strict = detector.predict([data], PredictOptions(nms_threshold=0.1))[0]["prediction"]
    assert 0 < len(strict) < len(default)
    # in the network's own (unclipped) coordinates, no two kept boxes of a class overlap by
    # more than 0.1: the variant's box_nms runs with the new threshold
    from pipeline_lib.serving.request import decode_request_image

    batch = detector.predictor._preprocess([decode_request_image(data).pixels])
    ids, _, boxes = (a.asnumpy()[0] for a in detector._net(0.1)(batch))
    keep = ids[:, 0] >= 0
    ids, boxes = ids[keep, 0], boxes[keep]
    assert len(ids) == len(strict)
    for i in range(len(ids)):
        for j in range(i + 1, len(ids)):
            if ids[i] == ids[j]:
                assert _iou(boxes[i], boxes[j]) <= 0.1 + 1e-5


def test_an_older_export_answers_as_the_new_one(
    detector: Detector, legacy_model: Path, training_data: Path
) -> None:
    legacy = Detector.load(legacy_model)
    assert not legacy.predictor.pixels_in and detector.predictor.pixels_in
    assert legacy.default_nms == detector.default_nms
    data = [p.read_bytes() for p in _images(training_data)]
    for options in (PredictOptions(verbose=True), PredictOptions(nms_threshold=0.2)):
        assert legacy.predict(data, options) == detector.predict(data, options)


def test_a_large_jpeg_is_answered_in_its_own_pixels(
    detector: Detector, training_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    img = cv2.imread(str(_images(training_data)[0]))
    big = cv2.resize(img, (img.shape[1] * 4, img.shape[0] * 4), interpolation=cv2.INTER_NEAREST)
    data = cv2.imencode(".jpg", big, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    out = detector.predict([data], PredictOptions(verbose=True))[0]
    assert out["image_size"][0]["width"] == big.shape[1]
    boxes = [(a["left"] + a["width"], a["top"] + a["height"]) for a in out["annotations"]]
    assert max(x for x, _ in boxes) > img.shape[1]  # in the large image's pixels


def test_batch_over_folder_rec_and_manifest_writes_map_layout(
    detector: Detector, training_data: Path, tmp_path: Path
) -> None:
    from pipeline_lib.manifest import dataset_to_manifest
    from pipeline_lib.recordio.convert import convert_to_recordio

    names = [p.stem for p in _images(training_data)]
    folder = predict_batch(
        detector, training_data / "validation", tmp_path / "f", PredictOptions(verbose=True)
    )
    assert folder["images"] == len(names)
    assert sorted(p.stem for p in (tmp_path / "f").glob("[!.]*")) == names  # no marker
    doc = json.loads((tmp_path / "f" / f"{names[0]}.json").read_text())
    assert doc["file"] == f"{names[0]}.jpg" and "annotations" in doc

    copy = Path(shutil.copytree(training_data, tmp_path / "ds"))  # the manifest goes inside it
    dataset_to_manifest(copy, copy / "val.jsonl", channel="validation")
    predict_batch(detector, copy / "val.jsonl", tmp_path / "m", PredictOptions(verbose=True))
    assert sorted(p.stem for p in (tmp_path / "m").glob("[!.]*")) == names
    assert json.loads((tmp_path / "m" / f"{names[0]}.json").read_text()) == doc

    convert_to_recordio(training_data, tmp_path / "val", channel="validation", progress=False)
    predict_batch(detector, tmp_path / "val.rec", tmp_path / "r")
    assert len(list((tmp_path / "r").glob("[!.]*"))) == len(names)

    # odp map reads the folder, and equals odp evaluate's figure for the same model
    assert main(["map", str(training_data), str(tmp_path / "f"), "--json"]) == 0


def test_odp_predict_cli(tiny_model: Path, training_data: Path, tmp_path: Path, capsys) -> None:
    image = _images(training_data)[0]
    assert main(["predict", str(tiny_model), str(image), "--max-detections", "2"]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["file"] == image.name and len(line["prediction"]) == 2

    out = tmp_path / "dets"
    assert main(["predict", str(tiny_model), str(training_data / "validation"), str(out)]) == 0
    assert len(list(out.glob("*.json"))) == len(_images(training_data))

    gray = tmp_path / "gray.jpg"
    cv2.imwrite(str(gray), np.full((32, 32), 128, np.uint8))
    assert main(["predict", str(tiny_model), str(gray)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.endswith("gray.jpg: a grayscale image: expected a 3-channel (RGB) image"), err
    assert "Traceback" not in err
    assert main(["predict", str(tiny_model), str(image), "--threshold", "2"]) == 1
    assert "threshold" in capsys.readouterr().err
    assert main(["predict", str(tiny_model), str(tmp_path / "missing")]) == 2
    # a bad image in a batch stops it and leaves no output folder behind
    bad = tmp_path / "mixed"
    bad.mkdir()
    (bad / "a.jpg").write_bytes(image.read_bytes())
    (bad / "b.jpg").write_bytes(gray.read_bytes())
    assert main(["predict", str(tiny_model), str(bad), str(tmp_path / "none")]) == 1
    assert not (tmp_path / "none").exists()
    with pytest.raises(RequestError):
        Detector.load(tiny_model).predict([b"junk"])


def test_batch_over_an_s3_prefix_into_s3(detector: Detector, training_data: Path, s3) -> None:
    images = _images(training_data)[:2]
    for path in images:
        s3.client().upload_file(str(path), s3.bucket, f"in/{path.name}")
    s3.client().put_object(Bucket=s3.bucket, Key="in/notes.txt", Body=b"not an image")
    summary = predict_batch(detector, s3.uri("in"), s3.uri("out/dets"))
    assert summary["images"] == 2
    keys = [k for k in s3.keys("out/dets/") if not Path(k).name.startswith(".")]  # manifest
    assert sorted(Path(k).stem for k in keys) == sorted(p.stem for p in images)
