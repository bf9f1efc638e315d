"""The tuning DAG's Params: the default space is a valid SageMaker space over the five
hyperparameters SageMaker tunes for Object Detection; trials at once from the Param, else
the config's ResourceLimits."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import ParamValidationError

from odp_airflow.failure import StageFailed
from odp_airflow.params import DEFAULT_SEARCH_SPACE, tuning_params
from odp_airflow.tuning import _parallel_trials
from pipeline_lib.tuning.config import parse_config
from pipeline_lib.tuning.slots import DEFAULT_PARALLEL_TRIALS, MAX_PARALLEL_TRIALS


def test_the_default_space_is_sagemakers_tunables():
    config = parse_config(DEFAULT_SEARCH_SPACE, "default")
    assert set(config.space.names) == {
        "learning_rate",
        "mini_batch_size",
        "momentum",
        "optimizer",
        "weight_decay",
    }


def test_tuning_params_have_titles():
    params = tuning_params()
    assert params["search_space"].value == DEFAULT_SEARCH_SPACE
    assert all(p.schema.get("title") for p in params.values())


def test_trials_at_once_is_a_run_time_param_from_1_to_the_dags_cap():
    param = tuning_params()["max_parallel_trials"]
    assert param.resolve(None) is None and param.resolve(3) == 3
    for bad in (0, MAX_PARALLEL_TRIALS + 1):
        with pytest.raises(ParamValidationError):
            param.resolve(bad)


def test_trials_at_once_defaults_to_the_configs_max_parallel_training_jobs():
    space = {
        "HyperParameterTuningJobConfig": {
            **{"ParameterRanges": DEFAULT_SEARCH_SPACE},
            "ResourceLimits": {"MaxNumberOfTrainingJobs": 6, "MaxParallelTrainingJobs": 3},
        }
    }
    from_config = parse_config(space, "space").max_parallel
    assert _parallel_trials(None, from_config) == 3
    assert _parallel_trials(5, from_config) == 5  # the Param wins
    assert _parallel_trials(None, None) == DEFAULT_PARALLEL_TRIALS
    assert _parallel_trials(None, 100) == MAX_PARALLEL_TRIALS  # the task's parse-time cap
    with pytest.raises(StageFailed, match="max_parallel_trials"):
        _parallel_trials(0, None)


def test_the_epoch_budget_params_are_optional_positive_integers():
    params = tuning_params()
    for name in ("epoch_budget", "max_trial_epochs", "prune_warmup_epochs"):
        assert params[name].resolve(None) is None and params[name].resolve(12) == 12
    for name in ("epoch_budget", "max_trial_epochs"):
        with pytest.raises(ParamValidationError):
            params[name].resolve(0)
