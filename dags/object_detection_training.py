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
from airflow.sdk import Param, dag, get_current_context, task

from odp_airflow.failure import RETRY_POLICY, TIMEOUTS, stage
from odp_airflow.links import publish_mlflow_url
from odp_airflow.params import default_dataset_uri
from pipeline_lib.hyperparameters import BASE_NETWORKS, OPTIMIZERS


@dag(
    dag_id="object_detection_training",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=__doc__,
    tags=["object-detection", "training"],
    # Transient failures retry with backoff; bad input fails at once (odp_airflow.failure).
    # Concurrent runs: airflow.cfg's max_active_runs_per_dag (1 locally), not set here.
    default_args=RETRY_POLICY,
    params={
        "dataset_uri": Param(
            default_dataset_uri(),
            type="string",
            minLength=1,
            title="Dataset URI",
            description="Root of an image+JSON dataset (local folder or s3://bucket/prefix).",
        ),
        "model_name": Param(
            "object-detection",
            type="string",
            pattern="^[A-Za-z0-9_.-]+$",
            title="Registered model name",
            description="MLflow registered model that receives the new version.",
        ),
        "base_network": Param(
            "mobilenet-0.25",
            type="string",
            enum=list(BASE_NETWORKS),
            title="Base network",
            description="SSD backbone: vgg-16 and resnet-50 as SageMaker; mobilenets for CPU.",
        ),
        "epochs": Param(10, type="integer", minimum=1, maximum=1000, title="Epochs"),
        "mini_batch_size": Param(16, type="integer", minimum=1, maximum=512, title="Batch size"),
        "learning_rate": Param(
            0.001, type="number", exclusiveMinimum=0, maximum=1, title="Learning rate"
        ),
        "optimizer": Param("adam", type="string", enum=list(OPTIMIZERS), title="Optimizer"),
        "image_shape": Param(300, type="integer", enum=[300, 384, 512], title="Image size"),
        "use_pretrained_model": Param(
            False,
            type="boolean",
            title="Use pretrained base weights",
            description="ImageNet weights from the local cache (MXNET_HOME); never downloaded.",
        ),
        "hyperparameters": Param(
            {},
            type="object",
            title="More hyperparameters",
            description='Any other SageMaker hyperparameter, e.g. {"lr_scheduler_step": "10,20"}.',
        ),
        "empty_images": Param(
            "reject",
            type="string",
            enum=["reject", "keep"],
            title="Images without boxes",
            description="reject: fail validation; keep: train on them as negatives.",
        ),
        "promotion_margin": Param(
            0.0,
            type="number",
            minimum=0,
            title="Champion margin",
            description="mAP gain over the champion needed to move the champion alias.",
        ),
    },
)
def object_detection_training():
    @task(execution_timeout=TIMEOUTS["resolve_inputs"])
    def resolve_inputs() -> dict:
        from odp_airflow import tasks

        ctx = get_current_context()
        params, dag_id = dict(ctx["params"]), ctx["dag"].dag_id
        return stage(tasks.resolve_inputs)(params, dag_id, ctx["run_id"])

    @task(execution_timeout=TIMEOUTS["validate"])
    def validate(inputs: dict) -> dict:
        from odp_airflow import tasks

        return stage(tasks.validate_dataset)(inputs)

    @task(execution_timeout=TIMEOUTS["convert"])
    def convert(inputs: dict, validation: dict) -> dict:
        from odp_airflow import tasks

        return stage(tasks.convert_dataset)(inputs, validation)

    @task(execution_timeout=TIMEOUTS["train"])
    def train(inputs: dict, validation: dict, converted: dict) -> dict:
        from odp_airflow import tasks

        return publish_mlflow_url(stage(tasks.train_local)(inputs, validation, converted))

    @task(execution_timeout=TIMEOUTS["evaluate"])
    def evaluate(inputs: dict, trained: dict) -> dict:
        from odp_airflow import tasks

        return stage(tasks.evaluate_trained)(inputs, trained)

    @task(execution_timeout=TIMEOUTS["register"])
    def register(inputs: dict, trained: dict, evaluated: dict) -> dict:
        from odp_airflow import tasks

        return publish_mlflow_url(stage(tasks.register_trained)(inputs, trained, evaluated))

    inputs = resolve_inputs()
    validation = validate(inputs)
    converted = convert(inputs, validation)
    trained = train(inputs, validation, converted)
    evaluated = evaluate(inputs, trained)
    register(inputs, trained, evaluated)


object_detection_training()
