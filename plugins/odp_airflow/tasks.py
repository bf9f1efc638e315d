"""The pipeline stages as plain functions the DAG's tasks call (no Airflow objects inside).

Each takes and returns small JSON-able dicts (XCom); large things travel as URIs under
the run root. Every stage is idempotent: a retry overwrites its own outputs atomically.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from .failure import StageFailed
from .runs import RunRoot, check_instance_count

log = logging.getLogger(__name__)

# DAG Params that are SageMaker hyperparameters (the rest configure the pipeline).
HYPERPARAMETER_PARAMS = (
    "base_network",
    "epochs",
    "mini_batch_size",
    "learning_rate",
    "image_shape",
    "use_pretrained_model",
    "optimizer",
    "model_format",
)


def resolve_inputs(params: dict[str, Any], dag_id: str, run_id: str) -> dict[str, Any]:
    """Normalise the run's Params into the inputs every later stage reads."""
    from pipeline_lib.hyperparameters import check_user_values
    from pipeline_lib.registry.versions import check_model_name
    from pipeline_lib.settings import confine_artifact_root, load_settings

    from .formats import resolve_data

    data = resolve_data(params)  # input_format and its URIs, combinations checked
    settings = load_settings()
    try:  # whoever triggers the run chooses it, and the worker writes there
        artifact_root = confine_artifact_root(params.get("artifact_root") or settings.artifact_root)
        check_model_name(params.get("model_name"))
    except ValueError as exc:
        raise StageFailed(f"Param {exc}") from None
    root = RunRoot(artifact_root, dag_id, run_id)
    hyper = {k: params[k] for k in HYPERPARAMETER_PARAMS if params.get(k) is not None}
    hyper["use_pretrained_model"] = int(bool(hyper.get("use_pretrained_model", 0)))
    extra = params.get("hyperparameters") or {}
    if not isinstance(extra, dict):
        raise StageFailed("Param 'hyperparameters' must be a JSON object of name -> value")
    hyper.update(extra)
    # The parser training uses, now: a typo must not wait for validation and conversion.
    try:
        check_user_values(hyper)  # before str(): a nested value is refused, not stringified
    except ValueError as exc:
        raise StageFailed(f"Param 'hyperparameters': {exc}") from None
    hyper = {k: str(v) for k, v in hyper.items()}
    inputs = {
        **data,
        "artifact_root": root.artifact_root,
        "run_root": root.uri,
        "dag_id": dag_id,
        "run_id": run_id,
        "model_name": params["model_name"],
        "empty_images": params.get("empty_images", "reject"),
        "promotion_margin": _number(params, "promotion_margin", 0.0, 1.0),
        "hyperparameters": hyper,
        "compute": params.get("compute", "local"),
        "instance_count": params.get("instance_count", 1),
        "allow_class_change": bool(params.get("allow_class_change", False)),
    }
    _check_compute(inputs["compute"], inputs["instance_count"])
    if params.get("content_hash"):  # known to the retraining DAG; recorded at registration
        inputs["content_hash"] = str(params["content_hash"])
    inputs["base_model"] = resolve_base_model_input(
        params.get("base_model"),
        data["dataset_uri"] if data["input_format"] == "image+json" else None,
        hyper,
        run_root=root.uri,
        allow_class_change=inputs["allow_class_change"],
    )
    log.info("run root: %s", root.uri)
    return inputs


def _number(params: dict[str, Any], name: str, lo: float, hi: float) -> float:
    """A numeric Param through the one bounded parser (:mod:`pipeline_lib.bounds`)."""
    from pipeline_lib import bounds

    try:
        return bounds.parse_float(params.get(name, lo), f"Param '{name}'", minimum=lo, maximum=hi)
    except bounds.NumberError as exc:
        raise StageFailed(str(exc)) from None


def _check_compute(compute: Any, instance_count: Any) -> None:
    """Refuse, in the first task, a compute that cannot run the job (naming the Params)."""
    if compute not in ("local", "kubernetes"):
        raise StageFailed(f"Param 'compute' must be local or kubernetes, got {compute!r}")
    try:
        check_instance_count(instance_count)
    except ValueError as exc:
        raise StageFailed(str(exc)) from None
    if compute == "local" and instance_count != 1:
        raise StageFailed(
            f"Params 'instance_count'={instance_count} and 'compute'=local do not go together: "
            "several hosts need compute=kubernetes (local trains on one host)"
        )


