"""Defaults for DAG Params, computed cheaply at parse time (no heavy imports, no I/O)."""

from __future__ import annotations

import os


def default_dataset_uri() -> str:
    """The demo dataset location under ODP_HOME (what ``make demo`` generates)."""
    from pipeline_lib.settings import load_settings

    return os.environ.get("ODP_DEFAULT_DATASET", str(load_settings().home / "demo" / "dataset"))
