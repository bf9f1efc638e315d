"""Great Expectations over the flattened tables (one row per image, one row per box).

The suites are checked in beside this module (``images_suite.json``, ``boxes_suite.json``)
and use suite parameters for what depends on the run (empty-image policy, tolerance, pixel
limit, class ids). GX is called directly (an ephemeral context, a pandas data source, one
checkpoint per table with an ``UpdateDataDocsAction``), so Data Docs HTML lands in
``<report_dir>/data_docs/``. The Python checks produce the findings; GX is the tabular,
browsable record of the same facts. Should an expectation fail where no check reported an
error, a ``gx.expectation_failed`` finding makes sure the dataset is not passed.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

from .. import storage
from .dataset import BOX_COLUMNS, IMAGE_COLUMNS, Aggregator
from .options import ValidationOptions
from .report import ValidationReport, finding

SUITES_DIR = Path(__file__).resolve().parent
SUITE_FILES = {"images": "images_suite.json", "boxes": "boxes_suite.json"}
SITE = "odp_validation"


def load_suite(table: str) -> dict:
    """The checked-in suite for ``images`` or ``boxes`` as a dict."""
    return json.loads((SUITES_DIR / SUITE_FILES[table]).read_text())


def tables(agg: Aggregator):
    """(images, boxes) pandas DataFrames from the aggregated rows."""
    import pandas as pd

    images = pd.DataFrame.from_records(agg.image_rows, columns=list(IMAGE_COLUMNS))
    images["pixels"] = images["width"].astype("int64") * images["height"].astype("int64")
    boxes = pd.DataFrame.from_records(agg.box_rows, columns=list(BOX_COLUMNS))
    overhang = pd.concat(
        [
            -boxes["left"],
            -boxes["top"],
            boxes["right"] - boxes["image_width"],
            boxes["bottom"] - boxes["image_height"],
        ],
        axis=1,
    )
    boxes["overhang"] = overhang.max(axis=1).astype(float) if len(boxes) else []
    return images, boxes


def _context(docs_dir: Path | None):
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    for name in ("great_expectations", "tzlocal"):
        logging.getLogger(name).setLevel(logging.ERROR)
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    if docs_dir is not None:
        ctx.add_data_docs_site(
            site_name=SITE,
            site_config={
                "class_name": "SiteBuilder",
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(docs_dir),
                },
            },
        )
    return gx, ctx


def _summarise(result: dict) -> dict:
    stats = result.get("statistics", {})
    failed = []
    for r in result.get("results", []):
        if not r.get("success"):
            cfg = r.get("expectation_config", {})
            kwargs = {k: v for k, v in cfg.get("kwargs", {}).items() if k != "batch_id"}
            res = r.get("result", {})
            failed.append(
                {
                    "expectation": cfg.get("type"),
                    "kwargs": kwargs,
                    "unexpected_count": res.get("unexpected_count"),
                    "partial_unexpected_list": res.get("partial_unexpected_list", [])[:10],
                    "observed_value": res.get("observed_value"),
                }
            )
    return {
        "success": bool(result.get("success")),
        "evaluated": stats.get("evaluated_expectations", 0),
        "successful": stats.get("successful_expectations", 0),
        "failed": failed,
    }


def run_great_expectations(
    agg: Aggregator, report: ValidationReport, report_dir: str | None, opts: ValidationOptions
) -> dict:
    """Run both suites; write Data Docs under ``report_dir/data_docs``; return a summary."""
    try:
        return _run(agg, report, report_dir, opts)
    except Exception as exc:  # GX trouble is reported, never hidden, never a crash
        report.findings.append(
            finding(
                "gx.expectation_failed",
                "<great_expectations>",
                f"Great Expectations could not run: {type(exc).__name__}: {exc}",
                expected="a completed GX run",
                actual=f"{type(exc).__name__}: {exc}",
                severity="warning",
            )
        )
        return {"success": False, "error": f"{type(exc).__name__}: {exc}"}


def _run(
    agg: Aggregator, report: ValidationReport, report_dir: str | None, opts: ValidationOptions
) -> dict:
    images, boxes = tables(agg)
    n_classes = len(agg.class_names())  # ids used or declared: they must be 0..K-1
    params = {
        "min_boxes": 0 if opts.empty_policy == "keep" else 1,
        "max_pixels": opts.max_pixels,
        "tolerance": float(opts.box_tolerance),
        "class_ids": list(range(n_classes)),
    }
    tmp = None
    docs_dir = None
    if report_dir is not None:
        if storage.is_s3(report_dir):
            tmp = tempfile.TemporaryDirectory(prefix="odp-gx-")
            docs_dir = Path(tmp.name)
        else:
            docs_dir = Path(report_dir) / "data_docs"
    try:
        gx, ctx = _context(docs_dir)
        source = ctx.data_sources.add_pandas("odp")
        out: dict = {"success": True, "parameters": params, "suites": {}, "results": {}}
        for table, df in (("images", images), ("boxes", boxes)):
            suite_dict = load_suite(table)
            suite = ctx.suites.add(
                gx.ExpectationSuite(
                    name=suite_dict["name"],
                    expectations=suite_dict["expectations"],
                    meta=suite_dict.get("meta"),
                )
            )
            batch = source.add_dataframe_asset(table).add_batch_definition_whole_dataframe("all")
            vd = ctx.validation_definitions.add(
                gx.ValidationDefinition(name=f"odp_{table}", data=batch, suite=suite)
            )
            actions = []
            if docs_dir is not None:
                actions.append(gx.checkpoint.UpdateDataDocsAction(name="docs", site_names=[SITE]))
            cp = ctx.checkpoints.add(
                gx.Checkpoint(
                    name=f"odp_{table}",
                    validation_definitions=[vd],
                    actions=actions,
                    result_format={"result_format": "SUMMARY"},
                )
            )
            res = cp.run(batch_parameters={"dataframe": df}, expectation_parameters=params)
            for vr in res.run_results.values():
                d = vr.to_json_dict()
                out["results"][table] = d
                out["suites"][table] = _summarise(d)
            out["success"] = out["success"] and bool(res.success)
        ev = sum(s["evaluated"] for s in out["suites"].values())
        ok = sum(s["successful"] for s in out["suites"].values())
        out["statistics_line"] = f"{ok}/{ev} expectations met"
        if docs_dir is not None:
            index = docs_dir / "index.html"
            if tmp is not None:
                target = storage.join(report_dir, "data_docs")
                storage.upload_dir(docs_dir, target)
                out["data_docs"] = storage.join(target, "index.html")
            else:
                out["data_docs"] = str(index)
    finally:
        if tmp is not None:
            tmp.cleanup()
    if not out["success"] and report.ok:
        failed = [f["expectation"] for s in out["suites"].values() for f in s["failed"]]
        report.findings.append(
            finding(
                "gx.expectation_failed",
                "<great_expectations>",
                f"Great Expectations failed ({', '.join(failed)}) where no check reported an "
                "error; see the Data Docs",
                expected="all expectations met",
                actual=failed,
            )
        )
    return out
