"""The ``odp`` command: one sub-command per pipeline stage, a thin layer over the modules.

Every command reads local paths or s3:// URIs and is a trust boundary: whatever the input,
it ends in one of these exit codes, never in a traceback (``odp --debug ...`` shows it):

* ``0``: success.
* ``1``: bad input or configuration (an invalid dataset, archive, JSON, hyperparameter, an
  unreadable or unwritable path, a resource limit), or a failure of ours. Bad input is one
  line on stderr, ``odp <command>: error: <file/record/field>: <rule>: <expected>``; an
  unexpected internal error is one line ending in "run with --debug for the traceback".
* ``2``: unusable arguments: argparse's own errors, and an input argument that names
  nothing (a path that does not exist, a folder that is no dataset).
* ``130``: interrupted (Ctrl-C).

Heavy modules are imported inside each command so that ``odp --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path


class CliError(Exception):
    """A failure to report as one line, with an exit code."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def _print_json(obj: object) -> None:
    print(json.dumps(obj, indent=None, sort_keys=False, default=str))


# ------------------------------------------------------------------ commands


def cmd_synth(args: argparse.Namespace) -> int:
    from .synthetic import SynthConfig, generate

    cfg = SynthConfig(
        images=args.images,
        classes=args.classes,
        seed=args.seed,
        max_objects=args.max_objects,
        val_fraction=args.val_fraction,
        cue=args.cue,
    )
    counts = generate(args.out, cfg, overwrite=args.overwrite)
    print(f"wrote {counts['train']} train + {counts['validation']} validation images to {args.out}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from .importers import import_coco, import_voc

    if args.format == "voc":
        summary = import_voc(
            args.src,
            args.out,
            classes=args.classes.split(",") if args.classes else None,
            val_fraction=args.val_fraction,
            seed=args.seed,
            difficult=args.difficult,
            min_box_size=args.min_box_size,
            overwrite=args.overwrite,
        )
    else:
        summary = import_coco(
            args.src,
            args.out,
            crowd=args.crowd,
            images_dir=args.images_dir,
            min_box_size=args.min_box_size,
            overwrite=args.overwrite,
        )
    print(summary)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from .validation import ValidationOptions

    options = ValidationOptions(
        empty_policy=args.empty_images,
        box_tolerance=args.box_tolerance,
        convert_to_rgb=args.convert_to_rgb,
        workers=args.workers,
        min_box_size=args.min_box_size,
        great_expectations=args.great_expectations,
        full_decode=args.decode,
    )
    report = _validate_into(args.data, options, args.report, args.overwrite)
    if args.json:
        _print_json(report.summary_dict())
    else:
        print(report.human_summary())
    if report.ok:
        return 0
    first, n = report.errors[0], len(report.errors)
    where = first.file + (f" [{first.record}]" if first.record is not None else "")
    notes = [f"+{n - 1} more errors"] if n > 1 else []
    notes += [f"report in {args.report}"] if args.report else []
    more = f" ({', '.join(notes)})" if notes else ""
    raise CliError(f"{where}: {first.rule} ({first.code}): {first.message}{more}")


def _validate_into(data: str, options, report: str | None, overwrite: bool):
    """Validate ``data``; the report folder is written aside and published whole (never
    over anything but an earlier report, and that only with ``--overwrite``)."""
    from . import storage
    from .validation import validate

    if report is None:
        return validate(data, options=options, report_dir=None)
    with storage.atomic_dir(report, overwrite=overwrite, writer="odp validate") as tmp:
        result = validate(data, options=options, report_dir=str(tmp))
    result.relocate(str(tmp), report)
    return result


def cmd_convert(args: argparse.Namespace) -> int:
    from . import storage

    if args.target == "recordio":
        from .recordio.convert import convert_to_recordio, output_files

        for path in output_files(args.out_prefix, args.channel):
            storage.check_output_file(path, overwrite=args.overwrite)
        result = convert_to_recordio(
            args.data,
            args.out_prefix,
            channel=args.channel,
            resize=args.resize,
            quality=args.quality,
            workers=args.workers,
            durable=args.durable,
            validate=not args.skip_validation,
        )
        print(f"label_width={result.label_width}")
        for path in result.files:
            print(path)
    elif args.target == "manifest":
        from .manifest import dataset_to_manifest

        storage.check_output_file(args.out, overwrite=args.overwrite)
        n = dataset_to_manifest(args.data, args.out, attribute=args.attribute, channel=args.channel)
        print(f"wrote {n} lines to {args.out}")
    else:  # json
        from .manifest import manifest_to_dataset

        storage.check_output(args.out, overwrite=args.overwrite, writer="odp convert json")
        n = manifest_to_dataset(
            args.manifest, args.out, attribute=args.attribute, overwrite=args.overwrite
        )
        print(f"wrote {n} images to {args.out}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .training.entrypoint import run_training

    if args.job:  # a pod's job: channels in and results out through the run root
        from .training.job import run_job

        ml_root = args.ml_root or os.environ.get("ML_ROOT", "/opt/ml")
        code = run_job(args.job, ml_root, args.host)
    else:
        code = run_training(args.ml_root, allow_class_change=args.allow_class_change)
    failure = Path(args.ml_root or os.environ.get("ML_ROOT", "/opt/ml"), "output", "failure")
    if code == EXIT_BAD_INPUT and failure.is_file():  # the job's one reason, as the last line
        raise CliError(failure.read_text(errors="replace"), code)
    return code


def cmd_tune(args: argparse.Namespace) -> int:
    import hashlib
    import shutil

    from .training.contract import MLPaths
    from .training.local_job import base_hyperparameters, derive, run_job
    from .tuning.config import load_config
    from .tuning.job import TuneSettings, TuningInterrupted, run_sequential
    from .tuning.study import default_storage, plan_search

    root = Path(args.ml_root).resolve()
    if not root.is_dir():
        raise CliError(f"--ml-root {args.ml_root}: not a folder", EXIT_USAGE)
    if not Path(args.space).is_file():
        raise CliError(f"--space {args.space}: no such file", EXIT_USAGE)
    base = MLPaths(root)
    config = load_config(args.space)  # the whole space is checked before any trial
    hyper = {**base_hyperparameters(base), **config.static}
    trials = args.trials or config.max_trials
    if not trials or trials < 1:
        raise CliError("--trials: expected an integer >= 1 (or MaxNumberOfTrainingJobs)", 2)
    if min(args.prune_startup_trials or 0, args.prune_warmup_epochs or 0) < 0:
        raise CliError("--prune-startup-trials / --prune-warmup-epochs: expected >= 0", 2)
    for flag, value in (
        ("--epoch-budget", args.epoch_budget),
        ("--max-trial-epochs", args.max_trial_epochs),
    ):
        if value is not None and value < 1:
            raise CliError(f"{flag}: expected an integer >= 1", 2)
    pruner, budget = plan_search(
        args.pruner or config.pruner or "median",
        int(hyper.get("epochs", "30")),
        trials,
        epoch_budget=args.epoch_budget or config.epoch_budget,
        max_trial_epochs=args.max_trial_epochs or config.max_trial_epochs,
        startup_trials=args.prune_startup_trials,
        warmup_epochs=args.prune_warmup_epochs,
    )
    study = args.study or f"tune-{root.name}-{hashlib.sha1(str(root).encode()).hexdigest()[:8]}"  # noqa: S324  a name, not security
    settings = TuneSettings(
        study=study,
        storage_url=args.storage or default_storage(),
        n_trials=trials,
        sampler=args.sampler or config.sampler or "tpe",
        pruner=pruner,
        seed=args.seed,
        budget=budget,
        mlflow=args.mlflow,
    )

    def launch(plan, env):
        paths = derive(base, f"trial-{plan.number}", plan.hyperparameters)
        return run_job(paths, {**plan.env, **env})

    try:
        summary = run_sequential(config, settings, launch, base.output / "tuning", print)
    except TuningInterrupted as exc:
        raise CliError(str(exc), EXIT_INTERRUPTED) from None
    best = summary["best"]
    if best is not None:
        best_model = base.root / "tuning" / f"trial-{best['number']}" / "model"
        shutil.copytree(best_model, base.model, dirs_exist_ok=True)
        summary["model_dir"] = str(base.model)
    (base.output / "tuning.json").write_text(json.dumps(summary, indent=1, default=str))
    if args.json:
        _print_json(summary)
    else:
        print(_tuning_lines(summary))
    return 0 if best is not None else EXIT_BAD_INPUT


def _tuning_lines(summary: dict) -> str:
    counts = ", ".join(f"{n} {state}" for state, n in summary["counts"].items() if n)
    lines = [f"study {summary['study']}: {counts}; {summary['epochs']} epochs trained"]
    best = summary["best"]
    if best is None:
        lines.append("no trial completed: no model")
    else:
        hp = ", ".join(f"{k}={v}" for k, v in best["hyperparameters"].items())
        lines.append(f"best: trial {best['number']}, validation mAP {best['value']:.4f} ({hp})")
        lines.append(f"model: {summary['model_dir']}")
    return "\n".join(lines)


def _class_names(args: argparse.Namespace) -> dict[int, str] | None:
    """The class names ``--class-map`` gives (a class map or categories), or ``None``."""
    path = getattr(args, "class_map", None)
    if not path:
        return None
    from .annotations import load_json, parse_class_names
    from .artifact import MAX_SIDE_FILE_BYTES
    from .gate.paths import read_regular

    if os.path.isfile(path) and os.path.getsize(path) > MAX_SIDE_FILE_BYTES:
        raise CliError(f"--class-map {path}: above {MAX_SIDE_FILE_BYTES} bytes")
    return parse_class_names(load_json(read_regular(path, path), path), path)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluation.evaluate import evaluate_model

    result = evaluate_model(
        args.model,
        args.data,
        args.out,
        metric=args.metric,
        iou=args.iou,
        class_names=_class_names(args),
        overwrite=args.overwrite,
    )
    if args.json:
        _print_json(result)
    else:
        print(_metrics_line(result))
    return 0


def cmd_map(args: argparse.Namespace) -> int:
    from .evaluation.files import evaluate_detection_files

    result = evaluate_detection_files(args.gt, args.detections, metric=args.metric, iou=args.iou)
    if args.json:
        _print_json(result)
    else:
        print(_metrics_line(result))
    return 0


def _metrics_line(result: dict) -> str:
    metrics = result.get("metrics", result)
    return "  ".join(
        f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
        for k, v in metrics.items()
        if not isinstance(v, dict | list)
    )


def cmd_predict(args: argparse.Namespace) -> int:
    from .serving.batch import open_source, predict_batch
    from .serving.detector import Detector
    from .serving.request import PredictOptions

    options = PredictOptions.from_params(
        {
            "threshold": args.threshold,
            "max_detections": args.max_detections,
            "nms_threshold": args.nms_threshold,
            "accept": args.accept,
        }
    )
    if args.output is not None:  # before the model is loaded: refuse at once
        from . import storage

        storage.check_output(args.output, overwrite=args.overwrite, writer="odp predict")
    model = args.model
    if model.startswith(("models:/", "runs:/")):
        from .registry import resolve_model_uri

        model = str(resolve_model_uri(model))
    detector = Detector.load(model, class_names=_class_names(args))
    if detector.note:
        print(detector.note, file=sys.stderr)
    if args.sagemaker_output:  # Batch Transform's layout: <input name>.out per input object
        from .serving.transform import transform_output

        if args.output is None:
            raise CliError("--sagemaker-output: expected an OUTPUT folder", EXIT_USAGE)
        summary = transform_output(
            detector, args.input, args.output, options, overwrite=args.overwrite
        )
        print(f"{summary['images']} images -> {summary['files']} .out files in {args.output}")
        return 0
    if args.output is None:  # stream the responses to stdout, one JSON per line
        source, _ = open_source(args.input)
        for _, file, data in source:
            _print_json({"file": file, **detector.predict([data], options, [file])[0]})
        return 0
    summary = predict_batch(detector, args.input, args.output, options, overwrite=args.overwrite)
    print(f"{summary['images']} images, {summary['detections']} detections -> {args.output}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .serving.http.config import plan_config
    from .serving.http.server import serve

    config = plan_config(
        host=args.host,
        port=args.port,
        runtime=args.runtime,
        workers=args.workers,
        max_payload_mb=args.max_payload_mb,
    )
    model = args.model or str(Path(os.environ.get("ML_ROOT", "/opt/ml")) / "model")
    if model.startswith(("models:/", "runs:/")):
        from .registry import resolve_model_uri

        model = str(resolve_model_uri(model))
    return serve(model, config, _class_names(args))


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive integer")
    return value


def _port(text: str) -> int:
    value = _positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a port, 1 to 65535")
    return value


def cmd_register(args: argparse.Namespace) -> int:
    from .registry import register_model

    info = register_model(
        args.model_dir,
        name=args.name,
        metrics_path=args.metrics,
        run_name=args.run_name,
        class_names=_class_names(args),
    )
    _print_json(info)
    return 0


# ------------------------------------------------------------------ parser


OVERWRITE_HELP = (
    "replace an earlier output of this command at OUT (only what it wrote: a folder holding "
    "anything else is still refused); without it an existing non-empty OUT is refused"
)
OVERWRITE_FILE_HELP = "replace existing output files (without it they are refused)"


def build_parser() -> argparse.ArgumentParser:
    from .bounds import MAX_CLASSES, arg_float, arg_int
    from .hyperparameters import MAX_EPOCHS, MAX_SEED
    from .images import MAX_RESIZE

    parser = argparse.ArgumentParser(
        prog="odp", description="SageMaker-compatible SSD object-detection pipeline"
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the traceback of a failure (exit codes: 0 ok, "
        "1 bad input or failure, 2 unusable arguments)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, fn: Callable[[argparse.Namespace], int], help: str):
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(fn=fn)
        return p

    p = add("synth", cmd_synth, "write a deterministic synthetic image+JSON dataset")
    p.add_argument("out")
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    p.add_argument(
        "--images",
        type=arg_int(1, 1_000_000),
        default=100,
        help="total images (train + validation)",
    )
    p.add_argument("--classes", type=arg_int(1, MAX_CLASSES), default=3)
    p.add_argument("--seed", type=arg_int(0, MAX_SEED), default=0)
    p.add_argument("--max-objects", type=arg_int(1, 1000), default=3)
    p.add_argument("--val-fraction", type=arg_float(0, 1, open_max=True), default=0.2)
    p.add_argument(
        "--cue",
        choices=["colour", "shape"],
        default="colour",
        help="what tells classes apart: colour (each class its own colour and shape; the "
        "quickest to learn) or shape (only the shape; colour, size, aspect random per object)",
    )

    p = add("import", cmd_import, "import Pascal VOC or COCO into the image+JSON layout")
    p.add_argument("format", choices=["voc", "coco"])
    p.add_argument("src")
    p.add_argument("out")
    p.add_argument("--classes", help="VOC: comma-separated class names fixing the id order")
    p.add_argument("--val-fraction", type=arg_float(0, 1, open_max=True), default=0.2)
    p.add_argument("--seed", type=arg_int(0, MAX_SEED), default=0)
    p.add_argument("--difficult", choices=["keep", "drop"], default="keep")
    p.add_argument("--crowd", choices=["drop", "keep"], default="drop")
    p.add_argument("--images-dir", help="COCO: folder holding the images (default: beside SRC)")
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    p.add_argument(
        "--min-box-size",
        type=arg_float(0, 100_000),
        default=1.0,
        help="boxes narrower or lower than this many pixels are dropped with a warning",
    )

    p = add("validate", cmd_validate, "validate a dataset (image+JSON root, .rec, or manifest)")
    p.add_argument("data")
    p.add_argument("--report", help="folder for report.json, summary and GX Data Docs")
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--empty-images", choices=["reject", "keep"], default="reject")
    p.add_argument(
        "--box-tolerance", type=arg_float(0, 100_000), default=0.0, help="pixels a box may overhang"
    )
    p.add_argument("--convert-to-rgb", action="store_true")
    p.add_argument(
        "--min-box-size",
        type=arg_float(0, 100_000),
        default=1.0,
        help="warn about boxes narrower or lower than this many pixels (B005 box.tiny)",
    )
    p.add_argument("--workers", type=arg_int(0, 1024), default=0, help="0 = one per core")
    p.add_argument(
        "--decode",
        action="store_true",
        help="also decode every image as training does (slow; finds corrupt pixel data the "
        "headers cannot show, e.g. a JPEG cut short with an end marker appended: I002)",
    )
    p.add_argument(
        "--no-great-expectations",
        dest="great_expectations",
        action="store_false",
        help="skip the Great Expectations suites and Data Docs (the rules still run)",
    )

    p = add("convert", cmd_convert, "convert between image+JSON, RecordIO and manifests")
    csub = p.add_subparsers(dest="target", required=True)
    r = csub.add_parser("recordio", help="image+JSON -> .rec/.idx/.lst")
    r.add_argument("data")
    r.add_argument("out_prefix")
    r.add_argument("--channel", choices=["train", "validation"])
    r.add_argument("--resize", type=arg_int(1, MAX_RESIZE), help="re-encode with this shorter side")
    r.add_argument("--quality", type=arg_int(1, 100), default=95)
    r.add_argument("--overwrite", action="store_true", help=OVERWRITE_FILE_HELP)
    r.add_argument("--workers", type=arg_int(0, 1024), default=0, help="0 = one per core")
    r.add_argument(
        "--no-fsync",
        dest="durable",
        action="store_false",
        help="publish the files without waiting for the disk (as im2rec does): faster on slow "
        "disks, but a power loss right after may leave a .rec that looks complete and is not",
    )
    r.add_argument(
        "--skip-validation",
        action="store_true",
        help="for data validated already: skip the image and dataset rules (headers, "
        "overlap, class ids); paths are still confined to the dataset",
    )
    m = csub.add_parser("manifest", help="image+JSON -> augmented manifest")
    m.add_argument("data")
    m.add_argument("out")
    m.add_argument("--attribute", default="bounding-box")
    m.add_argument("--overwrite", action="store_true", help=OVERWRITE_FILE_HELP)
    m.add_argument("--channel", choices=["train", "validation"], default="train")
    j = csub.add_parser("json", help="augmented manifest -> image+JSON")
    j.add_argument("manifest")
    j.add_argument("out")
    j.add_argument("--attribute", default="bounding-box")
    j.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)

    p = add("train", cmd_train, "train SSD following the SageMaker /opt/ml container contract")
    p.add_argument("--ml-root", default=None, help="default: $ML_ROOT or /opt/ml")
    p.add_argument(
        "--allow-class-change",
        action="store_true",
        help="incremental training: accept a seed model with another class map",
    )
    p.add_argument("--job", default=None, help="job.json URI (channels, hosts, output folder)")
    p.add_argument("--host", default="algo-1", help="with --job: this host's name (algo-N)")

    p = add("tune", cmd_tune, "tune hyperparameters on validation:mAP (SageMaker ParameterRanges)")
    p.add_argument("--ml-root", required=True, help="an /opt/ml layout: channels + base config")
    p.add_argument(
        "--space",
        required=True,
        help="ParameterRanges JSON, or a SageMaker HyperParameterTuningJobConfig / "
        "CreateHyperParameterTuningJob request",
    )
    p.add_argument(
        "--trials",
        type=arg_int(1, 10_000),
        help="trials in the study in all (resuming counts them)",
    )
    p.add_argument("--study", help="study name (default: from the ML root); same name resumes")
    p.add_argument("--storage", help="SQLAlchemy URL of the study DB (default: SQLite in ODP_HOME)")
    p.add_argument("--sampler", choices=["tpe", "random"], help="default: tpe (Bayesian)")
    p.add_argument("--pruner", choices=["median", "hyperband", "none"], help="default: median")
    p.add_argument(
        "--prune-startup-trials",
        type=arg_int(0, 10_000),
        help="median: trials completed before pruning (2)",
    )
    p.add_argument(
        "--prune-warmup-epochs",
        type=arg_int(0, MAX_EPOCHS),
        help="median: epochs never pruned (default: a quarter of a trial's epochs, 1 to 5)",
    )
    p.add_argument(
        "--epoch-budget",
        type=arg_int(1, 100 * MAX_EPOCHS),
        help="total training epochs of all trials (or ResourceLimits.MaxTotalTrainingEpochs): "
        "a trial's epochs are its share, pruned trials' unspent epochs fund longer trials, "
        "the total is never exceeded; kept by the study when resumed",
    )
    p.add_argument(
        "--max-trial-epochs",
        type=arg_int(1, MAX_EPOCHS),
        help="with --epoch-budget: the most epochs one trial trains (or "
        "ResourceLimits.MaxTrainingEpochsPerJob; default: the job's epochs)",
    )
    p.add_argument("--seed", type=arg_int(0, MAX_SEED), help="sampler seed")
    p.add_argument("--no-mlflow", dest="mlflow", action="store_false", help="no MLflow runs")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")

    for name, fn, help_ in (
        ("evaluate", cmd_evaluate, "evaluate a model.tar.gz on a dataset"),
        ("map", cmd_map, "mAP of detection files against ground truth"),
    ):
        p = add(name, fn, help_)
        if name == "evaluate":
            p.add_argument("model")
            p.add_argument("data")
            p.add_argument("out")
            p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
        else:
            p.add_argument("gt")
            p.add_argument("detections")
        p.add_argument("--metric", choices=["voc07", "voc", "coco"], default="voc07")
        p.add_argument("--iou", type=arg_float(0, 1, open_min=True), default=0.5)
        p.add_argument("--json", action="store_true")
        if name == "evaluate":
            p.add_argument("--class-map", help=_CLASS_MAP_HELP)

    p = add(
        "predict",
        cmd_predict,
        "run a model on images: SageMaker JSON per image to stdout, or into OUTPUT/<name>.json",
    )
    p.add_argument("model", help="model.tar.gz (local, s3://), models:/NAME@ALIAS or /VERSION")
    p.add_argument("input", help="an image, a folder or s3:// prefix of images, a .rec, a manifest")
    p.add_argument("output", nargs="?", help="folder for one detection JSON per image (odp map)")
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    p.add_argument(
        "--accept",
        default="application/json",
        help="application/json (normalized corners) or application/json;annotation=1 (pixels)",
    )
    p.add_argument("--threshold", type=float, default=0.0, help="drop boxes scoring below it")
    p.add_argument("--max-detections", type=str, default=100, help="boxes per image, best first")
    p.add_argument(
        "--nms-threshold",
        type=float,
        default=None,
        help="NMS IoU threshold (default: the model's)",
    )
    p.add_argument("--class-map", help=_CLASS_MAP_HELP)

    p.add_argument(
        "--sagemaker-output",
        action="store_true",
        help="Batch Transform's layout: OUTPUT/<input name>.out holding the endpoint's response "
        "(a .rec or manifest: one <name>.out, a response per record and line)",
    )

    p = add(
        "serve",
        cmd_serve,
        "serve a model over HTTP as a SageMaker inference container (GET /ping, POST "
        "/invocations and /endpoints/NAME/invocations, GET /execution-parameters)",
    )
    p.add_argument(
        "model",
        nargs="?",
        help="model.tar.gz (local, s3://), its extracted folder, models:/NAME@ALIAS or /VERSION "
        "(default: $ML_ROOT/model, /opt/ml/model, where SageMaker extracts the artifact)",
    )
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (default: all)")  # noqa: S104  a container's server
    p.add_argument(
        "--port", type=_port, default=None, help="default: $SAGEMAKER_BIND_TO_PORT or 8080"
    )
    p.add_argument(
        "--runtime",
        choices=["mxnet", "onnx"],
        default="mxnet",
        help="onnx: onnxruntime over the model's model.onnx (exported at start when missing)",
    )
    p.add_argument("--class-map", help=_CLASS_MAP_HELP)
    p.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        help="worker processes (default: $SAGEMAKER_MODEL_SERVER_WORKERS, else one per usable "
        "CPU); each gets CPUs / workers compute threads",
    )
    p.add_argument(
        "--max-payload-mb",
        type=_positive_int,
        default=None,
        help="largest request body in MB (default: $SAGEMAKER_MAX_PAYLOAD_IN_MB, else 6, "
        "SageMaker's)",
    )

    p = add("register", cmd_register, "log a model to MLflow and register a version")
    p.add_argument("model_dir")
    p.add_argument("--name", required=True)
    p.add_argument("--metrics", help="metrics.json to log with it")
    p.add_argument("--run-name")
    p.add_argument("--class-map", help=_CLASS_MAP_HELP)
    return parser


_CLASS_MAP_HELP = (
    'class names for the model: a class_map.json ({"0": "cat", ...}), a categories list '
    "([{class_id, name}, ...]) or an annotation JSON with categories (a SageMaker job's "
    "model.tar.gz has none: class_0.. otherwise)"
)


# ------------------------------------------------------------------ errors

EXIT_BAD_INPUT = 1
EXIT_USAGE = 2  # argparse's own code
EXIT_INTERRUPTED = 130
_MAX_LINE = 2000  # characters of one error line (a message may quote a whole record)

# Positional arguments that name an input: when one of them does not exist, a missing file
# is the caller's unusable argument (exit 2), not a defect inside the input (exit 1).
_INPUT_ARGUMENTS = ("data", "src", "manifest", "model", "gt", "detections", "model_dir", "input")

_OS_EXPECTED: dict[str, str] = {
    "PermissionError": "expected a path this user may read (inputs) or write (outputs)",
    "IsADirectoryError": "expected a file, found a folder",
    "NotADirectoryError": "expected a folder",
    "FileNotFoundError": "expected an existing file or folder",
    "FileExistsError": "expected a path that does not exist yet",
}


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _MAX_LINE else line[: _MAX_LINE - 3] + "..."


def _os_error_line(exc: OSError) -> str:
    if exc.errno is None or exc.strerror is None:  # raised with a message of ours
        return str(exc)
    expected = _OS_EXPECTED.get(type(exc).__name__, "")
    line = exc.strerror + (f": {expected}" if expected else "")
    if exc.filename is None:  # e.g. a write past RLIMIT_FSIZE ("File too large")
        return line
    where = exc.filename if exc.filename2 is None else f"{exc.filename} -> {exc.filename2}"
    return f"{where}: {line}"


def bad_input_line(exc: BaseException) -> str | None:
    """The one line for an exception that bad input or configuration causes, ``None`` for
    anything else (an internal error). Library messages already name the file, record or
    field; the standard library's own exceptions get the path and what was expected."""
    import tarfile  # stdlib, cheap; here so that `odp --help` does not pay for it
    import zlib

    if isinstance(exc, CliError):
        return str(exc)
    service = _service_line(exc)
    if service is not None:
        return service
    if isinstance(exc, UnicodeDecodeError):
        return f"byte {exc.start}: not {exc.encoding} text ({exc.reason}): expected UTF-8"
    if isinstance(exc, json.JSONDecodeError):
        return f"line {exc.lineno} column {exc.colno}: {exc.msg}: expected valid JSON"
    if isinstance(exc, OSError):
        return _os_error_line(exc)
    if isinstance(exc, tarfile.TarError):
        return f"not a readable tar archive ({exc}): expected a model.tar.gz"
    if isinstance(exc, EOFError | zlib.error):  # a truncated or corrupt compressed stream
        return f"corrupt or truncated compressed data ({exc}): expected a complete file"
    if isinstance(exc, OverflowError):
        return f"a number too large ({exc}): expected values within 64-bit float range"
    if isinstance(exc, KeyError):
        key = exc.args[0] if exc.args else "?"
        return f"missing key {key!r}: expected a complete JSON record"
    if isinstance(exc, MemoryError):
        return "out of memory: expected input within the documented limits"
    if isinstance(exc, RecursionError):
        return "nested too deeply: expected a flat JSON record"
    if isinstance(exc, ValueError):
        return str(exc) or type(exc).__name__
    return None


def _service_line(exc: BaseException) -> str | None:
    """S3 and database errors a user's configuration causes (missing credentials, a refused
    request, an unreachable database), told apart by class name: botocore and SQLAlchemy are
    not imported for this."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & {"NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"}:
        return (
            f"S3: {exc}: expected credentials (AWS_SHARED_CREDENTIALS_FILE, AWS_PROFILE, "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or a workload identity)"
        )
    if "EndpointConnectionError" in names or "ConnectTimeoutError" in names:
        return f"S3: {exc}: expected a reachable endpoint (AWS_ENDPOINT_URL)"
    if "ClientError" in names and isinstance(getattr(exc, "response", None), dict):
        error = exc.response.get("Error", {})  # type: ignore[attr-defined]
        return f"S3 refused the request: {error.get('Code')}: {error.get('Message')}"
    if "OperationalError" in names and "sqlalchemy" in type(exc).__module__:
        cause = str(getattr(exc, "orig", "") or exc).splitlines()[0]
        return f"database: {cause}: expected a reachable database at the storage URL"
    return None


def _exit_code(exc: BaseException, args: argparse.Namespace) -> int:
    """2 when an input argument names nothing usable, else 1."""
    from .validation.options import UnusableInputError

    if isinstance(exc, UnusableInputError):
        return EXIT_USAGE
    if isinstance(exc, FileNotFoundError):
        for name in _INPUT_ARGUMENTS:
            value = getattr(args, name, None)
            if isinstance(value, str) and "://" not in value and not os.path.lexists(value):
                return EXIT_USAGE
    return EXIT_BAD_INPUT


def _command(args: argparse.Namespace) -> str:
    sub = getattr(args, "target", None) or getattr(args, "format", None)
    return (
        f"odp {args.command} {sub}"
        if args.command in ("convert", "import")
        else f"odp {args.command}"
    )


#: Commands that run MXNet networks (their operator threads are sized to the CPUs). ``train``
#: lays out its own threads once it knows the batch (``training.entrypoint.cpu_plan``);
#: ``tune``'s trials are ``odp train`` processes.
MXNET_COMMANDS = {"evaluate", "predict"}


def main(argv: list[str] | None = None) -> int:
    """Run one ``odp`` command; returns the exit code (see the module docstring)."""
    args = build_parser().parse_args(argv)
    if args.command in MXNET_COMMANDS:
        from .cpus import size_compute_threads

        size_compute_threads()  # before MXNet is imported: every usable CPU, not one
    try:
        return args.fn(args)
    except KeyboardInterrupt:
        print(f"{_command(args)}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001  the trust boundary: every failure is one line
        if args.debug:
            traceback.print_exc()
        line = bad_input_line(exc)
        if line is not None:
            print(f"{_command(args)}: error: {_one_line(line)}", file=sys.stderr)
            return exc.code if isinstance(exc, CliError) else _exit_code(exc, args)
        detail = _one_line(f"{type(exc).__name__}: {exc}")
        hint = "" if args.debug else " (run with --debug for the traceback)"
        print(f"{_command(args)}: internal error: {detail}{hint}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
