"""The retraining DAG for real (``dag.test()``): a first run trains and registers the
champion (recording the data's content hash, publishing the champion Asset); a second run
without an asset event on the same data ends early at ``plan_retraining``."""

from __future__ import annotations

import pytest
from dag_runs import load_dag, small_conf, task_states

from pipeline_lib.registry import get_champion
from pipeline_lib.synthetic import SynthConfig, generate

pytestmark = pytest.mark.integration
DAG_ID = "object_detection_retraining"


def _champion_events(model_name: str) -> list[dict]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(AssetEvent.extra)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.uri == f"mlflow-model://{model_name}/champion")
        ).all()
    return [row[0] for row in rows]


def test_retrains_then_ends_early_on_unchanged_data(dag_env, tmp_path):
    dataset = tmp_path / "dataset"
    generate(dataset, SynthConfig(images=12, classes=2, seed=9, min_size=96, max_size=128))
    dag = load_dag(DAG_ID)
    assert dag.max_active_runs == 1 and not dag.catchup
    conf = small_conf(dataset, "retrain-model", epochs=1, mini_batch_size=4)

    first = dag.test(run_conf=conf)
    assert str(first.state) == "success", task_states(first)
    champion = get_champion("retrain-model")
    assert champion is not None and len(champion["tags"]["odp.content_hash"]) == 64
    # the champion moved: an event on the model's champion Asset, for a deployment DAG
    assert [e["version"] for e in _champion_events("retrain-model")] == [champion["version"]]

    second = load_dag(DAG_ID).test(run_conf=conf)
    states = task_states(second)
    assert states["plan_retraining"] == "success", states
    assert {states[t] for t in ("resolve_inputs", "validate", "train", "register")} == {"skipped"}
    assert get_champion("retrain-model")["version"] == champion["version"]
    assert len(_champion_events("retrain-model")) == 1
