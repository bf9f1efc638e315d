"""
### Object detection training (SageMaker-compatible SSD)

Validates a dataset, converts it to RecordIO, trains an SSD detector (the SageMaker
built-in *Object Detection* algorithm, rebuilt on MXNet/GluonCV), measures VOC07 mAP on
the validation channel, and registers the model in MLflow with the alias `candidate`
(and `champion` when it beats the current champion by `promotion_margin`).

**Dataset**: the SageMaker image+JSON layout: `train/`, `validation/`,
`train_annotation/`, `validation_annotation/` (a local folder or `s3://` URI).
Make one with `odp synth OUT --images 200 --classes 3`.

**Outputs**: every task writes under `{artifact_root}/runs/{dag_id}/{run_id}/{task}/`.
A dataset that fails validation stops the run at `validate`, with the first findings in
the task log and the full `report.json` kept.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag

from odp_airflow.failure import RETRY_POLICY
from odp_airflow.params import training_params
from odp_airflow.pipeline import resolve_inputs, training_chain


@dag(
    dag_id="object_detection_training",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=__doc__,
    tags=["object-detection", "training"],
    # Transient failures retry with backoff; bad input fails at once (odp_airflow.failure).
    # Concurrent runs: airflow.cfg's max_active_runs_per_dag (1 locally), not set here.
    default_args={**RETRY_POLICY, "owner": "ml-platform"},
    params=training_params(),
)
def object_detection_training():
    training_chain(resolve_inputs())


object_detection_training()
