"""``validate()``: detect the input format, run every check, write the report."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

from .. import storage
from .dataset import Aggregator
from .image_json import is_image_json_root, validate_image_json
from .labels import LABELS_FILE
from .options import UnusableInputError, ValidationOptions
from .report import ValidationReport

MANIFEST_SUFFIXES = (".jsonl", ".manifest", ".json")
RECORDIO_SUFFIX = ".rec"


@contextlib.contextmanager
def _local(data: str) -> Iterator[Path]:
    """A local path for ``data`` (s3:// folders and files are downloaded to a temp folder)."""
    if not storage.is_s3(data):
        path = Path(data)
        if not path.exists():
            raise UnusableInputError(f"{data}: no such file or folder")
        yield path
        return
    if not storage.exists(data):
        raise UnusableInputError(f"{data}: no such object or prefix")
    name = storage.split_s3(data)[1].rstrip("/").rsplit("/", 1)[-1]
    if name.endswith((*MANIFEST_SUFFIXES, RECORDIO_SUFFIX)):
        with storage.local_file(data) as path:
            if name.endswith(RECORDIO_SUFFIX):  # bring the .idx along when there is one
                idx = data[: -len(RECORDIO_SUFFIX)] + ".idx"
                if storage.exists(idx):
                    storage.download(idx, path.with_suffix(".idx"))
            yield path
        return
    with storage.local_dir(data) as path:
        yield path


def detect_format(path: Path) -> str:
    """``image+json``, ``manifest`` or ``recordio``; raises :class:`UnusableInputError`."""
    if path.is_file():
        if path.suffix == RECORDIO_SUFFIX:
            return "recordio"
        if path.suffix in MANIFEST_SUFFIXES:
            return "manifest"
        raise UnusableInputError(
            f"{path}: a file that is neither a RecordIO .rec nor a manifest "
            f"({', '.join(MANIFEST_SUFFIXES)})"
        )
    if path.is_dir():
        if is_image_json_root(path):
            return "image+json"
        if any((path / ch).is_dir() and any((path / ch).glob("*.rec")) for ch in ("train",)):
            return "recordio"
    raise UnusableInputError(
        f"{path}: not a dataset (expected an image+JSON root with train/ validation/ "
        "train_annotation/ validation_annotation/, a .rec file, or a manifest .jsonl)"
    )


def validate(
    data: str, options: ValidationOptions | None = None, report_dir: str | None = None
) -> ValidationReport:
    """Validate a dataset (image+JSON root, RecordIO ``.rec`` or augmented manifest).

    Every problem is reported in one pass. ``report_dir`` (local or s3://) receives
    ``report.json``, ``summary.txt``, ``labels.png`` (class counts per split, box sizes,
    aspect ratios and centres) and, with Great Expectations on, ``data_docs/``.
    Raises :class:`UnusableInputError` when ``data`` is missing or not a dataset.
    """
    opts = options or ValidationOptions()
    start = time.perf_counter()
    convert_dir = _convert_dir(opts, report_dir)
    with _local(str(data)) as path:
        fmt = detect_format(path)
        if fmt == "image+json":
            agg = Aggregator(tables=opts.great_expectations)
            validate_image_json(path, opts, agg, convert_dir)
        elif fmt == "manifest":
            from .manifest import validate_manifest

            agg = Aggregator(channels=("manifest",), tables=opts.great_expectations)
            validate_manifest(path, opts, agg)
        else:
            from .recordio import validate_recordio

            agg = validate_recordio(path, opts)
    agg.finish()
    report = ValidationReport(
        data=str(data),
        format=fmt,
        findings=agg.findings,
        images=dict(agg.images),
        boxes=dict(agg.boxes),
        empty_images=dict(agg.empty),
        class_counts=agg.class_counts(),
        max_objects_per_image=agg.max_objects,
        report_dir=str(report_dir) if report_dir else None,
        converted=_converted(fmt, convert_dir, agg.converted),
    )
    if opts.great_expectations:
        from .gx_suite import run_great_expectations

        report.great_expectations = run_great_expectations(agg, report, report_dir, opts)
    report.seconds = time.perf_counter() - start
    if report_dir:
        report.write(report_dir)
        with storage.atomic_write(storage.join(report_dir, LABELS_FILE)) as tmp:
            agg.labels.plot(tmp, agg.class_names())
    return report


def _converted(fmt: str, convert_dir: Path | None, n: int) -> dict | None:
    if convert_dir is None:
        return None
    if fmt != "image+json":
        return {
            "dir": None,
            "images": 0,
            "note": f"--convert-to-rgb applies to image+JSON, not {fmt}",
        }
    return {"dir": str(convert_dir), "images": n}


def _convert_dir(opts: ValidationOptions, report_dir: str | None) -> Path | None:
    if not opts.convert_to_rgb:
        return None
    target = opts.convert_dir or (storage.join(report_dir, "converted") if report_dir else None)
    if target is None:
        raise ValueError("convert_to_rgb needs a report folder (--report DIR) or a convert_dir")
    if storage.is_s3(target):
        raise ValueError(f"convert_to_rgb writes a local folder, not {target}")
    return Path(target)
