"""One content hash for a training input in any of the three formats.

The retraining DAG compares it with the hash the champion was trained on (a scheduled run
with unchanged data ends early), and the DAG keys its manifest conversion cache on it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from . import storage

#: The ``input_format`` values, as the DAG's Param names them.
INPUT_FORMATS = ("image+json", "recordio", "augmented-manifest")


def _update_with_file(h: Any, uri: str) -> None:
    """Name, size and bytes of one file (on S3 the ETag stands in for the bytes)."""
    if storage.is_s3(uri):
        obj = storage.stat_object(uri)
        h.update(f"{uri}\0{obj.size}\0{obj.etag or ''}\0".encode())
        return
    h.update(f"{uri.rsplit('/', 1)[-1]}\0".encode())
    with open(uri, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    h.update(b"\0")


def _manifest_images(manifest: str, attribute_names: tuple[str, ...]) -> Iterable[str]:
    from .manifest import ManifestDetection

    source, label = attribute_names[0], attribute_names[1]
    return ManifestDetection(manifest, attribute=label, source_attribute=source).sources


def input_content_hash(
    input_format: str,
    *,
    dataset_uri: str | None = None,
    train_uri: str | None = None,
    validation_uri: str | None = None,
    attribute_names: tuple[str, ...] = ("source-ref", "bounding-box"),
) -> str:
    """SHA-256 of what training would read: an image+JSON root (every channel file), the
    two ``.rec`` files, or the two manifests and every image they reference."""
    if input_format not in INPUT_FORMATS:
        raise ValueError(f"input_format must be one of {INPUT_FORMATS}, got {input_format!r}")
    if input_format == "image+json":
        from .recordio.cache_key import dataset_content_hash

        return dataset_content_hash(str(dataset_uri), {"input_format": input_format})
    h = hashlib.sha256(json.dumps([input_format, list(attribute_names)]).encode() + b"\n")
    for uri in (train_uri, validation_uri):
        _update_with_file(h, str(uri))
        if input_format == "augmented-manifest":
            for image in _manifest_images(str(uri), attribute_names):
                _update_with_file(h, image)
    return h.hexdigest()
