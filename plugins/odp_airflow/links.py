"""Links from a task to what it made in MLflow (a run, a model version).

A task publishes the URL as the XCom :data:`MLFLOW_URL_XCOM`; the ``odp`` Airflow plugin
(``plugins/odp_links.py``) shows it as the task's "MLflow" extra link in the UI.
"""

from __future__ import annotations

from typing import Any

#: XCom key of a task's MLflow page.
MLFLOW_URL_XCOM = "mlflow_url"


def publish_mlflow_url(result: dict[str, Any]) -> dict[str, Any]:
    """Push ``result["mlflow_url"]`` (when there is one) for the task's extra link."""
    url = result.get("mlflow_url")
    if url:
        from airflow.sdk import get_current_context

        get_current_context()["ti"].xcom_push(key=MLFLOW_URL_XCOM, value=url)
    return result
