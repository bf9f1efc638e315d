"""The tuning DAG for real: ``dag.test()`` on a tiny dataset, 4 trials, aggressive pruning,
MLflow parent and nested runs, the best trial registered; a second run continues the study."""

from __future__ import annotations

import optuna
import pytest
import sqlalchemy
from dag_runs import load_dag, small_conf

from pipeline_lib.synthetic import SynthConfig, generate
from pipeline_lib.tuning.tracking import PARENT_TAG, STATE_TAG

pytestmark = pytest.mark.integration

SPACE = {
    "ContinuousParameterRanges": [
        {
            "Name": "learning_rate",
            "MinValue": "0.00001",
            "MaxValue": "0.01",
            "ScalingType": "Logarithmic",
        }
    ],
    "CategoricalParameterRanges": [{"Name": "optimizer", "Values": ["adam", "sgd"]}],
}


def _conf(dataset, trials: int) -> dict:
    return small_conf(
        dataset,
        "tuned-model",
        search_space=SPACE,
        max_trials=trials,
        sampler="tpe",
        pruner="median",
        prune_startup_trials=1,  # prune aggressively: from the second trial, from epoch 0
        prune_warmup_epochs=0,
        study_name="dag-study",
        tuning_seed=11,
    )


def test_tuning_dag_prunes_tracks_and_registers_the_best_trial(dag_env, tmp_path):
    odp_home = dag_env
    from mlflow.tracking import MlflowClient

    dataset = tmp_path / "dataset"
    generate(dataset, SynthConfig(images=30, classes=2, seed=5))
    dagrun = load_dag("object_detection_tuning").test(run_conf=_conf(dataset, 4))
    tis = dagrun.get_task_instances()
    assert str(dagrun.state) == "success", {(t.task_id, t.map_index): str(t.state) for t in tis}
    assert sorted(t.map_index for t in tis if t.task_id == "trial") == [0, 1, 2, 3]

    storage = f"sqlite:///{odp_home.home / 'tuning' / 'studies.db'}"
    study = optuna.load_study(study_name="dag-study", storage=storage)
    with sqlalchemy.create_engine(storage).connect() as db:  # trials took slots, all freed
        assert db.execute(sqlalchemy.text("SELECT count(*) FROM odp_trial_slots")).scalar() == 0
    states = [t.state.name for t in study.trials]
    assert len(states) == 4 and "PRUNED" in states and "COMPLETE" in states, states
    for t in study.trials:  # every trial reported each epoch it trained
        assert t.intermediate_values and min(t.intermediate_values) == 0
        if t.state.name == "COMPLETE":
            assert sorted(t.intermediate_values) == [0, 1]

    client = MlflowClient(odp_home.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name("object-detection")
    (parent,) = client.search_runs(
        [experiment.experiment_id],
        "tags.`odp.idempotency_key` = 'tuning/dag-study'",
    ) or [None]
    children = client.search_runs(
        [experiment.experiment_id], f"tags.`{PARENT_TAG}` = '{parent.info.run_id}'"
    )
    assert len(children) == 4
    by_trial = {int(r.data.tags["odp.tuning.trial"]): r for r in children}
    for t in study.trials:
        run = by_trial[t.number]
        assert run.data.tags[STATE_TAG] == t.state.name.lower()
        assert (
            run.data.params["learning_rate"] == t.user_attrs["odp.hyperparameters"]["learning_rate"]
        )
        # per-epoch validation mAP, logged live by the trial's training job
        history = client.get_metric_history(run.info.run_id, "validation_mAP")
        assert [m.step for m in history] == sorted(t.intermediate_values)
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "tuning")}
    assert "tuning/optimization_history.png" in artifacts and "tuning/tuning.json" in artifacts
    if states.count("COMPLETE") >= 2:
        assert "tuning/param_importances.png" in artifacts

    best = max((t for t in study.trials if t.state.name == "COMPLETE"), key=lambda t: t.value)
    parent = client.get_run(parent.info.run_id)
    assert parent.data.tags["odp.tuning.best_trial"] == str(best.number)
    assert parent.data.metrics["best_validation_mAP"] == pytest.approx(best.value)
    version = client.get_model_version_by_alias("tuned-model", "candidate")
    run = client.get_run(version.run_id)
    assert (
        run.data.params["learning_rate"] == best.user_attrs["odp.hyperparameters"]["learning_rate"]
    )
    assert 0.0 <= run.data.metrics["mAP"] <= 1.0

    # Resumed: a run naming the same study with 5 trials in all trains just one more.
    before = [(t.params, t.state) for t in study.trials]
    dagrun = load_dag("object_detection_tuning").test(run_conf=_conf(dataset, 5))
    assert str(dagrun.state) == "success"
    assert [t.map_index for t in dagrun.get_task_instances() if t.task_id == "trial"] == [0]
    again = optuna.load_study(study_name="dag-study", storage=storage)
    assert len(again.trials) == 5
    assert [(t.params, t.state) for t in again.trials[:4]] == before


def test_a_bad_space_stops_the_run_before_any_data_work(dag_env, tmp_path):
    dataset = tmp_path / "dataset"
    generate(dataset, SynthConfig(images=10, classes=2, seed=6))
    space = {"CategoricalParameterRanges": [{"Name": "optimizer", "Values": ["sgd", "lamb"]}]}
    conf = {**_conf(dataset, 2), "search_space": space, "study_name": "bad-space"}
    dagrun = load_dag("object_detection_tuning").test(run_conf=conf)
    tis = {t.task_id: t for t in dagrun.get_task_instances()}
    assert str(dagrun.state) == "failed"
    assert str(tis["start_study"].state) == "failed" and tis["start_study"].try_number == 1
    assert str(tis["validate"].state) == "upstream_failed"
    assert str(tis["select_best"].state) == "upstream_failed"
    assert not (dag_env.home / "tuning" / "studies.db").exists()


def test_mapped_trials_share_the_runs_epoch_budget(dag_env, tmp_path):
    """The budget lives in the study: the DAG's trials draw their epochs from it, never
    train more in all, and a continued run keeps it (no Param needed the second time)."""
    dataset = tmp_path / "dataset"
    generate(dataset, SynthConfig(images=30, classes=2, seed=7))
    conf = {**_conf(dataset, 3), "study_name": "budget-study"}
    conf.update(epoch_budget=5, max_trial_epochs=3, max_parallel_trials=1)
    assert str(load_dag("object_detection_tuning").test(run_conf=conf).state) == "success"
    storage = f"sqlite:///{dag_env.home / 'tuning' / 'studies.db'}"
    study = optuna.load_study(study_name="budget-study", storage=storage)
    given = [int(t.user_attrs["odp.hyperparameters"]["epochs"]) for t in study.trials]
    assert given[:2] == [1, 1] and len(given) == 3  # the random first ones: an even share
    assert given[2] == 3  # the one the others left room for: up to max_trial_epochs
    spent = sum(len(t.intermediate_values) for t in study.trials)
    assert spent <= 5

    more = {**conf, "max_trials": 4, "epoch_budget": None, "max_trial_epochs": None}
    assert str(load_dag("object_detection_tuning").test(run_conf=more).state) == "success"
    again = optuna.load_study(study_name="budget-study", storage=storage)
    assert sum(len(t.intermediate_values) for t in again.trials) <= 5
    if spent < 5:  # a pruned trial left epochs: the fourth trains them
        assert again.trials[3].user_attrs["odp.hyperparameters"]["epochs"] == str(5 - spent)
    else:  # spent: the fourth slot trains nothing and the run still succeeds
        assert len(again.trials) == 3
