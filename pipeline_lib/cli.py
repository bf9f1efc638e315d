"""The ``odp`` command: one sub-command per pipeline stage, a thin layer over the modules.

Every command reads local paths or s3:// URIs, exits 0 on success and non-zero with a
one-line reason on failure. Heavy modules are imported inside each command so that
``odp --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable


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
    )
    counts = generate(args.out, cfg)
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
        )
    else:
        summary = import_coco(
            args.src,
            args.out,
            crowd=args.crowd,
            images_dir=args.images_dir,
            min_box_size=args.min_box_size,
        )
    print(summary)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from .validation import ValidationOptions, validate

    options = ValidationOptions(
        empty_policy=args.empty_images,
        box_tolerance=args.box_tolerance,
        convert_to_rgb=args.convert_to_rgb,
        workers=args.workers,
        min_box_size=args.min_box_size,
    )
    report = validate(args.data, options=options, report_dir=args.report)
    if args.json:
        _print_json(report.summary_dict())
    else:
        print(report.human_summary())
    return 0 if report.ok else 1


def cmd_convert(args: argparse.Namespace) -> int:
    if args.target == "recordio":
        from .recordio.convert import convert_to_recordio

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

        n = dataset_to_manifest(args.data, args.out, attribute=args.attribute, channel=args.channel)
        print(f"wrote {n} lines to {args.out}")
    else:  # json
        from .manifest import manifest_to_dataset

        n = manifest_to_dataset(args.manifest, args.out, attribute=args.attribute)
        print(f"wrote {n} images to {args.out}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .training.entrypoint import run_training

    return run_training(args.ml_root, allow_class_change=args.allow_class_change)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluation.evaluate import evaluate_model

    result = evaluate_model(args.model, args.data, args.out, metric=args.metric, iou=args.iou)
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
    from .inference import Predictor

    predictor = Predictor.load(args.model)
    verbose = "annotation=1" in args.accept
    for image in args.images:
        _print_json(predictor.predict_file(image, verbose=verbose, threshold=args.threshold))
    return 0


def cmd_register(args: argparse.Namespace) -> int:
    from .registry import register_model

    info = register_model(
        args.model_dir,
        name=args.name,
        metrics_path=args.metrics,
        run_name=args.run_name,
    )
    _print_json(info)
    return 0


# ------------------------------------------------------------------ parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="odp", description="SageMaker-compatible SSD object-detection pipeline"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, fn: Callable[[argparse.Namespace], int], help: str):
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(fn=fn)
        return p

    p = add("synth", cmd_synth, "write a deterministic synthetic image+JSON dataset")
    p.add_argument("out")
    p.add_argument("--images", type=int, default=100, help="total images (train + validation)")
    p.add_argument("--classes", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-objects", type=int, default=3)
    p.add_argument("--val-fraction", type=float, default=0.2)

    p = add("import", cmd_import, "import Pascal VOC or COCO into the image+JSON layout")
    p.add_argument("format", choices=["voc", "coco"])
    p.add_argument("src")
    p.add_argument("out")
    p.add_argument("--classes", help="VOC: comma-separated class names fixing the id order")
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--difficult", choices=["keep", "drop"], default="keep")
    p.add_argument("--crowd", choices=["drop", "keep"], default="drop")
    p.add_argument("--images-dir", help="COCO: folder holding the images (default: beside SRC)")
    p.add_argument(
        "--min-box-size",
        type=float,
        default=1.0,
        help="boxes narrower or lower than this many pixels are dropped with a warning",
    )

    p = add("validate", cmd_validate, "validate a dataset (image+JSON root, .rec, or manifest)")
    p.add_argument("data")
    p.add_argument("--report", help="folder for report.json, summary and GX Data Docs")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--empty-images", choices=["reject", "keep"], default="reject")
    p.add_argument("--box-tolerance", type=float, default=0.0, help="pixels a box may overhang")
    p.add_argument("--convert-to-rgb", action="store_true")
    p.add_argument(
        "--min-box-size",
        type=float,
        default=1.0,
        help="warn about boxes narrower or lower than this many pixels (B005 box.tiny)",
    )
    p.add_argument("--workers", type=int, default=0, help="0 = one per core")

    p = add("convert", cmd_convert, "convert between image+JSON, RecordIO and manifests")
    csub = p.add_subparsers(dest="target", required=True)
    r = csub.add_parser("recordio", help="image+JSON -> .rec/.idx/.lst")
    r.add_argument("data")
    r.add_argument("out_prefix")
    r.add_argument("--channel", choices=["train", "validation"])
    r.add_argument("--resize", type=int, help="re-encode with this shorter side")
    r.add_argument("--quality", type=int, default=95)
    r.add_argument("--workers", type=int, default=0, help="0 = one per core")
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
    m.add_argument("--channel", choices=["train", "validation"], default="train")
    j = csub.add_parser("json", help="augmented manifest -> image+JSON")
    j.add_argument("manifest")
    j.add_argument("out")
    j.add_argument("--attribute", default="bounding-box")

    p = add("train", cmd_train, "train SSD following the SageMaker /opt/ml container contract")
    p.add_argument("--ml-root", default=None, help="default: $ML_ROOT or /opt/ml")
    p.add_argument(
        "--allow-class-change",
        action="store_true",
        help="incremental training: accept a seed model with another class map",
    )

    for name, fn, help_ in (
        ("evaluate", cmd_evaluate, "evaluate a model.tar.gz on a dataset"),
        ("map", cmd_map, "mAP of detection files against ground truth"),
    ):
        p = add(name, fn, help_)
        if name == "evaluate":
            p.add_argument("model")
            p.add_argument("data")
            p.add_argument("out")
        else:
            p.add_argument("gt")
            p.add_argument("detections")
        p.add_argument("--metric", choices=["voc07", "voc", "coco"], default="voc07")
        p.add_argument("--iou", type=float, default=0.5)
        p.add_argument("--json", action="store_true")

    p = add("predict", cmd_predict, "run a model on images, print SageMaker JSON")
    p.add_argument("model")
    p.add_argument("images", nargs="+")
    p.add_argument("--accept", default="application/json")
    p.add_argument("--threshold", type=float, default=0.0)

    p = add("register", cmd_register, "log a model to MLflow and register a version")
    p.add_argument("model_dir")
    p.add_argument("--name", required=True)
    p.add_argument("--metrics", help="metrics.json to log with it")
    p.add_argument("--run-name")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except CliError as exc:
        print(f"odp {args.command}: error: {exc}", file=sys.stderr)
        return exc.code
    except (FileNotFoundError, ValueError, ConnectionError) as exc:  # ConnectionError: MLflow
        print(f"odp {args.command}: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, FileNotFoundError) else 1


if __name__ == "__main__":
    sys.exit(main())
