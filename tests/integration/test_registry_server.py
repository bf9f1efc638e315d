"""pipeline_lib.registry against a real ``mlflow server`` process (HTTP, proxied artifacts)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline_lib import registry

pytestmark = pytest.mark.integration


def _model_dir(folder: Path, payload: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "model_algo_1-symbol.json").write_text('{"nodes": []}')
    (folder / "model_algo_1-0000.params").write_text(payload)
    (folder / "class_map.json").write_text(json.dumps({"0": "circle"}))
    (folder / "hyperparams.json").write_text(json.dumps({"num_classes": "1"}))
    return folder


def test_register_promote_resolve_through_server(mlflow_server, odp_home, tmp_path: Path) -> None:
    uri = mlflow_server.url
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"mAP": 0.61, "AP50": 0.61}))

    first = registry.register_model(
        _model_dir(tmp_path / "m1", "one"),
        "srv-model",
        metrics_path=metrics,
        params={"epochs": 1},
        epoch_metrics=[{"epoch": 0, "validation_mAP": 0.61}],
        tracking_uri=uri,
        idempotency_key="object_detection_training/run-1",
    )
    assert first["created"] and first["version"] == 1 and first["aliases"] == ["candidate"]
    assert first["source"].startswith("models:/m-")  # the run's pyfunc (a LoggedModel)
    model = registry.get_client(uri).get_logged_model(first["source"][len("models:/") :])
    assert model.artifact_location.startswith("mlflow-artifacts:")  # uploaded through the server

    retry = registry.register_model(
        tmp_path / "m1",
        "srv-model",
        tracking_uri=uri,
        idempotency_key="object_detection_training/run-1",
    )
    assert (retry["created"], retry["version"]) == (False, 1)

    assert registry.promote_if_better("srv-model", 1, tracking_uri=uri)["promoted"]
    second = registry.register_model(
        _model_dir(tmp_path / "m2", "two"),
        "srv-model",
        metrics={"mAP": 0.5},
        tracking_uri=uri,
        idempotency_key="object_detection_training/run-2",
    )
    assert second["version"] == 2
    assert not registry.promote_if_better("srv-model", 2, tracking_uri=uri)["promoted"]
    champion = registry.get_champion("srv-model", tracking_uri=uri)
    assert champion["version"] == 1 and champion["metrics"]["mAP"] == 0.61

    local = registry.resolve_model_uri("models:/srv-model@champion", tracking_uri=uri)
    import tarfile

    with tarfile.open(local) as tar:
        member = tar.extractfile("model_algo_1-0000.params")
        assert member is not None and member.read() == b"one"
    # nothing was written to the default local store
    assert not (odp_home.home / "mlflow" / "mlflow.db").exists()
    # the files really are on the server side
    assert any(mlflow_server.artifacts_destination.rglob("model.tar.gz"))


def test_odp_register_cli_against_server(mlflow_server, odp_home, tmp_path: Path) -> None:
    model = _model_dir(tmp_path / "m", "cli")
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"metrics": {"mAP": 0.2}}))
    env = {**__import__("os").environ, "MLFLOW_TRACKING_URI": mlflow_server.url}
    out = subprocess.run(  # noqa: S603  test-built argv, no shell
        [
            sys.executable,
            "-m",
            "pipeline_lib.cli",
            "register",
            str(model),
            "--name",
            "srv-cli",
            "--metrics",
            str(metrics),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["name"] == "srv-cli" and info["aliases"] == ["candidate"]
    assert (
        registry.get_candidate("srv-cli", tracking_uri=mlflow_server.url)["metrics"]["mAP"] == 0.2
    )
