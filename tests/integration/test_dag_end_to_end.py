"""The whole DAG, for real: ``dag.test()`` on a tiny synthetic dataset, local compute."""

from __future__ import annotations

import json

import pytest
from dag_runs import load_dag, small_conf, task_states, tries
from PIL import Image

from pipeline_lib import registry
from pipeline_lib.synthetic import SynthConfig, generate

pytestmark = pytest.mark.integration


def test_full_dag_registers_a_candidate_with_map(dag_env, tmp_path):
    odp_home = dag_env
    from mlflow.tracking import MlflowClient

    dataset = tmp_path / "dataset"
    generate(dataset, SynthConfig(images=30, classes=2, seed=5))
    dagrun = load_dag().test(run_conf=small_conf(dataset, "e2e-model"))
    states = task_states(dagrun)
    assert str(dagrun.state) == "success", states
    # compute=local: the Kubernetes pods' task is mapped over no host, so skipped
    assert states.pop("train_pod") == "skipped"
    assert set(states.values()) == {"success"}

    client = MlflowClient(odp_home.mlflow_tracking_uri)
    version = client.get_model_version_by_alias("e2e-model", "candidate")
    run = client.get_run(version.run_id)
    assert "mAP" in run.data.metrics and 0.0 <= run.data.metrics["mAP"] <= 1.0
    assert run.data.params["base_network"] == "mobilenet-0.25"
    assert len(client.get_metric_history(version.run_id, "train_cross_entropy")) == 2
    # training logged into this very run as it went (per epoch and per logged iteration);
    # registration then completed it with the model
    assert run.data.tags[registry.LIVE_TAG] == "true" and run.info.status == "FINISHED"
    assert len(client.get_metric_history(version.run_id, "batch_cross_entropy")) >= 2
    artifacts = {a.path for a in client.list_artifacts(version.run_id, "evaluation")}
    assert "evaluation/metrics.json" in artifacts, artifacts
    assert version.source == f"models:/{run.data.tags[registry.MODEL_ID_TAG]}"  # the pyfunc

    assert client.get_model_version_by_alias("e2e-model", "champion").version == version.version

    # The UI's "MLflow" extra links (plugins/odp_links.py), read back as the API server does
    from odp_links import MLflowLink

    tis = {ti.task_id: ti for ti in dagrun.get_task_instances()}
    link = MLflowLink()
    assert link.get_link(None, ti_key=tis["register"].key) == (
        f"http://127.0.0.1:5000/#/models/e2e-model/versions/{version.version}"
    )
    assert link.get_link(None, ti_key=tis["train"].key).endswith(f"/#/runs/{version.run_id}")
    assert link.get_link(None, ti_key=tis["validate"].key) == ""

    # Run outputs live under {artifact_root}/runs/{dag_id}/{run_id}/{task}/
    run_dirs = list((odp_home.artifact_root / "runs" / "object_detection_training").iterdir())
    assert len(run_dirs) == 1
    assert (run_dirs[0] / "train" / "model.tar.gz").exists()
    assert (run_dirs[0] / "validate" / "report" / "report.json").exists()
    assert (run_dirs[0] / "evaluate" / "metrics.json").exists()

    # A second run: the champion is re-evaluated on the same data and compared like with like.
    dagrun = load_dag().test(run_conf=small_conf(dataset, "e2e-model"))
    assert str(dagrun.state) == "success", task_states(dagrun)
    second = client.get_model_version_by_alias("e2e-model", "candidate")
    assert int(second.version) == int(version.version) + 1
    (second_dir,) = [d for d in run_dirs[0].parent.iterdir() if d != run_dirs[0]]
    champion_eval = json.loads((second_dir / "evaluate_champion" / "metrics.json").read_text())
    assert champion_eval["metrics"]["mAP"] == pytest.approx(run.data.metrics["mAP"], abs=1e-9)
    new_map = client.get_run(second.run_id).data.metrics["mAP"]
    champion = client.get_model_version_by_alias("e2e-model", "champion")
    expected = second.version if new_map > champion_eval["metrics"]["mAP"] else version.version
    assert champion.version == expected


def test_grayscale_image_stops_the_run_at_validate(dag_env, tmp_path):
    odp_home = dag_env
    dataset = tmp_path / "dataset"
    generate(dataset, SynthConfig(images=10, classes=2, seed=6))
    victim = sorted((dataset / "train").glob("*.jpg"))[0]
    Image.open(victim).convert("L").save(victim)
    dagrun = load_dag().test(run_conf=small_conf(dataset, "e2e-bad"))
    states = task_states(dagrun)
    assert str(dagrun.state) == "failed"
    assert states["validate"] == "failed"
    assert tries(dagrun)["validate"] == 1  # invalid data: no retry
    for downstream in ("convert", "train", "evaluate", "register"):
        assert states[downstream] in ("upstream_failed", "None"), states
    assert not list(odp_home.artifact_root.glob("runs/*/*/train"))
