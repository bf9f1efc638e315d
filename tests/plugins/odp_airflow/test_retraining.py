"""The retraining plan: which data a run trains on, and when it ends early."""

from __future__ import annotations

import pytest

from odp_airflow import retraining
from odp_airflow.failure import StageFailed
from odp_airflow.formats import content_hash, resolve_data
from pipeline_lib.synthetic import SynthConfig, generate


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("retrain") / "dataset"
    generate(root, SynthConfig(images=6, classes=2, seed=3, min_size=64, max_size=80))
    return root


def _params(dataset, **kw):
    return {"dataset_uri": str(dataset), "model_name": "m", "base_model": "champion", **kw}


def test_newest_event_wins_and_names_the_data(dataset):
    events = [
        {
            "id": 2,
            "timestamp": "2026-05-02T00:00:00+00:00",
            "extra": {"uri": "s3://b/new", "content_hash": "h2"},
        },
        {
            "id": 1,
            "timestamp": "2026-05-01T00:00:00+00:00",
            "extra": {"uri": "s3://b/old", "content_hash": "h1"},
        },
    ]
    champion = {"version": 3, "tags": {"odp.content_hash": "h2"}}
    plan = retraining.plan(_params(dataset), events, champion)
    # an event is explicit: it trains even on the hash the champion saw
    assert plan == {
        "dataset_uri": "s3://b/new",
        "content_hash": "h2",
        "base_model": "models:/m@champion",
    }


def test_event_with_format_params_and_file_uri(dataset):
    event = {"extra": {"uri": f"file://{dataset}", "input_format": "image+json"}}
    plan = retraining.plan(_params(dataset), [event], None)
    assert plan == {"input_format": "image+json", "dataset_uri": str(dataset), "base_model": ""}


def test_event_without_a_location_is_refused(dataset):
    with pytest.raises(StageFailed, match="has no data location in its extra"):
        retraining.plan(_params(dataset), [{"id": 7, "extra": {"note": "hi"}}], None)


def test_schedule_without_events_ends_early_when_the_champion_saw_this_data(dataset):
    params = _params(dataset)
    seen = content_hash(resolve_data(params))
    assert retraining.plan(params, [], {"version": 1, "tags": {"odp.content_hash": seen}}) == {}


def test_schedule_without_events_retrains_changed_data_from_the_champion(dataset):
    params = _params(dataset)
    plan = retraining.plan(params, [], {"version": 1, "tags": {"odp.content_hash": "older"}})
    assert plan == {
        "content_hash": content_hash(resolve_data(params)),
        "base_model": "models:/m@champion",
    }
    # no champion: from scratch; an explicit base model is kept as given
    assert retraining.plan(params, [], None)["base_model"] == ""
    explicit = retraining.plan({**params, "base_model": "models:/other/2"}, [], None)
    assert explicit["base_model"] == "models:/other/2"
