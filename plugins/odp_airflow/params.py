"""The DAGs' run-time settings as typed Params, one builder per form section.

Defaults are computed cheaply at parse time (no heavy imports, no I/O). A DAG takes the
sections it needs (``training_params()`` is the training DAG's whole form); a new setting
goes into the section a user would look for it in.
"""

from __future__ import annotations

import os

from airflow.sdk import Param

from pipeline_lib.hyperparameters import BASE_NETWORKS, OPTIMIZERS


def default_dataset_uri() -> str:
    """The demo dataset location under ODP_HOME (what ``make demo`` generates)."""
    from pipeline_lib.settings import load_settings

    return os.environ.get("ODP_DEFAULT_DATASET", str(load_settings().home / "demo" / "dataset"))


def data_params() -> dict[str, Param]:
    """Where the data is and how it is checked."""
    return {
        "dataset_uri": Param(
            default_dataset_uri(),
            type="string",
            minLength=1,
            title="Dataset URI",
            description="Root of an image+JSON dataset (local folder or s3://bucket/prefix).",
        ),
        "empty_images": Param(
            "reject",
            type="string",
            enum=["reject", "keep"],
            title="Images without boxes",
            description="reject: fail validation; keep: train on them as negatives.",
        ),
    }


def model_params() -> dict[str, Param]:
    """The network: backbone, input size, starting weights."""
    return {
        "base_network": Param(
            "mobilenet-0.25",
            type="string",
            enum=list(BASE_NETWORKS),
            title="Base network",
            description="SSD backbone: vgg-16 and resnet-50 as SageMaker; mobilenets for CPU.",
        ),
        "image_shape": Param(300, type="integer", enum=[300, 384, 512], title="Image size"),
        "use_pretrained_model": Param(
            False,
            type="boolean",
            title="Use pretrained base weights",
            description="ImageNet weights from the local cache (MXNET_HOME); never downloaded.",
        ),
    }


def training_hyperparameter_params() -> dict[str, Param]:
    """The optimisation: epochs, batch, learning rate, optimizer, and any other
    SageMaker hyperparameter."""
    return {
        "epochs": Param(10, type="integer", minimum=1, maximum=1000, title="Epochs"),
        "mini_batch_size": Param(16, type="integer", minimum=1, maximum=512, title="Batch size"),
        "learning_rate": Param(
            0.001, type="number", exclusiveMinimum=0, maximum=1, title="Learning rate"
        ),
        "optimizer": Param("adam", type="string", enum=list(OPTIMIZERS), title="Optimizer"),
        "hyperparameters": Param(
            {},
            type="object",
            title="More hyperparameters",
            description='Any other SageMaker hyperparameter, e.g. {"lr_scheduler_step": "10,20"}.',
        ),
    }


def compute_params() -> dict[str, Param]:
    """Where training runs."""
    return {}


def registry_params() -> dict[str, Param]:
    """Which registered model receives the result, and when it becomes champion."""
    return {
        "model_name": Param(
            "object-detection",
            type="string",
            pattern="^[A-Za-z0-9_.-]+$",
            title="Registered model name",
            description="MLflow registered model that receives the new version.",
        ),
        "promotion_margin": Param(
            0.0,
            type="number",
            minimum=0,
            title="Champion margin",
            description="mAP gain over the champion needed to move the champion alias.",
        ),
        "base_model": Param(
            "",
            type="string",
            title="Base model (incremental training)",
            description=(
                "Seed the weights from models:/NAME@ALIAS, models:/NAME/VERSION or a "
                "model.tar.gz URI (same base network and classes); empty trains from scratch."
            ),
        ),
        "allow_class_change": Param(
            False,
            type="boolean",
            title="Allow another class map",
            description="Seed from a base model whose class names differ (shared names kept).",
        ),
    }


def training_params() -> dict[str, Param]:
    """Every Param of the training DAG's trigger form, section by section."""
    return {
        **data_params(),
        **model_params(),
        **training_hyperparameter_params(),
        **compute_params(),
        **registry_params(),
    }
