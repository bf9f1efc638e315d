"""SageMaker ParameterRanges: parsing, ScalingType, and refusals that name the field."""

from __future__ import annotations

import math

import optuna
import pytest

from pipeline_lib.tuning.space import ScalingType, SearchSpace, SpaceError, parse_ranges

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _space(**kinds) -> SearchSpace:
    return parse_ranges(kinds)


def _cont(name="learning_rate", lo="0.0001", hi="0.1", scaling=None):
    item = {"Name": name, "MinValue": lo, "MaxValue": hi}
    if scaling:
        item["ScalingType"] = scaling
    return item


def test_the_five_sagemaker_tunables_parse():
    space = _space(
        ContinuousParameterRanges=[
            _cont(),
            _cont("momentum", "0.5", "0.99", "ReverseLogarithmic"),
            _cont("weight_decay", "0", "0.001", "Linear"),
        ],
        IntegerParameterRanges=[{"Name": "mini_batch_size", "MinValue": "8", "MaxValue": "64"}],
        CategoricalParameterRanges=[{"Name": "optimizer", "Values": ["sgd", "adam", "rmsprop"]}],
    )
    assert space.names == (
        "learning_rate",
        "momentum",
        "weight_decay",
        "mini_batch_size",
        "optimizer",
    )
    scales = {r.name: getattr(r, "scaling", None) for r in space.ranges}
    assert scales["learning_rate"] is ScalingType.LOGARITHMIC  # Auto over 3 decades
    assert scales["mini_batch_size"] is ScalingType.LINEAR  # Auto over less than 2 decades
    assert scales["weight_decay"] is ScalingType.LINEAR


def test_numbers_are_accepted_as_well_as_strings():
    space = _space(ContinuousParameterRanges=[_cont(lo=0.001, hi=0.01)])
    assert space.ranges[0].low == 0.001


def _samples(space: SearchSpace, n: int = 200) -> list[dict[str, str]]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append(space.suggest(trial))
        study.tell(trial, 0.0)
    return out


def test_values_stay_in_range_as_sagemaker_strings():
    space = _space(
        ContinuousParameterRanges=[_cont("momentum", "0.5", "0.99", "ReverseLogarithmic")],
        IntegerParameterRanges=[{"Name": "mini_batch_size", "MinValue": "8", "MaxValue": "64"}],
        CategoricalParameterRanges=[{"Name": "optimizer", "Values": ["sgd", "adam"]}],
    )
    for hp in _samples(space, 50):
        assert 0.5 <= float(hp["momentum"]) <= 0.99
        assert hp["mini_batch_size"].isdigit() and 8 <= int(hp["mini_batch_size"]) <= 64
        assert hp["optimizer"] in ("sgd", "adam")


def test_logarithmic_scaling_samples_every_decade_alike():
    space = _space(ContinuousParameterRanges=[_cont(lo="0.0001", hi="0.1", scaling="Logarithmic")])
    decades = [math.floor(math.log10(float(h["learning_rate"]))) for h in _samples(space, 300)]
    # log-uniform: about a third in each of 1e-4, 1e-3, 1e-2; linear would put ~90% in 1e-2
    assert min(decades.count(d) for d in (-4, -3, -2)) > 60


def test_reverse_logarithmic_crowds_values_near_one():
    space = _space(
        ContinuousParameterRanges=[_cont("momentum", "0.0", "0.999", "ReverseLogarithmic")]
    )
    values = [float(h["momentum"]) for h in _samples(space, 300)]
    # 1 - x log-uniform over [0.001, 1]: two thirds of the values above 0.9 (linear: 10%)
    assert sum(v > 0.9 for v in values) > 150
    linear = _space(ContinuousParameterRanges=[_cont("momentum", "0.0", "0.999", "Linear")])
    assert sum(float(h["momentum"]) > 0.9 for h in _samples(linear, 300)) < 60


def test_to_json_round_trips():
    space = _space(
        ContinuousParameterRanges=[_cont()],
        CategoricalParameterRanges=[{"Name": "optimizer", "Values": ["sgd"]}],
    )
    assert parse_ranges(space.to_json()) == space


