"""Ask and tell through a real SQLite study: the trial hook prunes a trial that falls behind,
pruned is not failed, a ClientError fails only its trial, a retry finds its trial again."""

from __future__ import annotations

import optuna
import pytest

from pipeline_lib.tuning.job import NoCompletedTrial, best_trial, finished_trials, summarize
from pipeline_lib.tuning.report import TrialReporter
from pipeline_lib.tuning.space import SpaceError, parse_ranges
from pipeline_lib.tuning.study import PrunerSpec, open_study
from pipeline_lib.tuning.trials import OUTPUTS_ATTR, JobOutcome, finish_trial, start_trial

SPACE = parse_ranges(
    {
        "ContinuousParameterRanges": [
            {"Name": "learning_rate", "MinValue": "0.0001", "MaxValue": "0.1"}
        ]
    }
)
AGGRESSIVE = PrunerSpec("median", startup_trials=1, warmup_epochs=0)


@pytest.fixture
def url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'study.db'}"


def _study(url, pruner=AGGRESSIVE, space=SPACE, name="s"):
    return open_study(name, space, {"epochs": "3"}, storage_url=url, pruner=pruner, seed=0)


def _train(plan, maps, log):
    """What ``odp train`` does with the hook: report each epoch, stop when told."""
    reporter = TrialReporter.from_env(log.append, plan.env)
    for epoch, value in enumerate(maps):
        reason = reporter(epoch, value)
        if reason:
            return {
                "status": "pruned",
                "validation:mAP": max(maps[: epoch + 1]),
                "epochs_completed": epoch + 1,
            }
    return {"status": "completed", "validation:mAP": max(maps), "epochs_completed": len(maps)}


def test_a_trial_behind_the_median_is_pruned_and_not_failed(url):
    study = _study(url)
    first = start_trial(study, SPACE, {"epochs": "3"}, url)
    assert first.hyperparameters["epochs"] == "3" and "learning_rate" in first.hyperparameters
    log: list[str] = []
    done = finish_trial(
        study, first, JobOutcome(0, _train(first, [0.3, 0.5, 0.6], log), None, "/out/0")
    )
    assert (done.state, done.value) == ("COMPLETE", 0.6)

    second = start_trial(study, SPACE, {}, url)
    metrics = _train(second, [0.1, 0.2, 0.3], log)
    assert metrics == {"status": "pruned", "validation:mAP": 0.1, "epochs_completed": 1}
    pruned = finish_trial(study, second, JobOutcome(0, metrics))
    assert pruned.state == "PRUNED"
    assert finished_trials(study) == 2 and best_trial(study).number == 0
    assert study.trials[0].user_attrs[OUTPUTS_ATTR] == "/out/0"
    summary = summarize(study)
    assert summary["counts"]["pruned"] == 1 and summary["epochs"] == 4
    assert summary["best"]["number"] == 0


def test_client_error_fails_the_trial_other_errors_leave_it_to_retry(url):
    study = _study(url, PrunerSpec("none"))
    plan = start_trial(study, SPACE, {}, url, slot="run/0")
    transient = finish_trial(study, plan, JobOutcome(1, None, "AlgorithmError: OSError: disk"))
    assert transient.state == "RUNNING"
    retry = start_trial(study, SPACE, {}, url, slot="run/0")  # the same trial, same values
    assert (retry.number, retry.hyperparameters, retry.resumed) == (
        plan.number,
        plan.hyperparameters,
        True,
    )
    failed = finish_trial(
        study,
        retry,
        JobOutcome(1, None, "ClientError: non-finite loss at epoch 0; lower learning_rate"),
    )
    assert failed.state == "FAIL" and "non-finite" in failed.failure
    assert finished_trials(study) == 1
    with pytest.raises(NoCompletedTrial, match="no trial completed"):
        best_trial(study)
    # told already: a retried task that had finished changes nothing
    assert finish_trial(study, retry, JobOutcome(0, {"validation:mAP": 0.9})).state == "FAIL"


def test_resuming_with_another_space_or_pruner_is_refused(url):
    _study(url)
    other = parse_ranges(
        {"ContinuousParameterRanges": [{"Name": "momentum", "MinValue": "0.5", "MaxValue": "0.9"}]}
    )
    with pytest.raises(SpaceError, match="another space"):
        _study(url, space=other)
    with pytest.raises(SpaceError, match="another pruner"):
        _study(url, pruner=PrunerSpec("hyperband"))
    assert len(_study(url).trials) == 0  # the same settings resume


def test_an_unreachable_study_costs_the_pruning_not_the_training(tmp_path):
    log: list[str] = []
    env = {
        "ODP_TUNING_STORAGE": f"sqlite:///{tmp_path / 'missing' / 'x.db'}",
        "ODP_TUNING_STUDY": "s",
        "ODP_TUNING_TRIAL": "0",
    }
    reporter = TrialReporter.from_env(log.append, env)
    assert reporter(0, 0.5) is None and reporter(1, 0.4) is None
    assert len(log) == 1 and "training goes on without pruning" in log[0]
    assert TrialReporter.from_env(log.append, {}) is None  # not a trial: no hook


def test_hyperband_pruner_is_rebuilt_from_the_study(url):
    study = _study(url, PrunerSpec("hyperband", min_epochs=1, max_epochs=3), name="hb")
    plan = start_trial(study, SPACE, {}, url)
    log: list[str] = []
    assert TrialReporter.from_env(log.append, plan.env)(0, 0.2) is None
    assert not log
    assert optuna.load_study(study_name="hb", storage=url).trials[0].intermediate_values == {0: 0.2}