def resolve_base_model_input(
    base_model: str | None,
    dataset_uri: str,
    hyperparameters: dict[str, str],
    *,
    run_root: str,
    allow_class_change: bool = False,
) -> dict[str, Any] | None:
    """The ``base_model`` Param, resolved, checked against the job and staged; ``None`` for
    an empty value (train from scratch).

    Contract (the training and retraining DAGs rely on it): ``base_model`` is
    ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` (resolved with
    ``get_model_version_by_alias`` / ``get_model_version`` only) or a ``model.tar.gz`` URI.
    The seed must have this run's ``base_network`` and number of classes, and the dataset's
    class map unless ``allow_class_change``; otherwise :class:`StageFailed` naming both
    sides, before any validation. The tarball is copied to
    ``{run_root}/resolve_inputs/base_model/model.tar.gz`` (the training ``model`` channel
    reads it there, from any worker). Returns ``{"uri", "lineage", "name", "version",
    "metrics", "base_network", "num_classes", "classes", "model_uri"}``; an unreachable
    tracking server raises a retryable error.
    """
    from pipeline_lib import storage
    from pipeline_lib.hyperparameters import Hyperparameters
    from pipeline_lib.registry.base_model import (
        BaseModelError,
        check_base_model,
        dataset_class_map,
        is_base_model_uri,
        resolve_base_model,
    )

    if not is_base_model_uri(base_model):
        return None
    try:
        base = resolve_base_model(str(base_model))
        check_base_model(
            base,
            base_network=hyperparameters.get("base_network", Hyperparameters.base_network),
            classes=dataset_class_map(dataset_uri),
            num_classes=int(hyperparameters["num_classes"])
            if "num_classes" in hyperparameters
            else None,
            allow_class_change=allow_class_change,
        )
    except BaseModelError as exc:
        raise StageFailed(str(exc)) from None
    staged = storage.join(run_root, "resolve_inputs", "base_model", "model.tar.gz")
    with storage.atomic_write(staged) as tmp:
        shutil.copyfile(base.tar_path, tmp)
    log.info("seeding training from %s", base.lineage)
    return {**base.to_dict(), "model_uri": staged}


def validate_dataset(inputs: dict[str, Any]) -> dict[str, Any]:
    """Validate every image and annotation; fail with the first findings when invalid."""
    from pipeline_lib import storage
    from pipeline_lib.validation import ValidationOptions, validate

    report_uri = storage.join(inputs["run_root"], "validate", "report")
    if inputs.get("channels"):  # recordio, augmented-manifest: one file per channel
        from .formats import validate_channels

        ok, summary, text = validate_channels(inputs, report_uri, inputs["empty_images"])
        log.info("%s", text)
        if not ok:
            raise StageFailed(f"dataset {inputs['dataset_uri']} is invalid:\n{text}")
        return summary
    with storage.atomic_dir(report_uri, overwrite=True, writer="odp validate") as report_dir:
        report = validate(
            inputs["dataset_uri"],
            options=ValidationOptions(empty_policy=inputs["empty_images"]),
            report_dir=str(report_dir),
        )
    # The report was written to a temporary folder that has now become report_uri.
    text = report.human_summary().replace(str(report_dir), report_uri)
    summary = json.loads(json.dumps(report.summary_dict()).replace(str(report_dir), report_uri))
    summary["report_uri"] = report_uri
    log.info("%s", text)
    if not report.ok:
        raise StageFailed(f"dataset {inputs['dataset_uri']} is invalid:\n{text}")
    return summary


def convert_dataset(inputs: dict[str, Any], validation: dict[str, Any]) -> dict[str, Any]:
    """image+JSON -> RecordIO per channel, cached by a content hash of the dataset.

    Each channel folder also gets ``class_map.json`` (RecordIO labels carry no names).
    """
    from pipeline_lib import storage
    from pipeline_lib.recordio.cache_key import dataset_content_hash
    from pipeline_lib.recordio.convert import convert_to_recordio

    if inputs.get("input_format") == "recordio":
        from .formats import stage_recordio

        return stage_recordio(inputs, validation)
    if inputs.get("input_format") == "augmented-manifest":
        from .formats import convert_manifests

        return convert_manifests(inputs, validation)
    options = {"format": "recordio", "version": 1}
    key = dataset_content_hash(inputs["dataset_uri"], options)
    cache = storage.join(inputs["artifact_root"], "cache", "recordio", key)
    marker = storage.join(cache, "_SUCCESS")
    channels = {c: storage.join(cache, c) for c in ("train", "validation")}
    if storage.exists(marker):
        log.info("dataset unchanged (content hash %s): reusing RecordIO in %s", key, cache)
        meta = json.loads(storage.read_bytes(marker))
        return {**meta, "eval_uri": inputs["dataset_uri"], "cache_hit": True}
    class_names = {k: v["name"] for k, v in validation["class_counts"].items()}
    label_width = 0
    for channel, uri in channels.items():
        result = convert_to_recordio(
            inputs["dataset_uri"], storage.join(uri, channel), channel=channel
        )
        label_width = max(label_width, result.label_width)
        with storage.atomic_write(storage.join(uri, "class_map.json")) as tmp:
            tmp.write_text(json.dumps(class_names))
        log.info("converted %s: %s", channel, ", ".join(result.files))
    meta = {"content_hash": key, "channels": channels, "label_width": label_width}
    with storage.atomic_write(marker) as tmp:
        tmp.write_text(json.dumps(meta))
    return {**meta, "eval_uri": inputs["dataset_uri"], "cache_hit": False}


