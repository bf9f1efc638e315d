"""odp_airflow.failure: which errors a retry can fix."""

from __future__ import annotations

import json

import pytest
from airflow.sdk.exceptions import AirflowFailException
from botocore.exceptions import ClientError, EndpointConnectionError

from odp_airflow.failure import RETRY_POLICY, TIMEOUTS, StageFailed, is_permanent, stage
from pipeline_lib.hyperparameters import HyperparameterError


def _s3_error(status: int) -> ClientError:
    response = {"Error": {"Code": str(status)}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, "GetObject")


@pytest.mark.parametrize(
    "exc",
    [
        StageFailed("dataset is invalid"),
        HyperparameterError("momentum", "5", "a number in [0, 0.999]"),
        json.JSONDecodeError("Expecting value", "x", 0),
        FileNotFoundError("no such dataset"),
        PermissionError("read-only"),
        _s3_error(403),
        _s3_error(404),
    ],
)
def test_input_and_configuration_errors_are_permanent(exc) -> None:
    assert is_permanent(exc)


@pytest.mark.parametrize(
    "exc",
    [
        _s3_error(503),
        _s3_error(500),
        _s3_error(429),
        EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
        ConnectionResetError("peer reset"),
        TimeoutError("read timed out"),
        OSError(28, "No space left on device"),
        RuntimeError("odp train exited with 143: AlgorithmError: stopped by SIGTERM"),
    ],
)
def test_infrastructure_errors_are_transient(exc) -> None:
    assert not is_permanent(exc)


def test_stage_fails_permanent_errors_without_retry_and_says_why() -> None:
    def bad() -> None:
        raise HyperparameterError("epochs", "0", "an integer >= 1")

    with pytest.raises(AirflowFailException, match="hyperparameter 'epochs'='0' is invalid"):
        stage(bad)()


def test_stage_lets_transient_errors_through_for_airflow_to_retry() -> None:
    def flaky() -> None:
        raise ConnectionResetError("peer reset")

    with pytest.raises(ConnectionResetError):
        stage(flaky)()
    assert stage(lambda x: x + 1)(1) == 2


def test_every_stage_has_a_timeout_and_retries_back_off() -> None:
    assert set(TIMEOUTS) == {
        "resolve_inputs",
        "plan_retraining",
        "validate",
        "convert",
        "train",
        "evaluate",
        "register",
    }
    assert RETRY_POLICY["retries"] >= 1 and RETRY_POLICY["retry_exponential_backoff"]
