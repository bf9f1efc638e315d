"""job.json: the description a training pod runs from (``odp train --job``)."""

from __future__ import annotations

import json

import pytest

from pipeline_lib.cli import main
from pipeline_lib.training.job import JobSpec, read_job, run_job, write_job


def _spec(tmp_path, **over) -> JobSpec:
    data = {
        "channels": {"train": str(tmp_path / "train"), "validation": str(tmp_path / "val")},
        "input_format": "recordio",
        "hyperparameters": {"epochs": "1"},
        "hosts": ["algo-1", "algo-2"],
        "output_uri": str(tmp_path / "out"),
        **over,
    }
    return JobSpec(**data)


def test_round_trip(tmp_path):
    spec = _spec(tmp_path)
    uri = write_job(spec)
    assert uri == str(tmp_path / "out" / "job.json")
    assert read_job(uri) == spec


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "is not valid JSON"),
        ("[]", "expected a JSON object"),
        ('{"hosts": ["algo-1"]}', "missing field(s) channels"),
    ],
)
def test_bad_job_files_name_the_file(tmp_path, text, message):
    path = tmp_path / "job.json"
    path.write_text(text)
    with pytest.raises(ValueError, match="job.json") as info:
        read_job(str(path))
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"input_format": "csv"}, "input_format 'csv' is not one of"),
        ({"hosts": []}, "hosts must be a non-empty list"),
        ({"channels": ["train"]}, "channels must be a JSON object"),
    ],
)
def test_bad_fields_are_refused(tmp_path, over, message):
    path = tmp_path / "job.json"
    path.write_text(json.dumps({**_spec(tmp_path).__dict__, **over}))
    with pytest.raises(ValueError, match=message):
        read_job(str(path))


def test_a_host_outside_the_job_is_refused(tmp_path):
    uri = write_job(_spec(tmp_path))
    with pytest.raises(ValueError, match="host 'algo-3' is not among hosts"):
        run_job(uri, tmp_path / "ml", "algo-3")


def test_cli_missing_job_is_one_line_exit_1(tmp_path, capsys):
    code = main(["train", "--job", str(tmp_path / "nope.json"), "--ml-root", str(tmp_path / "ml")])
    assert code == 1
    err = capsys.readouterr().err
    assert "nope.json not found" in err and "Traceback" not in err
    assert not (tmp_path / "ml").exists()  # nothing left behind
