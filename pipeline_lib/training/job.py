"""A training job described by a ``job.json`` under the run root: what a Kubernetes pod runs.

``odp train --job URI --host algo-N`` stages the job's channels into ``ML_ROOT/input/data``
(downloaded from S3, linked when local), writes the container config for this host, restores
the checkpoints kept under the run root (so a retried pod resumes), runs the SageMaker
container contract (:func:`~pipeline_lib.training.entrypoint.run_training`), saves the
checkpoints back, and on the chief host publishes ``model.tar.gz`` and ``metrics.json`` and,
last, the completion manifest. Data in and results out go through storage, never through
the orchestrator.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from .. import storage
from .contract import CONTENT_TYPES, MLPaths, prepare_ml_root
from .errors import EXIT_FAILURE

JOB_FILE = "job.json"
CHECKPOINTS = "checkpoints"


@dataclass(frozen=True)
class JobSpec:
    """``job.json``: channels (URIs), format, hyperparameters, hosts and the output folder."""

    channels: dict[str, str]
    input_format: str
    hyperparameters: dict[str, str]
    hosts: list[str]
    output_uri: str

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes, source: str) -> JobSpec:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"{source} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{source}: expected a JSON object")
        missing = [f for f in cls.__dataclass_fields__ if f not in data]
        if missing:
            raise ValueError(f"{source}: missing field(s) {', '.join(missing)}")
        if data["input_format"] not in CONTENT_TYPES:
            raise ValueError(
                f"{source}: input_format {data['input_format']!r} is not one of "
                f"{', '.join(CONTENT_TYPES)}"
            )
        hosts = data["hosts"]
        if not isinstance(hosts, list) or not hosts or not all(isinstance(h, str) for h in hosts):
            raise ValueError(f"{source}: hosts must be a non-empty list of host names")
        for name in ("channels", "hyperparameters"):
            if not isinstance(data[name], dict):
                raise ValueError(f"{source}: {name} must be a JSON object")
        return cls(**{f: data[f] for f in cls.__dataclass_fields__})


def write_job(spec: JobSpec) -> str:
    """Write ``job.json`` into the job's output folder; returns its URI."""
    uri = storage.join(spec.output_uri, JOB_FILE)
    with storage.atomic_write(uri) as tmp:
        tmp.write_text(spec.to_json())
    return uri


def read_job(uri: str) -> JobSpec:
    """The job at ``uri`` (a ``ValueError`` naming the file when it is not one)."""
    if not storage.exists(uri):
        raise FileNotFoundError(f"job file {uri} not found")
    return JobSpec.from_json(storage.read_bytes(uri), uri)


def run_job(job_uri: str, ml_root: str | Path, host: str) -> int:
    """Run the job at ``job_uri`` as host ``host`` with the container layout at ``ml_root``;
    returns the exit code of training (non-zero also when publishing fails)."""
    from .completion import clear_completion, write_completion
    from .entrypoint import run_training

    spec = read_job(job_uri)
    if host not in spec.hosts:
        raise ValueError(f"{job_uri}: host {host!r} is not among hosts {spec.hosts}")
    chief = host == spec.hosts[0]
    ml_root = Path(ml_root)
    _clear_failure(spec.output_uri, host)
    with contextlib.ExitStack() as stack:
        local = {
            c: str(stack.enter_context(storage.local_dir(u))) for c, u in spec.channels.items()
        }
        paths = prepare_ml_root(
            ml_root,
            local,
            spec.hyperparameters,
            spec.input_format,
            hosts=tuple(spec.hosts),
            current_host=host,
        )
        if chief:
            clear_completion(spec.output_uri)
            _restore_checkpoints(spec.output_uri, paths)
        code = run_training(str(ml_root))
    if chief:  # also after a SIGTERM or a failure: the retry resumes from them
        _save_checkpoints(spec.output_uri, paths)
    if code != 0:
        _publish_failure(spec.output_uri, paths, host)
        return code
    if not chief:
        return code
    try:
        from ..artifact import package

        package(paths.model, storage.join(spec.output_uri, "model.tar.gz"))
        storage.upload(paths.output / "metrics.json", storage.join(spec.output_uri, "metrics.json"))
        manifest = write_completion(spec.output_uri, hosts=spec.hosts)
    except OSError as exc:
        reason = f"AlgorithmError: training finished but publishing its results failed: {exc}"
        (paths.output / "failure").write_text(reason + "\n")
        print(reason, file=sys.stderr, flush=True)
        return EXIT_FAILURE
    print(f"completion manifest: {manifest}", flush=True)
    return code


def _restore_checkpoints(output_uri: str, paths: MLPaths) -> None:
    """Checkpoints of an earlier try (kept under the run root) into ``ML_ROOT/checkpoints``."""
    uri = storage.join(output_uri, CHECKPOINTS)
    if not storage.exists(uri):
        return
    if paths.checkpoints.exists():
        shutil.rmtree(paths.checkpoints)
    storage.download_dir(uri, paths.checkpoints)
    print(f"restored checkpoints from {uri}", flush=True)


def _save_checkpoints(output_uri: str, paths: MLPaths) -> None:
    if paths.checkpoints.is_dir() and any(paths.checkpoints.iterdir()):
        with contextlib.suppress(OSError):  # the job's own outcome matters more
            storage.upload_dir(paths.checkpoints, storage.join(output_uri, CHECKPOINTS))


def _clear_failure(output_uri: str, host: str) -> None:
    """A previous try's reason must not be read as this try's."""
    uri = storage.join(output_uri, "failure", host)
    if not storage.is_s3(uri):
        Path(uri).unlink(missing_ok=True)


def _publish_failure(output_uri: str, paths: MLPaths, host: str) -> None:
    """``output/failure`` under the run root too, where the task reads the reason."""
    failure = paths.output / "failure"
    if failure.is_file():
        with contextlib.suppress(OSError):
            storage.upload(failure, storage.join(output_uri, "failure", host))
