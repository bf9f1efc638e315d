"""The conversion cache key: a content hash of an image+JSON dataset and the converter
options, so that the DAG converts a dataset once and reuses the RecordIO files after.

It lives with the converter because the converter's version is part of the key.
"""

from __future__ import annotations

import hashlib
import json
import os

from .. import storage
from ..annotations import CHANNELS, annotation_channel
from .convert import CONVERTER_VERSION


def dataset_content_hash(data: str | os.PathLike, options: dict | None = None) -> str:
    """SHA-256 over the converter version, ``options`` and every file of the four channels
    (relative name, size and bytes, streamed). On S3 the ETag stands in for the bytes, so
    nothing is downloaded. Use it as the conversion cache key."""
    data = str(data)
    h = hashlib.sha256()
    head = {"converter": CONVERTER_VERSION, "options": options or {}}
    h.update(json.dumps(head, sort_keys=True, default=str).encode() + b"\n")
    for folder in (*CHANNELS, *(annotation_channel(c) for c in CHANNELS)):
        base = storage.join(data, folder)
        prefix_len = len(base.rstrip("/")) + 1
        for obj in storage.list_objects(base):
            rel = obj.uri[prefix_len:].replace(os.sep, "/")
            h.update(f"{folder}/{rel}\0{obj.size}\0".encode())
            if obj.etag is not None:
                h.update(obj.etag.encode())
            else:
                with open(obj.uri, "rb") as f:
                    while chunk := f.read(1 << 20):
                        h.update(chunk)
            h.update(b"\0")
    return h.hexdigest()
