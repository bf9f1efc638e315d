"""The ``odp`` Airflow plugin: an "MLflow" extra link on every task that made something there.

The train and evaluate tasks link to the MLflow run (live metrics while it trains, then the
evaluation's), the register task to the model version it registered. Tasks publish the URL as an XCom
(:mod:`odp_airflow.links`); the API server reads it back here when the UI asks for links.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin
from airflow.sdk import BaseOperatorLink

from odp_airflow.links import MLFLOW_URL_XCOM


class MLflowLink(BaseOperatorLink):
    """The MLflow page a task published, or no link."""

    name = "MLflow"

    def get_link(self, operator, *, ti_key) -> str:  # noqa: ANN001  (Airflow's signature)
        from airflow.serialization.definitions.operatorlink import XComOperatorLink

        return XComOperatorLink(name=self.name, xcom_key=MLFLOW_URL_XCOM).get_link(
            operator, ti_key=ti_key
        )


class OdpPlugin(AirflowPlugin):
    """Registered by Airflow from the plugins folder."""

    name = "odp"
    global_operator_extra_links = [MLflowLink()]