def training_hyperparameters(
    inputs: dict[str, Any], validation: dict[str, Any], converted: dict[str, Any]
) -> dict[str, str]:
    """User hyperparameters plus the values the data dictates."""
    hyper = dict(inputs["hyperparameters"])
    hyper.setdefault("num_classes", str(len(validation["class_counts"])))
    hyper.setdefault("num_training_samples", str(validation["counts"]["images"]["train"]))
    hyper.setdefault("label_width", str(max(validation["label_width"], converted["label_width"])))
    return hyper


def train_local(
    inputs: dict[str, Any], validation: dict[str, Any], converted: dict[str, Any]
) -> dict[str, Any]:
    """Run ``odp train`` as a local subprocess on the container layout; package the model.

    A local run root keeps ``ml/`` (checkpoints) across retries, so a retry resumes; with an
    s3:// run root the container layout lives in a temporary folder removed on every exit.
    """
    from pipeline_lib import storage

    task_uri = storage.join(inputs["run_root"], "train")
    if not storage.is_s3(task_uri):
        return _train_in(Path(task_uri, "ml"), inputs, validation, converted)
    with tempfile.TemporaryDirectory(prefix="odp-ml-") as tmp:
        return _train_in(Path(tmp), inputs, validation, converted)


def _train_in(
    ml_root: Path, inputs: dict[str, Any], validation: dict[str, Any], converted: dict[str, Any]
) -> dict[str, Any]:
    from pipeline_lib import storage
    from pipeline_lib.artifact import package
    from pipeline_lib.training.completion import clear_completion, write_completion

    hyper = training_hyperparameters(inputs, validation, converted)
    task_uri = storage.join(inputs["run_root"], "train")
    clear_completion(task_uri)
    live = _live_mlflow_env(inputs)
    code, paths = run_odp_train(
        ml_root,
        hyper,
        converted,
        live,
        seed_uri=(inputs.get("base_model") or {}).get("model_uri"),
        allow_class_change=bool(inputs.get("allow_class_change")),
    )
    if code != 0:
        failure = paths.output / "failure"
        reason = failure.read_text().strip() if failure.exists() else "no failure file written"
        if reason.startswith("ClientError"):  # SageMaker's "your input": a retry cannot fix it
            raise StageFailed(f"odp train failed: {reason}")
        raise RuntimeError(f"odp train exited with {code}: {reason}")
    metrics = json.loads((paths.output / "metrics.json").read_text())
    model_uri = package(paths.model, storage.join(task_uri, "model.tar.gz"))
    storage.upload(paths.output / "metrics.json", storage.join(task_uri, "metrics.json"))
    write_completion(task_uri)  # last: what evaluate and register trust
    result = {
        "model_uri": model_uri,
        "hyperparameters": hyper,
        "training_metrics": metrics,
        "dataset_digest": converted["content_hash"],
    }
    if "ODP_MLFLOW_RUN_ID" in live:
        from pipeline_lib.registry import run_url

        result["mlflow_url"] = run_url(live["ODP_MLFLOW_RUN_ID"])
    return result


def run_odp_train(
    ml_root: Path,
    hyper: dict[str, str],
    converted: dict[str, Any],
    env: dict[str, str],
    *,
    seed_uri: str | None = None,
    allow_class_change: bool = False,
) -> tuple[int, Any]:
    """``odp train`` as a logged subprocess on the converted RecordIO channels, with ``env``
    added to ours; ``seed_uri`` (a model.tar.gz) becomes the ``model`` channel (incremental
    training). Its exit code and container layout (``MLPaths``)."""
    from pipeline_lib import storage
    from pipeline_lib.training.contract import prepare_ml_root

    from .subprocesses import run_logged

    with (
        storage.local_dir(converted["channels"]["train"]) as train_dir,
        storage.local_dir(converted["channels"]["validation"]) as val_dir,
        tempfile.TemporaryDirectory(prefix="odp-seed-") as seed_dir,
    ):
        channels = {"train": train_dir, "validation": val_dir}
        if seed_uri:
            storage.download(seed_uri, Path(seed_dir, "model.tar.gz"))
            channels["model"] = Path(seed_dir)
        paths = prepare_ml_root(ml_root, channels, hyper, "recordio")
        cmd = [sys.executable, "-m", "pipeline_lib.cli", "train", "--ml-root", str(ml_root)]
        if allow_class_change:
            cmd.append("--allow-class-change")
        return run_logged(cmd, env={**os.environ, **env}), paths


