"""The completion manifest a training job writes last, and its verification.

A training job (local process or Kubernetes pod) writes ``model.tar.gz`` and
``metrics.json`` under its task folder of the run root, then ``completion.json`` holding
the size and SHA-256 of each. Downstream tasks trust only this manifest, never the state of
the task that ran the job: a job killed between its files, or a pod reported "succeeded"
though training never finished, leaves no manifest (or one that does not match) and the
run stops there.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

from .. import storage

MANIFEST = "completion.json"
MODEL = "model.tar.gz"
METRICS = "metrics.json"
FILES = (MODEL, METRICS)
VERSION = 1


class CompletionError(ValueError):
    """The completion manifest is missing, unreadable or does not match the files."""


def file_digest(uri: str) -> tuple[str, int]:
    """SHA-256 (hex) and size of a local file or S3 object, streamed."""
    digest, size = hashlib.sha256(), 0
    with storage.open_read(uri) as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def write_completion(task_uri: str, *, hosts: list[str] | None = None) -> str:
    """Checksum the job's files under ``task_uri`` and write the manifest (atomically, last).

    Raises :class:`CompletionError` when one of the files is missing.
    """
    files = {}
    for name in FILES:
        uri = storage.join(task_uri, name)
        if not storage.exists(uri):
            raise CompletionError(f"{uri} is missing: the training job did not write it")
        sha256, size = file_digest(uri)
        files[name] = {"sha256": sha256, "size": size}
    manifest = {
        "version": VERSION,
        "files": files,
        "hosts": list(hosts or ["algo-1"]),
        "completed_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    uri = storage.join(task_uri, MANIFEST)
    with storage.atomic_write(uri) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1))
    return uri


def clear_completion(task_uri: str) -> None:
    """Remove a previous try's manifest before a job writes its files again (local only:
    on S3 the new manifest replaces the old one, and verification catches a mismatch)."""
    uri = storage.join(task_uri, MANIFEST)
    if not storage.is_s3(uri):
        Path(uri).unlink(missing_ok=True)


def verify_completion(task_uri: str) -> dict:
    """The manifest under ``task_uri`` after checking every file it lists against it.

    Returns ``{"model_uri", "metrics_uri", "metrics", "manifest"}``; raises
    :class:`CompletionError` naming the file and what is wrong.
    """
    uri = storage.join(task_uri, MANIFEST)
    if not storage.exists(uri):
        raise CompletionError(
            f"{uri} not found: the training job did not complete (its task state alone is "
            "not trusted)"
        )
    try:
        manifest = json.loads(storage.read_bytes(uri))
    except ValueError as exc:
        raise CompletionError(f"{uri} is not valid JSON: {exc}") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or manifest.get("version") != VERSION:
        raise CompletionError(f"{uri}: expected a version {VERSION} manifest with 'files'")
    for name in FILES:
        entry = files.get(name)
        if not isinstance(entry, dict) or not {"sha256", "size"} <= entry.keys():
            raise CompletionError(f"{uri}: no sha256/size entry for {name}")
        file_uri = storage.join(task_uri, name)
        if not storage.exists(file_uri):
            raise CompletionError(f"{file_uri} listed in {uri} is missing")
        sha256, size = file_digest(file_uri)
        if (sha256, size) != (entry["sha256"], entry["size"]):
            raise CompletionError(
                f"{file_uri} does not match {uri} (size {size} vs {entry['size']}, sha256 "
                f"{sha256[:12]}.. vs {str(entry['sha256'])[:12]}..): incomplete or overwritten"
            )
    metrics_uri = storage.join(task_uri, METRICS)
    return {
        "model_uri": storage.join(task_uri, MODEL),
        "metrics_uri": metrics_uri,
        "metrics": json.loads(storage.read_bytes(metrics_uri)),
        "manifest": manifest,
    }
