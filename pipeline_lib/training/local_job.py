"""Training jobs derived from one ML root, run as local ``odp train`` processes (``odp tune``).

Each job gets its own container layout under ``ML_ROOT/tuning/trial-<n>/``: the channels of
``ML_ROOT/input/data`` linked (to the same folders the original links name, so the input
gate judges them as it judges the original), the original config files, and
``hyperparameters.json`` = the original's values overridden by the job's own. Its
checkpoints stay there, so running the same job again resumes it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from ..hyperparameters import load as load_hyperparameters
from ..tuning.trials import JobOutcome
from ..workers import PARENT_PID_ENV
from .contract import MLPaths

CONFIG_FILES = ("inputdataconfig.json", "resourceconfig.json")


def base_hyperparameters(base: MLPaths) -> dict[str, str]:
    """The original job's ``hyperparameters.json`` (checked: a bad one fails every trial)."""
    path = base.config / "hyperparameters.json"
    load_hyperparameters(str(path))
    return {k: str(v) for k, v in json.loads(path.read_text(encoding="utf-8")).items()}


def derive(base: MLPaths, name: str, hyperparameters: Mapping[str, str]) -> MLPaths:
    """The layout of job ``name`` under ``base``: linked channels, copied config, merged
    hyperparameters. Existing checkpoints of the job are kept (a resumed job)."""
    paths = MLPaths(base.root / "tuning" / name)
    paths.config.mkdir(parents=True, exist_ok=True)
    paths.data.mkdir(parents=True, exist_ok=True)
    if not base.data.is_dir():
        raise FileNotFoundError(f"{base.data} does not exist: the ML root has no input channels")
    for channel in sorted(os.listdir(base.data)):
        src = base.channel(channel)
        if os.path.islink(src):  # the folder the original link names, not the link
            src = Path(os.path.abspath(os.path.join(base.data, os.readlink(src))))
        dest = paths.channel(channel)
        if os.path.lexists(dest):
            dest.unlink() if dest.is_symlink() or dest.is_file() else shutil.rmtree(dest)
        os.symlink(src, dest, target_is_directory=True)
    for name_ in CONFIG_FILES:
        if (base.config / name_).is_file():
            shutil.copyfile(base.config / name_, paths.config / name_)
    merged = {**base_hyperparameters(base), **hyperparameters}
    (paths.config / "hyperparameters.json").write_text(json.dumps(merged, indent=1))
    return paths


def run_job(paths: MLPaths, env: Mapping[str, str], output: IO | None = None) -> JobOutcome:
    """``odp train`` on ``paths`` as a child process (its output goes to ours, or ``output``)."""
    cmd = [sys.executable, "-m", "pipeline_lib.cli", "train", "--ml-root", str(paths.root)]
    proc = subprocess.run(  # noqa: S603  our own argv, no shell
        cmd,
        env={**os.environ, **env, PARENT_PID_ENV: str(os.getpid())},  # dies with us
        check=False,
        stdout=output,
        stderr=output and subprocess.STDOUT,
    )
    metrics_path, failure_path = paths.output / "metrics.json", paths.output / "failure"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else None
    failure = failure_path.read_text(errors="replace") if failure_path.is_file() else None
    return JobOutcome(proc.returncode, metrics, failure)
