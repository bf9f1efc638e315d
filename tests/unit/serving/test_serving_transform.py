"""``odp predict --sagemaker-output``: Batch Transform's layout, ``<input name>.out`` holding
the endpoint's response body."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipeline_lib.cli import main
from pipeline_lib.serving.detector import Detector
from pipeline_lib.serving.request import PredictOptions, RequestError
from pipeline_lib.serving.response import response_body
from pipeline_lib.serving.transform import transform_output


@pytest.fixture(scope="module")
def detector(tiny_model: Path) -> Detector:
    return Detector.load(tiny_model)


def _images(training_data: Path) -> list[Path]:
    return sorted(
        p for p in (training_data / "validation").iterdir() if p.suffix in (".jpg", ".png")
    )


def test_images_keep_their_paths(detector: Detector, training_data: Path, tmp_path: Path) -> None:
    images = _images(training_data)
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    shutil.copy(images[0], src / images[0].name)
    shutil.copy(images[1], src / "sub" / images[1].name)
    (src / "notes.txt").write_text("not an image")
    options = PredictOptions(verbose=True, max_detections=3)
    summary = transform_output(detector, src, tmp_path / "out", options)
    assert summary == {"images": 2, "files": 2, "output": str(tmp_path / "out")}
    for rel, image in ((images[0].name, images[0]), (f"sub/{images[1].name}", images[1])):
        body = (tmp_path / "out" / f"{rel}.out").read_bytes()
        assert body == response_body(detector.predict([image.read_bytes()], options)[0])
    outs = (p for p in (tmp_path / "out").rglob("*") if p.is_file() and p.name != ".odp-complete")
    assert sorted(p.name for p in outs) == sorted(
        [f"{images[0].name}.out", f"{images[1].name}.out"]
    )
    transform_output(detector, images[2], tmp_path / "one")  # a single image
    assert [p.name for p in (tmp_path / "one").glob("[!.]*")] == [f"{images[2].name}.out"]


def test_records_are_lines_of_one_out_file(
    detector: Detector, training_data: Path, tmp_path: Path
) -> None:
    from pipeline_lib.manifest import dataset_to_manifest
    from pipeline_lib.recordio.convert import convert_to_recordio

    images = _images(training_data)
    copy = Path(shutil.copytree(training_data, tmp_path / "ds"))
    dataset_to_manifest(copy, copy / "val.jsonl", channel="validation")
    lines = (copy / "val.jsonl").read_text().splitlines()
    order = [Path(json.loads(line)["source-ref"]).name for line in lines]  # the manifest's
    assert sorted(order) == [p.name for p in images]
    data = [(training_data / "validation" / name).read_bytes() for name in order]
    expected = [response_body(r) for r in detector.predict(data)]
    transform_output(detector, copy / "val.jsonl", tmp_path / "m")
    assert [p.name for p in (tmp_path / "m").glob("[!.]*")] == ["val.jsonl.out"]
    assert (tmp_path / "m" / "val.jsonl.out").read_bytes() == b"".join(e + b"\n" for e in expected)

    convert_to_recordio(training_data, tmp_path / "val", channel="validation", progress=False)
    transform_output(detector, tmp_path / "val.rec", tmp_path / "r")
    lines = (tmp_path / "r" / "val.rec.out").read_bytes().splitlines()
    assert len(lines) == len(images) and all("prediction" in json.loads(x) for x in lines)


def test_an_s3_prefix_keeps_its_keys(detector: Detector, training_data: Path, s3) -> None:
    images = _images(training_data)[:2]
    s3.client().upload_file(str(images[0]), s3.bucket, f"in/{images[0].name}")
    s3.client().upload_file(str(images[1]), s3.bucket, f"in/deeper/{images[1].name}")
    transform_output(detector, s3.uri("in"), s3.uri("out"))
    keys = [k for k in s3.keys("out/") if not Path(k).name.startswith(".")]  # the manifest
    assert sorted(keys) == sorted([f"out/{images[0].name}.out", f"out/deeper/{images[1].name}.out"])


def test_a_key_leaving_the_output_folder_is_refused(
    detector: Detector, training_data: Path, s3, tmp_path: Path
) -> None:
    image = _images(training_data)[0]
    s3.client().upload_file(str(image), s3.bucket, "evil/../../escape.jpg")
    with pytest.raises(RequestError, match="leaves the output folder"):
        transform_output(detector, s3.uri("evil"), tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "escape.jpg.out").exists()


def test_the_cli_flag(tiny_model: Path, training_data: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    argv = ["predict", str(tiny_model), str(training_data / "validation"), str(out)]
    assert main([*argv, "--sagemaker-output"]) == 0
    n = len(_images(training_data))
    assert f"{n} images -> {n} .out files" in capsys.readouterr().out
    assert sorted(p.name for p in out.glob("[!.]*")) == sorted(  # .odp-complete: the marker
        f"{p.name}.out" for p in _images(training_data)
    )
    assert main(argv[:3] + ["--sagemaker-output"]) == 2  # no OUTPUT folder
    assert "--sagemaker-output: expected an OUTPUT folder" in capsys.readouterr().err
