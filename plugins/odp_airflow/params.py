"""The DAGs' run-time settings as typed Params, one builder per form section.

Defaults are computed cheaply at parse time (no heavy imports, no I/O). A DAG takes the
sections it needs (``training_params()`` is the training DAG's whole form); a new setting
goes into the section a user would look for it in.
"""

from __future__ import annotations

import os

from airflow.sdk import Param

from pipeline_lib.hyperparameters import BASE_NETWORKS, MODEL_FORMATS, OPTIMIZERS


def default_dataset_uri() -> str:
    """The demo dataset location under ODP_HOME (what ``make demo`` generates)."""
    from pipeline_lib.settings import load_settings

    return os.environ.get("ODP_DEFAULT_DATASET", str(load_settings().home / "demo" / "dataset"))


def data_params() -> dict[str, Param]:
    """Where the data is, in which of SageMaker's three formats, and how it is checked.

    The URIs of the formats not chosen are null, not "": the form flags an empty string as
    a missing value and refuses to trigger."""
    return {
        "input_format": Param(
            "image+json",
            type="string",
            enum=["image+json", "recordio", "augmented-manifest"],
            values_display={
                "image+json": "Images + JSON annotations (a dataset folder)",
                "recordio": "RecordIO (.rec per channel)",
                "augmented-manifest": "Augmented manifest (JSON Lines per channel)",
            },
            title="Input format",
            description="Which URIs below are read: the dataset root, the two .rec files, "
            "or the two manifests.",
        ),
        "dataset_uri": Param(
            default_dataset_uri(),
            type="string",
            title="Dataset URI (image+JSON)",
            description="Root with train/, validation/, train_annotation/, "
            "validation_annotation/ (local folder or s3://bucket/prefix).",
        ),
        "train_rec_uri": Param(
            None,
            type=["null", "string"],
            title="Train .rec (RecordIO)",
            description="The train channel's .rec (its .idx beside it is used when present).",
        ),
        "validation_rec_uri": Param(
            None,
            type=["null", "string"],
            title="Validation .rec (RecordIO)",
            description="Scored for mAP.",
        ),
        "train_manifest_uri": Param(
            None,
            type=["null", "string"],
            title="Train manifest (augmented manifest)",
            description="JSON Lines; source-refs are s3:// URIs or paths relative to a local "
            "manifest's folder.",
        ),
        "validation_manifest_uri": Param(
            None, type=["null", "string"], title="Validation manifest (augmented manifest)"
        ),
        "attribute_names": Param(
            ["source-ref", "bounding-box"],
            type="array",
            items={"type": "string"},
            minItems=2,
            maxItems=2,
            title="Manifest attribute names",
            description="SageMaker's AttributeNames, in order: the image reference, then the "
            "label attribute (one per line).",
        ),
        "empty_images": Param(
            "reject",
            type="string",
            enum=["reject", "keep"],
            values_display={
                "reject": "Reject: validation fails",
                "keep": "Keep as negatives",
            },
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
        "model_format": Param(
            "gluoncv",
            type="string",
            enum=list(MODEL_FORMATS),
            title="Model format",
            description="gluoncv: GluonCV's SSD (every base network). sagemaker: SageMaker's "
            "own graph (MXNet example/ssd; vgg-16 and resnet-50), a model.tar.gz SageMaker "
            "hosts and fine-tunes. A base_model's own format wins.",
        ),
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
        # null, not {}: Airflow 3's form mishandles object Params with {} defaults (#56915)
        "hyperparameters": Param(
            None,
            type=["object", "null"],
            title="More hyperparameters",
            description='Any other SageMaker hyperparameter, e.g. {"lr_scheduler_step": "10,20"}.',
        ),
    }


def compute_params() -> dict[str, Param]:
    """Where training runs. The cluster itself (namespace, image, GPUs per pod, ...) is the
    deployment's Airflow connection and ``odp_kubernetes`` Variable, not a Param."""
    return {
        "compute": Param(
            "local",
            type="string",
            enum=["local", "kubernetes"],
            title="Training compute",
            description="local: a subprocess on the worker (CPU); kubernetes: GPU pods "
            "(one per host) configured by the odp_kubernetes Variable.",
        ),
        "instance_count": Param(
            1,
            type="integer",
            minimum=1,
            maximum=64,
            title="Hosts",
            description="Training hosts (SageMaker's InstanceCount); more than 1 needs kubernetes.",
        ),
    }


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
            maximum=1,
            title="Champion margin",
            description="mAP gain over the champion needed to move the champion alias.",
        ),
        "base_model": Param(
            None,  # not "": the v3 form treats an empty string as a missing required value
            type=["null", "string"],
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


#: The tuning DAG's default space: SageMaker's tunable hyperparameters of Object Detection.
DEFAULT_SEARCH_SPACE = {
    "ContinuousParameterRanges": [
        {
            "Name": "learning_rate",
            "MinValue": "0.0001",
            "MaxValue": "0.01",
            "ScalingType": "Logarithmic",
        },
        {
            "Name": "momentum",
            "MinValue": "0.8",
            "MaxValue": "0.99",
            "ScalingType": "ReverseLogarithmic",
        },
        {
            "Name": "weight_decay",
            "MinValue": "0.00001",
            "MaxValue": "0.001",
            "ScalingType": "Logarithmic",
        },
    ],
    "IntegerParameterRanges": [
        {"Name": "mini_batch_size", "MinValue": "8", "MaxValue": "32", "ScalingType": "Auto"}
    ],
    "CategoricalParameterRanges": [{"Name": "optimizer", "Values": ["sgd", "adam", "rmsprop"]}],
}


def tuning_params() -> dict[str, Param]:
    """The search: space, budget, sampler, pruner, which study to continue, and how many
    trials train at once."""
    from pipeline_lib.tuning.slots import DEFAULT_PARALLEL_TRIALS, MAX_PARALLEL_TRIALS

    return {
        "search_space": Param(
            DEFAULT_SEARCH_SPACE,
            type="object",
            title="Search space",
            description="SageMaker ParameterRanges (or a whole HyperParameterTuningJobConfig "
            "or CreateHyperParameterTuningJob request); objective validation:mAP.",
        ),
        "max_trials": Param(8, type="integer", minimum=1, maximum=500, title="Trials"),
        "sampler": Param(
            "tpe",
            type="string",
            enum=["tpe", "random"],
            title="Search strategy",
            description="tpe: Bayesian (TPE), later trials learn from earlier ones; random.",
        ),
        "pruner": Param(
            "median",
            type="string",
            enum=["median", "hyperband", "none"],
            title="Early stopping of bad trials",
            description="Stop a trial whose per-epoch validation mAP falls behind the others.",
        ),
        "prune_startup_trials": Param(
            2, type="integer", minimum=0, title="Median: trials finished before pruning"
        ),
        "prune_warmup_epochs": Param(
            None,
            type=["null", "integer"],
            minimum=0,
            title="Median: epochs every trial runs",
            description="Empty: a quarter of a trial's epochs (of an even share of the "
            "epoch budget), 1 to 5; the first epochs' mAPs are all near 0.",
        ),
        "epoch_budget": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            title="Epoch budget",
            description="Total training epochs of all trials (empty: the space's "
            "ResourceLimits.MaxTotalTrainingEpochs, else none). Each trial trains its share, "
            "pruned trials' unspent epochs fund longer ones; the total is never exceeded. "
            "A continued study keeps its budget.",
        ),
        "max_trial_epochs": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            title="Most epochs of one trial",
            description="With an epoch budget: the longest a trial trains (empty: the "
            "space's ResourceLimits.MaxTrainingEpochsPerJob, else the epochs hyperparameter).",
        ),
        "study_name": Param(
            "",
            type="string",
            pattern="^[A-Za-z0-9_.=-]*$",
            title="Study to continue",
            description="Empty: a new study for this run. A name: continue that study "
            "(its finished trials count towards Trials).",
        ),
        "tuning_seed": Param(None, type=["null", "integer"], title="Sampler seed"),
        "max_parallel_trials": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            maximum=MAX_PARALLEL_TRIALS,
            title="Trials at once",
            description="How many trials of this run train at the same time. Empty: the "
            "space's ResourceLimits.MaxParallelTrainingJobs, else "
            f"{DEFAULT_PARALLEL_TRIALS}. At most {MAX_PARALLEL_TRIALS}.",
        ),
    }


