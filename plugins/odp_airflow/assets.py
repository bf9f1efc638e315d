"""The Assets the DAGs schedule on and publish, and the retraining schedule.

* :data:`TRAINING_DATA`: the training-data location (``ODP_TRAINING_DATA_URI``, default
  the demo dataset). Post an event for it, with ``{"uri": ..., "content_hash": ...}`` in its
  ``extra``, when new labelled data lands: ``object_detection_retraining`` starts.
* :func:`champion_asset`: one Asset per registered model, updated by the ``register`` task
  when the ``champion`` alias moves (a deployment DAG schedules on it), published through
  the alias :data:`CHAMPION_ALIAS` because the model name is known only at run time.
"""

from __future__ import annotations

import os
from pathlib import Path

from airflow.sdk import Asset, AssetAlias

from .params import default_dataset_uri

#: Cron of the scheduled retraining (``ODP_RETRAINING_CRON``): Mondays 03:00 UTC by default.
DEFAULT_RETRAINING_CRON = "0 3 * * 1"


def retraining_cron() -> str:
    """The retraining DAG's cron expression (``ODP_RETRAINING_CRON``)."""
    return os.environ.get("ODP_RETRAINING_CRON", DEFAULT_RETRAINING_CRON).strip()


def training_data_uri() -> str:
    """The training-data location as an Asset URI (``file://`` for a local folder)."""
    uri = os.environ.get("ODP_TRAINING_DATA_URI") or default_dataset_uri()
    if "://" in uri:
        return uri
    return Path(uri).expanduser().resolve().as_uri()


TRAINING_DATA = Asset(name="odp-training-data", uri=training_data_uri())
CHAMPION_ALIAS = AssetAlias(name="odp-champion")


def champion_asset(model_name: str) -> Asset:
    """The Asset updated each time ``model_name``'s champion moves."""
    return Asset(name=f"models:/{model_name}@champion", uri=f"mlflow-model://{model_name}/champion")
