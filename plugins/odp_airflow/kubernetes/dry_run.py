"""Print, as YAML, every Kubernetes object a training run with a given conf would create.

    python -m odp_airflow.kubernetes.dry_run --conf conf.json [--settings k8s.json]

``conf.json`` is the DAG run conf (the trigger form's Params: ``instance_count``,
``hyperparameters``, ``artifact_root``); the cluster settings come from ``--settings``, else
the ``AIRFLOW_VAR_ODP_KUBERNETES`` environment variable, else the defaults. The pods are
rendered through the provider's ``build_pod_request_obj()``: what a cluster admin reviews
before granting the namespace. Nothing is sent to any cluster.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

DAG_ID = "object_detection_training"


def _read_json(path: str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{what} {path} not found") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{what} {path} is not readable JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{what} {path} must hold a JSON object")
    return data


def dry_run_yaml(conf: dict[str, Any], settings_data: dict[str, Any] | None, run_id: str) -> str:
    """The YAML stream of the run's objects."""
    import yaml

    from pipeline_lib.settings import load_settings as load_odp_settings
    from pipeline_lib.storage import check_uri

    from ..runs import RunRoot
    from .plan import make_plan
    from .render import render_objects
    from .settings import parse_settings

    if settings_data is not None and not isinstance(settings_data, dict):
        raise ValueError("settings must be a JSON object")
    settings = parse_settings(settings_data)
    hyper = conf.get("hyperparameters") or {}
    if not isinstance(hyper, dict):
        raise ValueError("conf: 'hyperparameters' must be a JSON object")
    artifact_root = check_uri(
        conf.get("artifact_root") or load_odp_settings().artifact_root, "conf: artifact_root"
    )  # the same strict parse as the DAG's first task (which also confines it)
    root = RunRoot(artifact_root, DAG_ID, run_id)
    plan = make_plan(root.uri, DAG_ID, run_id, conf.get("instance_count", 1), hyper)
    with contextlib.redirect_stdout(sys.stderr):  # the provider logs to stdout: keep YAML clean
        objects = render_objects(settings, plan)
    return yaml.safe_dump_all(objects, sort_keys=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m odp_airflow.kubernetes.dry_run")
    parser.add_argument("--conf", required=True, help="DAG run conf (JSON file)")
    parser.add_argument("--settings", help="cluster settings (JSON file); default: env/defaults")
    parser.add_argument("--run-id", default="manual__dry-run", help="run id to render")
    args = parser.parse_args(argv)
    try:
        conf = _read_json(args.conf, "conf")
        if args.settings:
            settings_data = _read_json(args.settings, "settings")
        else:
            raw = os.environ.get("AIRFLOW_VAR_ODP_KUBERNETES")
            settings_data = json.loads(raw) if raw else None
        print(dry_run_yaml(conf, settings_data, args.run_id), end="")
    except RecursionError:
        print("error: a JSON document nested too deeply", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
