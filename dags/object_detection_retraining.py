"""
### Object detection retraining (scheduled and data-triggered)

Retrains the SSD detector of `model_name`, seeded from its registered **champion**
(`models:/<model_name>@champion`; from scratch while there is none), with the same tasks
as `object_detection_training` (validate, convert, train, evaluate, register).

**When it runs** (`AssetOrTimeSchedule`, one run at a time, no catch-up):

* **New data**: an event on the Asset `odp-training-data` (the training-data location,
  `ODP_TRAINING_DATA_URI`). Its `extra` says what to train on:
  `{"uri": "s3://bucket/dataset", "content_hash": "..."}` (or any data Param, e.g.
  `input_format` and `train_rec_uri`). When several events arrive before a run starts, the
  newest wins. Post one with `POST /api/v2/assets/events` (`asset_id`, `extra`).
* **On schedule**: the cron `ODP_RETRAINING_CRON` (default Mondays 03:00 UTC) retrains on
  the configured data only when its content hash differs from the one the champion was
  trained on; otherwise `plan_retraining` ends the run early and says so in its log.

**Outputs**: a new model version with alias `candidate` (`champion` when it beats the
current one by `promotion_margin`). When the champion moves, `register` updates the Asset
`models:/<model_name>@champion` (URI `mlflow-model://<model_name>/champion`) so a
deployment DAG can schedule on it.
"""

from __future__ import annotations

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, dag

from odp_airflow.assets import TRAINING_DATA, retraining_cron
from odp_airflow.failure import RETRY_POLICY
from odp_airflow.params import retraining_params
from odp_airflow.pipeline import plan_retraining, resolve_inputs, training_chain


@dag(
    dag_id="object_detection_retraining",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable(retraining_cron(), timezone="UTC"),
        assets=[TRAINING_DATA],
    ),
    # No start_date: unpausing waits for the next cron time instead of running the last
    # one missed (CronTriggerTimetable's run_immediately=False applies only without it).
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["object-detection", "retraining"],
    default_args={**RETRY_POLICY, "owner": "ml-platform"},
    params=retraining_params(),
)
def object_detection_retraining():
    training_chain(resolve_inputs(plan_retraining()))


object_detection_retraining()