def _live_mlflow_env(inputs: dict[str, Any]) -> dict[str, str]:
    """Environment that makes ``odp train`` log its metrics into this DAG run's MLflow run
    as it goes (the register task completes the same run). Without a reachable tracking
    server, training goes on and the metrics are logged at registration."""
    from pipeline_lib.registry import resolve_tracking_uri, start_run

    key = f"{inputs['dag_id']}/{inputs['run_id']}"
    try:
        run_id = start_run(key, run_name=key, tags={"odp.dataset_uri": inputs["dataset_uri"]})
    except Exception as exc:  # noqa: BLE001  metrics are not worth failing the training for
        log.warning("no live MLflow metrics: %s", exc)
        return {}
    log.info("live training metrics go to MLflow run %s", run_id)
    return {"ODP_MLFLOW_RUN_ID": run_id, "MLFLOW_TRACKING_URI": resolve_tracking_uri()}


def completed_model(inputs: dict[str, Any], trained: dict[str, Any]) -> str:
    """The trained model's URI, after checking the completion manifest training wrote last
    (for either compute; ``trained["job_uri"]`` names its folder when it is not the run's
    ``train/``, e.g. the best tuning trial): a missing or mismatched manifest fails the task."""
    from pipeline_lib import storage
    from pipeline_lib.training.completion import verify_completion

    job_uri = trained.get("job_uri") or storage.join(inputs["run_root"], "train")
    done = verify_completion(job_uri)
    log.info("completion manifest verified: %s", done["model_uri"])
    return done["model_uri"]


def evaluate_trained(
    inputs: dict[str, Any], trained: dict[str, Any], converted: dict[str, Any] | None = None
) -> dict[str, Any]:
    """VOC07 mAP@0.5 of the trained model on the validation channel, with plots.

    The validation data is what ``convert`` names (``eval_uri``: the image+JSON root, the
    staged validation ``.rec``, or the manifest written out as image+JSON). The current
    ``champion`` (when there is one with the same class map) is evaluated on the same data,
    so that promotion compares like with like.
    """
    from pipeline_lib import storage
    from pipeline_lib.evaluation.evaluate import evaluate_model

    trained = {**trained, "model_uri": completed_model(inputs, trained)}
    out = storage.join(inputs["run_root"], "evaluate")
    data = (converted or {}).get("eval_uri") or inputs["dataset_uri"]
    inputs = {**inputs, "dataset_uri": data}
    result = evaluate_model(trained["model_uri"], data, out, metric="voc07", overwrite=True)
    log.info("validation mAP (VOC07, IoU 0.5): %.4f", result["metrics"]["mAP"])
    return {
        "metrics": result["metrics"],
        "output_uri": out,
        # beside the candidate's folder, not in it: each is one output, replaced by a retry
        "champion": _evaluate_champion(inputs, trained, f"{out}_champion"),
        # the MLflow run the metrics are logged into at registration (the train task's)
        **({"mlflow_url": trained["mlflow_url"]} if trained.get("mlflow_url") else {}),
    }


def _evaluate_champion(inputs: dict[str, Any], trained: dict[str, Any], out: str) -> dict | None:
    from pipeline_lib import storage
    from pipeline_lib.artifact import archive_config
    from pipeline_lib.evaluation.evaluate import evaluate_model
    from pipeline_lib.registry import get_champion, resolve_model_uri

    champion = get_champion(inputs["model_name"])
    if champion is None:
        log.info("no champion yet for %s", inputs["model_name"])
        return None
    champion_tar = resolve_model_uri(f"models:/{inputs['model_name']}@champion")
    with storage.local_file(trained["model_uri"]) as candidate_tar:
        same_classes = archive_config(champion_tar).classes == archive_config(candidate_tar).classes
    if not same_classes:
        log.info("champion v%s has another class map: not compared", champion["version"])
        return {"version": champion["version"], "comparable": False}
    result = evaluate_model(
        str(champion_tar), inputs["dataset_uri"], out, metric="voc07", overwrite=True
    )
    log.info(
        "champion v%s on the same validation data: mAP %.4f",
        champion["version"],
        result["metrics"]["mAP"],
    )
    return {"version": champion["version"], "comparable": True, "metrics": result["metrics"]}


