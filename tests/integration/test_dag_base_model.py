"""Incremental training from the registry, through the real DAG: a run seeded with
``base_model=models:/NAME@champion`` starts at the champion's mAP and says so in MLflow; a
seed that does not fit fails the first task, before validation."""

from __future__ import annotations

import json

import pytest
from dag_runs import load_dag, small_conf, task_states, tries

from pipeline_lib import registry

pytestmark = pytest.mark.integration


def test_a_run_seeded_from_the_champion_starts_at_its_map(dag_env, learned_model, capfd):
    odp_home = dag_env
    from mlflow import MlflowClient

    seed = registry.register_model(learned_model.tar, "seeded", metrics={"mAP": learned_model.mAP})
    registry.promote_if_better("seeded", seed["version"])

    # a seed with another base network: refused by resolve_inputs, naming both, no retry
    conf = small_conf(learned_model.dataset, "seeded", base_model="models:/seeded@champion")
    dagrun = load_dag().test(run_conf={**conf, "base_network": "resnet-50"})
    states = task_states(dagrun)
    assert states["resolve_inputs"] == "failed" and tries(dagrun)["resolve_inputs"] == 1
    assert states["validate"] in ("upstream_failed", "None"), states
    captured = capfd.readouterr()
    assert "mobilenet-0.25 model but this run's base_network is resnet-50" in (
        captured.out + captured.err
    )
    assert not list(odp_home.artifact_root.glob("runs/*/*/validate"))

    conf = {**conf, "epochs": 1, "mini_batch_size": 16, "optimizer": "sgd", "learning_rate": 0.01}
    conf["hyperparameters"] = {"num_workers": "0", "seed": "1"}
    dagrun = load_dag().test(run_conf=conf)
    assert str(dagrun.state) == "success", task_states(dagrun)

    (run_dir,) = [
        d
        for d in (odp_home.artifact_root / "runs" / "object_detection_training").iterdir()
        if (d / "train").exists()
    ]
    metrics = json.loads((run_dir / "train" / "ml" / "output" / "metrics.json").read_text())
    # the first evaluation, before any update, is the champion's
    assert metrics["initial_validation:mAP"] == pytest.approx(learned_model.mAP, abs=0.02)

    client = MlflowClient(odp_home.mlflow_tracking_uri)
    version = client.get_model_version_by_alias("seeded", "candidate")
    assert int(version.version) == seed["version"] + 1
    tags = version.tags
    assert tags["base_model"] == f"models:/seeded@champion (seeded/{seed['version']})"
    assert len(tags["dataset_digest"]) == 64  # the dataset's content hash
    assert float(tags["validation_mAP"]) == pytest.approx(
        client.get_run(version.run_id).data.metrics["mAP"], abs=1e-6
    )
    assert "odp.promotion" in tags and "vs champion" in tags["odp.promotion"]

    # lineage on the run: dataset input with the content hash, reports, DAG and git tags
    run = client.get_run(version.run_id)
    (dataset_input,) = run.inputs.dataset_inputs
    assert tags["dataset_digest"].startswith(dataset_input.dataset.digest)  # MLflow keeps 36
    assert str(learned_model.dataset) in dataset_input.dataset.source
    assert run.data.tags["odp.dag_id"] == "object_detection_training"
    assert run.data.tags["odp.base_network"] == "mobilenet-0.25"
    assert len(run.data.tags["mlflow.source.git.commit"]) >= 7
    files = {a.path for a in client.list_artifacts(version.run_id, "evaluation")}
    assert {"evaluation/metrics.json", "evaluation/validate_report.json"} <= files, files
    assert any(f.endswith(".png") for f in files), files
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"


def test_a_run_seeded_with_a_sagemaker_jobs_archive(dag_env, training_data, tmp_path, capfd):
    """A SageMaker Object Detection job's model.tar.gz as base_model: refused in the first
    task when its base network is not the run's; else the run starts at its mAP and writes
    SageMaker's format (the seed's format wins)."""
    import sagemaker_models

    from pipeline_lib.artifact import SAGEMAKER, archive_config
    from pipeline_lib.evaluation.evaluate import evaluate_model

    odp_home = dag_env
    tar = sagemaker_models.write_artifact(tmp_path / "job", "resnet-50", 300, 2, seed=6)
    conf = small_conf(training_data, "from-sagemaker", base_model=str(tar), base_network="vgg-16")
    dagrun = load_dag().test(run_conf=conf)
    states = task_states(dagrun)
    assert states["resolve_inputs"] == "failed" and tries(dagrun)["resolve_inputs"] == 1
    captured = capfd.readouterr()
    assert "is a resnet-50 model but this run's base_network is vgg-16" in (
        captured.out + captured.err
    )

    conf = {**conf, "base_network": "resnet-50", "epochs": 1, "mini_batch_size": 8}
    dagrun = load_dag().test(run_conf=conf)
    assert str(dagrun.state) == "success", task_states(dagrun)
    (run_dir,) = [
        d
        for d in (odp_home.artifact_root / "runs" / "object_detection_training").iterdir()
        if (d / "train").exists()
    ]
    metrics = json.loads((run_dir / "train" / "ml" / "output" / "metrics.json").read_text())
    seed = evaluate_model(tar, training_data, tmp_path / "seed-eval")
    assert metrics["initial_validation:mAP"] == pytest.approx(seed["metrics"]["mAP"], abs=0.02)
    (written,) = run_dir.glob("train/**/model.tar.gz")
    config = archive_config(written)
    assert config.format == SAGEMAKER and config.base_network == "resnet-50"
    assert config.classes == {0: "circle", 1: "square"}
