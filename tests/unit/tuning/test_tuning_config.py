"""The tuning job file in SageMaker's three shapes, and refusals naming the field."""

from __future__ import annotations

import json

import pytest

from pipeline_lib.tuning.config import load_config, parse_config
from pipeline_lib.tuning.space import SpaceError

RANGES = {
    "ContinuousParameterRanges": [
        {"Name": "learning_rate", "MinValue": "0.0001", "MaxValue": "0.1", "ScalingType": "Auto"}
    ],
    "CategoricalParameterRanges": [{"Name": "optimizer", "Values": ["sgd", "adam"]}],
}

# A CreateHyperParameterTuningJob request as boto3 takes it (fields we do not use kept).
REQUEST = {
    "HyperParameterTuningJobName": "od-tuning",
    "HyperParameterTuningJobConfig": {
        "Strategy": "Random",
        "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "validation:mAP"},
        "ResourceLimits": {"MaxNumberOfTrainingJobs": 12, "MaxParallelTrainingJobs": 3},
        "ParameterRanges": RANGES,
        "TrainingJobEarlyStoppingType": "Auto",
    },
    "TrainingJobDefinition": {
        "StaticHyperParameters": {"base_network": "resnet-50", "num_classes": "3", "epochs": "10"},
        "AlgorithmSpecification": {"TrainingInputMode": "File"},
    },
}


def test_a_sagemaker_request_works_unchanged(tmp_path):
    path = tmp_path / "job.json"
    path.write_text(json.dumps(REQUEST))
    config = load_config(path)
    assert config.space.names == ("learning_rate", "optimizer")
    # num_classes is counted from the data: dropped from the static values
    assert config.static == {"base_network": "resnet-50", "epochs": "10"}
    assert (config.sampler, config.pruner) == ("random", "median")
    assert (config.max_trials, config.max_parallel) == (12, 3)


def test_bare_ranges_and_job_config_shapes():
    assert parse_config(RANGES).space.names == ("learning_rate", "optimizer")
    job = {"ParameterRanges": RANGES, "Strategy": "Bayesian", "TrainingJobEarlyStoppingType": "Off"}
    config = parse_config(job)
    assert (config.sampler, config.pruner, config.max_trials) == ("tpe", "none", None)


@pytest.mark.parametrize(
    ("mutate", "field", "words"),
    [
        (
            lambda r: r["TrainingJobDefinition"]["StaticHyperParameters"].update(optimizer="sgd"),
            "StaticHyperParameters.optimizer",
            "also tuned",
        ),
        (
            lambda r: r["TrainingJobDefinition"]["StaticHyperParameters"].update(
                base_network="vgg"
            ),
            "StaticHyperParameters.base_network",
            "expected one of vgg-16",
        ),
        (
            lambda r: r["HyperParameterTuningJobConfig"].update(Strategy="Grid"),
            "HyperParameterTuningJobConfig.Strategy",
            "expected one of Bayesian, Random, Hyperband",
        ),
        (
            lambda r: r["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"].update(
                MetricName="validation:loss"
            ),
            "HyperParameterTuningJobObjective.MetricName",
            "validation:mAP",
        ),
        (
            lambda r: r["HyperParameterTuningJobConfig"]["ResourceLimits"].update(
                MaxNumberOfTrainingJobs=0
            ),
            "ResourceLimits.MaxNumberOfTrainingJobs",
            "integer >= 1",
        ),
        (
            lambda r: r["HyperParameterTuningJobConfig"]["ResourceLimits"].update(
                MaxTotalTrainingEpochs="48"
            ),
            "ResourceLimits.MaxTotalTrainingEpochs",
            "integer >= 1",
        ),
        (
            lambda r: r["HyperParameterTuningJobConfig"]["ParameterRanges"][
                "CategoricalParameterRanges"
            ][0]["Values"].append("nesterov"),
            "HyperParameterTuningJobConfig.ParameterRanges.CategoricalParameterRanges[0].Values[2]",
            "'nesterov' is not a valid optimizer",
        ),
    ],
)
def test_refusals_name_the_field(mutate, field, words):
    request = json.loads(json.dumps(REQUEST))
    mutate(request)
    with pytest.raises(SpaceError) as caught:
        parse_config(request, "job.json")
    assert caught.value.field.startswith("job.json: ") and caught.value.field.endswith(field)
    assert words in str(caught.value)


def test_a_file_that_is_not_json_is_refused_naming_it(tmp_path):
    path = tmp_path / "space.json"
    path.write_text("{not json")
    with pytest.raises(SpaceError, match=r"space.json: not valid JSON"):
        load_config(path)


def test_the_epoch_budget_is_an_extra_resource_limit():
    request = json.loads(json.dumps(REQUEST))
    limits = request["HyperParameterTuningJobConfig"]["ResourceLimits"]
    assert parse_config(request).epoch_budget is None
    limits.update(MaxTotalTrainingEpochs=48, MaxTrainingEpochsPerJob=20)
    config = parse_config(request)
    assert (config.epoch_budget, config.max_trial_epochs, config.max_trials) == (48, 20, 12)
