"""The one failure policy of every task: what a retry can fix, and what it cannot.

* **Permanent** (fail at once, no retry, the reason in the task's error): invalid data or
  configuration. That is :class:`StageFailed`, every ``ValueError`` (the library's input
  errors all are: annotations, RecordIO, manifests, conversion, hyperparameters, JSON), a
  missing or unreadable input (``FileNotFoundError``, ``NotADirectoryError``,
  ``IsADirectoryError``, ``PermissionError``), an S3 client error with a 4xx status other
  than 408/429, and a training job that reports ``ClientError`` (SageMaker's "your input").
* **Transient** (everything else: network and storage hiccups, S3 5xx, timeouts, a training
  job killed or failing with ``AlgorithmError``): re-raised, so Airflow retries the task with
  exponential backoff (:data:`RETRY_POLICY`, the DAGs' ``default_args``).

Tasks apply it with :func:`stage` (a decorator); the library stays free of Airflow.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

#: default_args of every DAG: transient failures retry with backoff.
RETRY_POLICY: dict[str, Any] = {
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
}

_PERMANENT_OS_ERRORS = (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)
_RETRYABLE_HTTP = {408, 429}
# Configuration a retry cannot fix, told apart by class name (botocore is not imported).
_PERMANENT_NAMES = {
    "NoCredentialsError",
    "PartialCredentialsError",
    "InvalidS3AddressingStyleError",
}


class StageFailed(Exception):
    """A stage failed for a reason that a retry cannot fix (bad data, bad configuration)."""


def is_permanent(exc: BaseException) -> bool:
    """Whether retrying cannot help (see the module docstring for the rules)."""
    if isinstance(exc, (StageFailed, ValueError, *_PERMANENT_OS_ERRORS)):
        return True
    if {cls.__name__ for cls in type(exc).__mro__} & _PERMANENT_NAMES:
        return True
    status = _http_status(exc)
    return status is not None and 400 <= status < 500 and status not in _RETRYABLE_HTTP


def _http_status(exc: BaseException) -> int | None:
    """The HTTP status of a botocore ``ClientError`` (without importing botocore)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return status if isinstance(status, int) else None


def describe(exc: BaseException) -> str:
    """One line for the task's error: the reason first, the exception type when it helps."""
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, StageFailed):
        return text
    return f"{type(exc).__name__}: {text}"


def stage(fn: F) -> F:
    """Run a task callable under the policy: permanent errors fail without retries.

    The stage sees the Airflow AWS connection's credentials and endpoint, when there is
    one (:mod:`odp_airflow.aws`)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from .aws import aws_connection_env

        try:
            with aws_connection_env():
                return fn(*args, **kwargs)
        except Exception as exc:
            if not is_permanent(exc):
                raise
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(describe(exc)) from exc

    return wrapper  # type: ignore[return-value]


#: execution_timeout per stage: a backstop, never the normal way a task ends. Training stops
#: itself first (``max_runtime_seconds``, saving the best model); its limit is SageMaker's
#: largest MaxRuntimeInSeconds default (1 day) times three.
TIMEOUTS: dict[str, timedelta] = {
    "resolve_inputs": timedelta(minutes=10),
    "plan_retraining": timedelta(hours=2),  # hashes the data when no event names it
    "validate": timedelta(hours=6),
    "convert": timedelta(hours=6),
    "train": timedelta(days=3),
    "evaluate": timedelta(hours=6),
    "register": timedelta(minutes=30),
}