def artifact_root_params() -> dict[str, Param]:
    """Where the run writes: left outside the sections on purpose (Airflow 3's form shows
    nothing when every Param has a section, apache/airflow#56870)."""
    from pipeline_lib.settings import load_settings

    return {
        "artifact_root": Param(
            str(load_settings().artifact_root),
            type="string",
            minLength=1,
            title="Artifact root",
            description="Run outputs go to {artifact_root}/runs/{dag_id}/{run_id}/ "
            "(local folder or s3://bucket/prefix).",
        ),
    }


#: Form sections in the order the form shows them, with the builder of each.
SECTIONS = {
    "Data": data_params,
    "Model": model_params,
    "Training": training_hyperparameter_params,
    "Compute": compute_params,
    "Registry": registry_params,
}


def in_section(params: dict[str, Param], section: str) -> dict[str, Param]:
    """The same Params, shown under ``section`` in the trigger form (``schema.section``)."""
    for param in params.values():
        param.schema["section"] = section
    return params


def sectioned_form(sections: dict) -> dict[str, Param]:
    """A DAG's form: each builder's Params under its section, then ``artifact_root``
    outside every section."""
    form: dict[str, Param] = {}
    for section, builder in sections.items():
        form.update(in_section(builder(), section))
    return {**form, **artifact_root_params()}


def training_params() -> dict[str, Param]:
    """Every Param of the training DAG's trigger form, section by section."""
    return sectioned_form(SECTIONS)


def tuning_dag_params() -> dict[str, Param]:
    """The tuning DAG's form: the data, the model, the hyperparameters every trial shares
    (the searched ones come from the space), the search, the registry."""
    sections = {
        "Data": data_params,
        "Model": model_params,
        "Training": training_hyperparameter_params,
        "Tuning": tuning_params,
        "Registry": registry_params,
    }
    return sectioned_form(sections)


def retraining_params() -> dict[str, Param]:
    """The retraining DAG's form: the training form, seeded from the champion by default."""
    form = training_params()
    form["base_model"] = Param(
        "champion",
        type="string",
        title="Start from",
        description="champion: models:/<model name>@champion when there is one (else from "
        "scratch); or a models:/ URI; empty: from scratch.",
        section="Registry",
    )
    return form