@pytest.mark.parametrize(
    ("ranges", "field", "words"),
    [
        (
            {"ContinuousParameterRanges": [_cont("learning_rat")]},
            "ContinuousParameterRanges[0].Name",
            "unknown hyperparameter 'learning_rat'",
        ),
        (
            {"ContinuousParameterRanges": [_cont(lo="0.01", hi="0.01")]},
            "ContinuousParameterRanges[0].MaxValue",
            "empty range",
        ),
        (
            {
                "IntegerParameterRanges": [
                    {"Name": "mini_batch_size", "MinValue": "64", "MaxValue": "8"}
                ]
            },
            "IntegerParameterRanges[0].MaxValue",
            "empty range",
        ),
        (
            {"CategoricalParameterRanges": [{"Name": "optimizer", "Values": ["sgd", "adagrad"]}]},
            "CategoricalParameterRanges[0].Values[1]",
            "'adagrad' is not a valid optimizer: expected one of sgd, adam, rmsprop, adadelta",
        ),
        (
            {"CategoricalParameterRanges": [{"Name": "optimizer", "Values": []}]},
            "CategoricalParameterRanges[0].Values",
            "non-empty list",
        ),
        (
            {"ContinuousParameterRanges": [_cont(lo="0", hi="0.1")]},
            "ContinuousParameterRanges[0].MinValue",
            "not a valid learning_rate",
        ),
        (
            {"ContinuousParameterRanges": [_cont("weight_decay", "0", "0.1", "Logarithmic")]},
            "ContinuousParameterRanges[0].ScalingType",
            "Logarithmic needs MinValue > 0",
        ),
        (
            {"ContinuousParameterRanges": [_cont(scaling="Exponential")]},
            "ContinuousParameterRanges[0].ScalingType",
            "expected one of Auto, Linear, Logarithmic, ReverseLogarithmic",
        ),
        (
            {"ContinuousParameterRanges": [_cont("mini_batch_size", "8", "64")]},
            "ContinuousParameterRanges[0].Name",
            "use IntegerParameterRanges",
        ),
        (
            {
                "IntegerParameterRanges": [
                    {"Name": "momentum", "MinValue": "0.1", "MaxValue": "0.9"}
                ]
            },
            "IntegerParameterRanges[0].Name",
            "momentum is continuous: use ContinuousParameterRanges",
        ),
        (
            {
                "IntegerParameterRanges": [
                    {
                        "Name": "epochs",
                        "MinValue": "1",
                        "MaxValue": "9",
                        "ScalingType": "ReverseLogarithmic",
                    }
                ]
            },
            "IntegerParameterRanges[0].ScalingType",
            "continuous ranges only",
        ),
        (
            {"ContinuousParameterRanges": [_cont(), _cont()]},
            "ContinuousParameterRanges[1].Name",
            "already tuned",
        ),
        (
            {"CategoricalParameterRanges": [{"Name": "num_classes", "Values": ["2"]}]},
            "CategoricalParameterRanges[0].Name",
            "counted from the data",
        ),
        (
            {"ContinuousParameterRange": []},
            "ParameterRanges.ContinuousParameterRange",
            "unknown kind",
        ),
        ({}, "ParameterRanges", "no hyperparameter to tune"),
        (
            {"ContinuousParameterRanges": [{"Name": "learning_rate", "MinValue": "0.1"}]},
            "ContinuousParameterRanges[0].MaxValue",
            "required",
        ),
        (
            {"ContinuousParameterRanges": [{**_cont(), "Scaling": "Linear"}]},
            "ContinuousParameterRanges[0].Scaling",
            "unknown field",
        ),
    ],
)
def test_invalid_ranges_are_refused_naming_the_field(ranges, field, words):
    with pytest.raises(SpaceError) as caught:
        parse_ranges(ranges)
    assert caught.value.field.endswith(field), caught.value.field
    assert words in str(caught.value)
