"""The failure policy, seen through real DAG runs (``dag.test()``): bad input fails a task
once, with the reason; a transient storage outage is retried and the run goes on.

Stages after the one under test are marked successful instead of run (``mark_success``),
so each case costs seconds, not a training run.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from dag_runs import load_dag, small_conf, task_states, tries
from servers import FlakyS3Proxy

from pipeline_lib.synthetic import SynthConfig, generate

pytestmark = pytest.mark.integration


@pytest.fixture
def dataset(tmp_path):
    root = tmp_path / "dataset"
    generate(root, SynthConfig(images=12, classes=2, seed=8))
    return root


def _task_error(capfd) -> str:
    """The ``AirflowFailException`` line(s) the failed task logged (Airflow logs to stderr)."""
    captured = capfd.readouterr()
    lines = (captured.out + captured.err).splitlines()
    return "\n".join(x for x in lines if x.startswith("airflow.sdk.exceptions.AirflowFail"))


def test_invalid_hyperparameter_fails_the_first_task_once(dag_env, dataset, capfd):
    conf = small_conf(dataset, "policy-hp", hyperparameters={"momentum": "5"})
    dagrun = load_dag().test(run_conf=conf, mark_success_pattern="train|evaluate|register")
    states = task_states(dagrun)
    assert states["resolve_inputs"] == "failed", states
    assert tries(dagrun)["resolve_inputs"] == 1
    assert states["validate"] == "upstream_failed"
    assert "hyperparameter 'momentum'='5' is invalid" in _task_error(capfd)


def test_training_client_error_fails_without_retry(dag_env, dataset, tmp_path, monkeypatch, capfd):
    """Pretrained weights asked for but absent: SageMaker's ClientError, not worth a retry."""
    monkeypatch.setenv("MXNET_HOME", str(tmp_path / "empty-mxnet-home"))
    conf = small_conf(dataset, "policy-client", use_pretrained_model=True)
    dagrun = load_dag().test(run_conf=conf, mark_success_pattern="evaluate|register")
    states = task_states(dagrun)
    assert states["train"] == "failed", states
    assert tries(dagrun)["train"] == 1
    assert states["validate"] == states["convert"] == "success"
    error = _task_error(capfd)
    assert "odp train failed: ClientError" in error and "empty-mxnet-home" in error, error


def test_transient_storage_error_is_retried(dag_env, dataset, s3, monkeypatch):
    """S3 answers 503 to the conversion cache for longer than boto3's own retries last: the
    convert task fails, Airflow retries it, and the run completes."""
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    proxy = FlakyS3Proxy(s3.endpoint_url, match="/cache/recordio/", failures=2)
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        monkeypatch.setenv("ODP_ARTIFACT_ROOT", s3.uri("odp"))
        dag = load_dag()
        dag.task_dict["convert"].retry_delay = timedelta(seconds=1)
        dag.task_dict["convert"].retry_exponential_backoff = False
        conf = small_conf(dataset, "policy-s3")
        dagrun = dag.test(run_conf=conf, mark_success_pattern="train|evaluate|register")
    finally:
        proxy.close()
    states = task_states(dagrun)
    assert proxy.failed == 2, proxy.failed_requests
    assert states["convert"] == "success", states
    assert tries(dagrun)["convert"] == 2, proxy.failed_requests
    assert str(dagrun.state) == "success"
    assert any(k.endswith("/_SUCCESS") for k in s3.keys("odp/cache/recordio/"))
