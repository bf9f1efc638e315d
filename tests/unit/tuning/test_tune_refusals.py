"""``odp tune`` refuses a bad space before any trial starts: one line naming the field,
exit 1, no study, no trial folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from training_job import layout

from pipeline_lib.cli import main

GOOD = {
    "ContinuousParameterRanges": [
        {"Name": "learning_rate", "MinValue": "0.0001", "MaxValue": "0.01"}
    ]
}


@pytest.mark.parametrize(
    ("space", "words"),
    [
        (
            {
                "ContinuousParameterRanges": [
                    {"Name": "learning_rates", "MinValue": "0.1", "MaxValue": "0.2"}
                ]
            },
            "ParameterRanges.ContinuousParameterRanges[0].Name: unknown hyperparameter 'learning_rates'",
        ),
        (
            {
                "IntegerParameterRanges": [
                    {"Name": "mini_batch_size", "MinValue": "8", "MaxValue": "8"}
                ]
            },
            "ParameterRanges.IntegerParameterRanges[0].MaxValue: empty range",
        ),
        (
            {"CategoricalParameterRanges": [{"Name": "optimizer", "Values": ["sgd", "ftrl"]}]},
            "ParameterRanges.CategoricalParameterRanges[0].Values[1]: 'ftrl' is not a valid optimizer",
        ),
    ],
)
def test_invalid_space_is_refused_before_any_trial(
    space, words, training_data: Path, tmp_path: Path, odp_home, capsys
) -> None:
    ml = layout(tmp_path / "ml", training_data).root
    path = tmp_path / "space.json"
    path.write_text(json.dumps(space))
    assert main(["tune", "--ml-root", str(ml), "--space", str(path), "--trials", "2"]) == 1
    (line,) = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert line.startswith(f"odp tune: error: {path}: ") and words in line, line
    assert not (ml / "tuning").exists()
    assert not (odp_home.home / "tuning").exists()  # no study database either


def test_a_bad_base_hyperparameter_is_refused_before_any_trial(
    training_data: Path, tmp_path: Path, odp_home, capsys
) -> None:
    ml = layout(tmp_path / "ml", training_data, base_network="vgg-17").root
    path = tmp_path / "space.json"
    path.write_text(json.dumps(GOOD))
    assert main(["tune", "--ml-root", str(ml), "--space", str(path), "--trials", "2"]) == 1
    (line,) = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert "hyperparameters.json" in line and "base_network" in line, line
    assert not (ml / "tuning").exists()


def test_trials_must_be_positive(training_data: Path, tmp_path: Path, odp_home, capsys) -> None:
    ml = layout(tmp_path / "ml", training_data).root
    path = tmp_path / "space.json"
    path.write_text(json.dumps(GOOD))
    with pytest.raises(SystemExit) as exit_:  # argparse: the one bounded parser's type
        main(["tune", "--ml-root", str(ml), "--space", str(path), "--trials", "0"])
    assert exit_.value.code == 2
    assert "--trials: '0': expected an integer in [1, 10000]" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "words", "code"),
    [
        (["--epoch-budget", "1"], "epoch budget: 1 epochs for 2 trials", 1),
        (["--epoch-budget", "0"], "--epoch-budget: '0': expected an integer in [1, ", 2),
        (["--max-trial-epochs", "8"], "applies with an epoch budget only", 1),
    ],
)
def test_a_bad_epoch_budget_is_refused_before_any_trial(
    flags, words, code, training_data: Path, tmp_path: Path, odp_home, capsys
) -> None:
    ml = layout(tmp_path / "ml", training_data).root
    path = tmp_path / "space.json"
    path.write_text(json.dumps(GOOD))
    args = ["tune", "--ml-root", str(ml), "--space", str(path), "--trials", "2", *flags]
    if code == 2:  # argparse's refusal (exit 2, after its usage line)
        with pytest.raises(SystemExit) as exit_:
            main(args)
        assert exit_.value.code == 2
        line = capsys.readouterr().err.strip().splitlines()[-1]
    else:
        assert main(args) == code
        (line,) = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert words in line, line
    assert not (ml / "tuning").exists()
    assert not (odp_home.home / "tuning").exists()


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("postgresql://u:secret@db/odp", "driver is not installed"),
        ("sqlite:////nonexistent-odp/x/studies.db", "folder /nonexistent-odp/x does not exist"),
        ("nonsense", "is not a database URL"),
    ],
)
def test_a_storage_url_that_cannot_work_is_one_line_without_the_password(url, words):
    from pipeline_lib.tuning.study import check_storage_url

    with pytest.raises(ValueError, match=words) as err:
        check_storage_url(url)
    assert "secret" not in str(err.value)
