"""The tuning DAG's Params: the default space is a valid SageMaker space over the five
hyperparameters SageMaker tunes for Object Detection."""

from __future__ import annotations

from odp_airflow.params import DEFAULT_SEARCH_SPACE, tuning_params
from pipeline_lib.tuning.config import parse_config


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
