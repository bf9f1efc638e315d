"""S3 credentials and endpoint for a task from the Airflow AWS connection.

The connection ``ODP_AWS_CONN_ID`` (default ``aws_default``), when it exists, is exported as
the standard AWS variables for the duration of the task's stage (and so for the training
subprocess it starts): login -> ``AWS_ACCESS_KEY_ID``, password -> ``AWS_SECRET_ACCESS_KEY``,
extra ``endpoint_url`` -> ``AWS_ENDPOINT_URL`` (S3-compatible stores such as MinIO),
``region_name`` -> ``AWS_DEFAULT_REGION``, ``aws_session_token`` -> ``AWS_SESSION_TOKEN``.
Without the connection, boto3 reads the environment as usual.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

_EXTRA_VARS = {
    "endpoint_url": "AWS_ENDPOINT_URL",
    "region_name": "AWS_DEFAULT_REGION",
    "aws_session_token": "AWS_SESSION_TOKEN",
}


def connection_env(conn: Any) -> dict[str, str]:
    """The AWS variables an Airflow connection defines (only what it sets)."""
    env = {}
    if conn.login:
        env["AWS_ACCESS_KEY_ID"] = conn.login
    if conn.password:
        env["AWS_SECRET_ACCESS_KEY"] = conn.password
    extra = conn.extra_dejson or {}
    for key, var in _EXTRA_VARS.items():
        if extra.get(key):
            env[var] = str(extra[key])
    return env


def _connection() -> Any | None:
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return Connection.get(os.environ.get("ODP_AWS_CONN_ID", "aws_default"))
    except AirflowNotFoundException:
        return None


@contextlib.contextmanager
def aws_connection_env() -> Iterator[None]:
    """The connection's AWS variables set while the block runs, then restored."""
    conn = _connection()
    env = connection_env(conn) if conn is not None else {}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