def register_trained(
    inputs: dict[str, Any], trained: dict[str, Any], evaluated: dict[str, Any]
) -> dict[str, Any]:
    """Register the model version (alias ``candidate``); promote to ``champion`` if better.

    Lineage: the run gets the training dataset as an MLflow dataset input (content hash as
    digest), the validation report and the evaluation plots as artifacts, and tags for the
    DAG, its run, the dataset, the base network and the git commit; the version gets
    ``validation_mAP``, ``dataset_digest``, ``base_model`` and the promotion decision.
    """
    from pipeline_lib import storage
    from pipeline_lib.registry import lineage, promote_if_better, register_model, version_url

    trained = {**trained, "model_uri": completed_model(inputs, trained)}
    metrics = {k: v for k, v in evaluated["metrics"].items() if isinstance(v, int | float)}
    key = f"{inputs['dag_id']}/{inputs['run_id']}"
    digest = trained.get("dataset_digest") or ""
    base = inputs.get("base_model") or {}
    hyper = trained["hyperparameters"]
    run_tags = {
        "odp.idempotency_key": key,
        lineage.DATASET_URI_TAG: inputs["dataset_uri"],
        lineage.DAG_ID_TAG: inputs["dag_id"],
        lineage.DAG_RUN_ID_TAG: inputs["run_id"],
        lineage.BASE_NETWORK_TAG: hyper.get("base_network", ""),
        lineage.GIT_COMMIT_TAG: lineage.git_commit(),
        lineage.BASE_MODEL_TAG: base.get("lineage", "none (trained from scratch)"),
        "odp.input_format": inputs.get("input_format", "image+json"),
        **({"odp.content_hash": h} if (h := inputs.get("content_hash")) else {}),
    }
    version_tags = {
        lineage.VALIDATION_MAP_TAG: f"{metrics.get('mAP', float('nan')):.6f}",
        lineage.DATASET_DIGEST_TAG: digest,
        lineage.BASE_MODEL_TAG: base.get("lineage", "none (trained from scratch)"),
    }
    with tempfile.TemporaryDirectory(prefix="odp-reg-") as tmp:
        metrics_path = Path(tmp, "metrics.json")
        metrics_path.write_text(json.dumps(metrics))
        reports = _report_files(inputs, evaluated, Path(tmp, "reports"))
        with storage.local_file(trained["model_uri"]) as model_tar:
            info = register_model(
                str(model_tar),
                name=inputs["model_name"],
                metrics_path=str(metrics_path),
                run_name=key,
                params=hyper,
                epoch_metrics=trained["training_metrics"].get("epochs", []),
                tags=run_tags,
                version_tags=version_tags,
                artifacts=reports,
                dataset=lineage.training_dataset(inputs["dataset_uri"], digest) if digest else None,
            )
    champion = evaluated.get("champion") or {}
    promotion = promote_if_better(
        inputs["model_name"],
        info["version"],
        metric="mAP",
        margin=inputs["promotion_margin"],
        champion_value=(champion.get("metrics") or {}).get("mAP"),
    )
    log.info("registered %s version %s; promotion: %s", info["name"], info["version"], promotion)
    url = version_url(info["name"], info["version"])
    return {**info, "promotion": promotion, "mAP": metrics.get("mAP"), "mlflow_url": url}


def _report_files(inputs: dict[str, Any], evaluated: dict[str, Any], dest: Path) -> list[Path]:
    """Local copies of the validation report and the evaluation's files (plots, metrics):
    the top-level files of both task folders, ``validate_`` / ``evaluate_`` prefixed."""
    from pipeline_lib import storage

    dest.mkdir(parents=True, exist_ok=True)
    folders = {
        "validate_": storage.join(inputs["run_root"], "validate", "report"),
        "evaluate_": evaluated.get("output_uri") or storage.join(inputs["run_root"], "evaluate"),
    }
    files: list[Path] = []
    for prefix, folder in folders.items():
        if not storage.exists(folder):
            continue
        for uri in storage.list_files(folder):
            relative = uri[len(folder) :].lstrip("/")
            if "/" in relative or not relative.endswith((".json", ".png", ".txt", ".html")):
                continue  # sub-folders (the champion's evaluation, GX Data Docs) stay in the run root
            files.append(storage.download(uri, dest / f"{prefix}{relative}"))
    return files
