"""The whole DAG on S3 (a moto server): the dataset on s3://, ``artifact_root=s3://...``,
credentials and endpoint from the Airflow AWS connection (not the environment)."""

from __future__ import annotations

import json
import time

import pytest
from dag_runs import load_dag, small_conf, task_states

from pipeline_lib.synthetic import SynthConfig, generate

pytestmark = pytest.mark.integration


def test_dag_on_s3_with_credentials_from_the_aws_connection(dag_env, s3, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    local = tmp_path / "dataset"
    generate(local, SynthConfig(images=16, classes=2, seed=31, min_size=96, max_size=128))
    client = s3.client()
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        client.upload_file(str(path), s3.bucket, f"data/{path.relative_to(local).as_posix()}")

    # The endpoint and keys only in the connection: the stages must take them from there.
    connection = {
        "conn_type": "aws",
        "login": "testing",
        "password": "testing",
        "extra": {"endpoint_url": s3.endpoint_url, "region_name": "us-east-1"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_ODP_S3", json.dumps(connection))
    monkeypatch.setenv("ODP_AWS_CONN_ID", "odp_s3")
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)

    monkeypatch.setenv("ODP_ALLOWED_ROOTS", s3.uri("artifacts"))  # the bucket of this test
    conf = small_conf(
        local, "s3-model", epochs=1, mini_batch_size=4, artifact_root=s3.uri("artifacts")
    )
    conf["dataset_uri"] = s3.uri("data")
    started = time.monotonic()
    dagrun = load_dag().test(run_conf=conf)
    seconds = time.monotonic() - started
    assert str(dagrun.state) == "success", task_states(dagrun)
    print(f"[end-to-end] S3 (moto) image+json: {seconds:.1f} s")

    # (the test's own reads go through the environment again)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    run_keys = s3.keys("artifacts/runs/object_detection_training/")
    assert any(k.endswith("/train/model.tar.gz") for k in run_keys), run_keys
    assert any(k.endswith("/evaluate/metrics.json") for k in run_keys)
    assert any(k.endswith("/validate/report/report.json") for k in run_keys)
    assert any(k.startswith("artifacts/cache/recordio/") for k in s3.keys("artifacts/cache/"))
    version = MlflowClient(dag_env.mlflow_tracking_uri).get_model_version_by_alias(
        "s3-model", "candidate"
    )
    assert version.tags["odp.dataset_uri"] == s3.uri("data")


@pytest.mark.parametrize("fmt", ["recordio", "augmented-manifest"])
def test_file_formats_on_s3_validate_and_prepare_training_data(
    dag_env, s3, tmp_path, fmt, monkeypatch
):
    """The two file formats from s3:// up to the training data (later stages are marked
    successful: the image+JSON run above trains from S3 already)."""
    from pipeline_lib.manifest import dataset_to_manifest
    from pipeline_lib.recordio.convert import convert_to_recordio

    local = tmp_path / "dataset"
    generate(local, SynthConfig(images=10, classes=2, seed=32, min_size=96, max_size=128))
    convert_to_recordio(local, local / "rec", progress=False)
    client = s3.client()
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        client.upload_file(str(path), s3.bucket, f"data/{path.relative_to(local).as_posix()}")
    for channel in ("train", "validation"):  # SageMaker's way: s3:// source-refs
        dataset_to_manifest(s3.uri("data"), s3.uri(f"data/{channel}.manifest"), channel=channel)
    uris = {
        "recordio": {
            "train_rec_uri": s3.uri("data/rec_train.rec"),
            "validation_rec_uri": s3.uri("data/rec_validation.rec"),
        },
        "augmented-manifest": {
            "train_manifest_uri": s3.uri("data/train.manifest"),
            "validation_manifest_uri": s3.uri("data/validation.manifest"),
        },
    }[fmt]
    monkeypatch.setenv("ODP_ALLOWED_ROOTS", s3.uri("artifacts"))  # the bucket of this test
    conf = small_conf(local, "s3-formats", artifact_root=s3.uri("artifacts"), input_format=fmt)
    dagrun = load_dag().test(
        run_conf={**conf, **uris}, mark_success_pattern="train|evaluate|register"
    )
    states = task_states(dagrun)
    assert states["validate"] == states["convert"] == "success", states
    keys = s3.keys("artifacts/")
    if fmt == "recordio":
        assert any(k.endswith("/convert/train/train.rec") for k in keys), keys
        assert any(k.endswith("/convert/validation/validation.idx") for k in keys), keys
    else:
        assert any(k.startswith("artifacts/cache/manifest/") for k in keys), keys
        assert any(k.endswith("/train/train.rec") for k in keys), keys
