"""``python -m odp_airflow.local``: the commands the Makefile runs (see the package docstring)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import __doc__ as PACKAGE_DOC


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m odp_airflow.local",
        description=PACKAGE_DOC,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("render-config", help="render airflow.cfg.template into AIRFLOW_HOME")
    p.add_argument("--template", type=Path, default=None)
    p.add_argument("--output", type=Path, default=None)
    sub.add_parser("urls", help="print local URLs and the login")
    sub.add_parser("ui", help="run Airflow standalone and an MLflow server in the foreground")
    p = sub.add_parser("wait-ready", help=argparse.SUPPRESS)
    p.add_argument("urls", nargs="+")
    p = sub.add_parser("demo-summary", help="print the demo model's mAP, version and aliases")
    p.add_argument("--model-name", required=True)
    p.add_argument("--tracking-uri", default=None)
    p.add_argument("--json", action="store_true", help="print one JSON object instead")
    p.add_argument(
        "--since",
        type=float,
        default=None,
        help="fail unless the candidate version was registered after this Unix time",
    )
    return parser


def _demo_summary(args: argparse.Namespace) -> int:
    from .summary import demo_summary, format_demo_summary

    summary = demo_summary(args.model_name, args.tracking_uri)
    if summary is None:
        print(
            f"demo-summary: no version of model {args.model_name!r} has the alias 'candidate' "
            "(did the register task run?)",
            file=sys.stderr,
        )
        return 1
    created = (summary.get("created_ms") or 0) / 1000
    if args.since is not None and created < args.since:
        print(
            f"demo-summary: the newest {args.model_name!r} version ({summary['version']}) was "
            "registered before this run started: the run registered nothing",
            file=sys.stderr,
        )
        return 1
    print(json.dumps(summary) if args.json else format_demo_summary(summary))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit code."""
    args = _parser().parse_args(argv)
    if args.command == "render-config":
        from .config import render_config

        path, changed = render_config(args.template, args.output)
        print(f"{path} {'written' if changed else 'up to date'}")
        return 0
    if args.command == "urls":
        from .summary import urls_text

        print(urls_text())
        return 0
    if args.command == "ui":
        from .ui import run_ui

        return run_ui()
    if args.command == "wait-ready":
        from .ui import wait_then_print

        return wait_then_print(args.urls)
    return _demo_summary(args)


if __name__ == "__main__":
    sys.exit(main())
