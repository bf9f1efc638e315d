"""``odp tune`` for real: sequential trials of the tiny training job, per-epoch pruning,
MLflow runs, and a tuning job stopped after two trials that continues the same study."""

from __future__ import annotations

import json

import optuna
import pytest
from training_job import layout

from pipeline_lib.cli import main
from pipeline_lib.tuning.tracking import PARENT_TAG, STATE_TAG

pytestmark = pytest.mark.integration

SPACE = {
    "HyperParameterTuningJobConfig": {
        "Strategy": "Bayesian",
        "ParameterRanges": {
            "ContinuousParameterRanges": [
                {
                    "Name": "learning_rate",
                    "MinValue": "0.00001",
                    "MaxValue": "0.01",
                    "ScalingType": "Logarithmic",
                }
            ],
            "CategoricalParameterRanges": [{"Name": "optimizer", "Values": ["adam", "sgd"]}],
        },
        "TrainingJobEarlyStoppingType": "Auto",
    },
    "TrainingJobDefinition": {"StaticHyperParameters": {"mini_batch_size": "8"}},
}


def test_tune_runs_trials_and_resumes_the_same_study(training_data, tmp_path, odp_home, capsys):
    ml = layout(tmp_path / "ml", training_data, epochs=2).root
    space = tmp_path / "space.json"
    space.write_text(json.dumps(SPACE))
    args = [
        "tune",
        "--ml-root",
        str(ml),
        "--space",
        str(space),
        "--study",
        "cli-study",
        "--seed",
        "2",
    ]
    args += ["--prune-startup-trials", "1", "--prune-warmup-epochs", "0"]

    assert main([*args, "--trials", "2"]) == 0  # "stopped" after two trials
    storage = f"sqlite:///{odp_home.home / 'tuning' / 'studies.db'}"
    first = optuna.load_study(study_name="cli-study", storage=storage).trials
    assert [t.number for t in first] == [0, 1]
    assert "best: trial" in capsys.readouterr().out

    assert main([*args, "--trials", "3"]) == 0
    out = capsys.readouterr().out
    assert "resuming with 2 of 3 trials done" in out
    trials = optuna.load_study(study_name="cli-study", storage=storage).trials
    assert len(trials) == 3
    assert [(t.params, t.state, t.value) for t in trials[:2]] == [
        (t.params, t.state, t.value) for t in first
    ]
    assert sorted(p.name for p in (ml / "tuning").iterdir()) == ["trial-0", "trial-1", "trial-2"]
    for t in trials:
        assert t.state.name in ("COMPLETE", "PRUNED")
        hp = json.loads(
            (
                ml / "tuning" / f"trial-{t.number}" / "input" / "config" / "hyperparameters.json"
            ).read_text()
        )
        assert hp["mini_batch_size"] == "8" and hp["optimizer"] == t.params["optimizer"]
        assert hp["num_classes"] == "2"  # from the ML root's own hyperparameters.json
        metrics = json.loads(
            (ml / "tuning" / f"trial-{t.number}" / "output" / "metrics.json").read_text()
        )
        assert metrics["status"] == {"COMPLETE": "completed", "PRUNED": "pruned"}[t.state.name]
        assert len(t.intermediate_values) == metrics["epochs_completed"]
    assert trials[0].state.name == "COMPLETE"  # the first trial is never pruned

    summary = json.loads((ml / "output" / "tuning.json").read_text())
    best = summary["best"]
    assert best["value"] == max(t.value for t in trials if t.state.name == "COMPLETE")
    assert summary["epochs"] == sum(len(t.intermediate_values) for t in trials)
    assert (ml / "model" / "hyperparams.json").is_file()  # the best trial's model
    assert (
        json.loads((ml / "model" / "hyperparams.json").read_text())["optimizer"]
        == best["hyperparameters"]["optimizer"]
    )
    assert (ml / "output" / "tuning" / "optimization_history.png").stat().st_size > 0

    from mlflow.tracking import MlflowClient

    client = MlflowClient(odp_home.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name("object-detection").experiment_id
    parents = client.search_runs([experiment], "tags.`odp.idempotency_key` = 'tuning/cli-study'")
    assert len(parents) == 1  # the resumed job reused its parent run
    children = client.search_runs([experiment], f"tags.`{PARENT_TAG}` = '{parents[0].info.run_id}'")
    assert sorted(r.data.tags[STATE_TAG] for r in children) == sorted(
        t.state.name.lower() for t in trials
    )


def test_a_trial_stopped_mid_training_is_resumed_from_its_checkpoint(
    training_data, tmp_path, odp_home
):
    import os
    import signal
    import subprocess
    import sys
    import time

    from process_tree import REPO, children

    ml = layout(tmp_path / "ml", training_data, epochs=3).root
    space = tmp_path / "space.json"
    space.write_text(json.dumps(SPACE["HyperParameterTuningJobConfig"]["ParameterRanges"]))
    cmd = [sys.executable, "-m", "pipeline_lib.cli", "tune", "--ml-root", str(ml)]
    cmd += ["--space", str(space), "--trials", "1", "--study", "stopped", "--no-mlflow"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "plugins")])}
    log = tmp_path / "first.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)  # noqa: S603
    state = ml / "tuning" / "trial-0" / "checkpoints" / "state.json"
    deadline = time.monotonic() + 300
    while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert state.exists(), log.read_text()[-3000:]
    (train,) = children(proc.pid)
    os.kill(train, signal.SIGTERM)  # the trial's training job, as a pod eviction would
    assert proc.wait(timeout=300) == 130
    assert "trial 0 was stopped; run the same command again to resume it" in log.read_text()
    storage = f"sqlite:///{odp_home.home / 'tuning' / 'studies.db'}"
    (trial,) = optuna.load_study(study_name="stopped", storage=storage).trials
    assert trial.state.name == "RUNNING"

    second = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)  # noqa: S603
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-2000:]
    assert "resuming trial 0" in second.stdout
    assert "resuming from checkpoint after epoch" in second.stdout
    (trial,) = optuna.load_study(study_name="stopped", storage=storage).trials
    assert trial.state.name == "COMPLETE" and sorted(trial.intermediate_values) == [0, 1, 2]
