"""Batch Transform's output layout (``odp predict INPUT OUTPUT --sagemaker-output``).

SageMaker Batch Transform writes, for each input object, ``<input object name>.out``
holding the endpoint's responses to it; downstream jobs that parse that layout keep working
on odp's:

* an image file: ``OUTPUT/<name>.out`` (``cat.jpg`` -> ``cat.jpg.out``), the response body
  exactly as ``odp serve`` answers it (:func:`~pipeline_lib.serving.response.response_body`);
* a folder or ``s3://`` prefix of images: the same per image, at its path relative to the
  input (``a/cat.jpg`` -> ``OUTPUT/a/cat.jpg.out``), as Batch Transform keeps an ``S3Prefix``
  input's key structure;
* a RecordIO ``.rec`` or an augmented manifest: one object split into records
  (``SplitType`` ``RecordIO`` / ``Line``), so one ``OUTPUT/<name>.out`` with one response per
  record, in order, each followed by a newline (``AssembleWith: Line``).

Like :func:`~pipeline_lib.serving.batch.predict_batch`, images are read a batch at a time and
the output folder appears whole when every image succeeded.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from .. import storage
from ..localfs import read_regular
from ..progress import LazyProgress
from .batch import (
    BATCH,
    IMAGE_SUFFIXES,
    MANIFEST_SUFFIXES,
    _batches,
    _name,
    _suffix,
    folder_images,
    open_source,
)
from .detector import Detector
from .request import PredictOptions, RequestError
from .response import response_body

OUT_SUFFIX = ".out"

Item = tuple[str, str, bytes]  # (output file, input name for messages, image bytes)


def _relative(file: str, root: str) -> str:
    if storage.is_s3(root):
        prefix = storage.split_s3(root)[1].rstrip("/")
        key = storage.split_s3(file)[1]
        return key[len(prefix) + 1 :] if prefix else key
    return Path(file).relative_to(root).as_posix()


def _per_image(uri: str) -> tuple[Iterator[Item], int] | None:
    """Image inputs as ``(<relative path>.out, name, bytes)``; None for record inputs."""
    suffix = _suffix(uri)
    if suffix == ".rec" or suffix in MANIFEST_SUFFIXES:
        return None
    if suffix in IMAGE_SUFFIXES and (storage.is_s3(uri) or not Path(uri).is_dir()):
        files, root = [uri], None
    elif not storage.is_s3(uri):  # a local folder: through the gate (no link out, no FIFO)
        if not Path(uri).is_dir():
            raise FileNotFoundError(f"no images at {uri}")
        source, n = folder_images(uri)
        if not n:
            raise RequestError(f"{uri}: no {', '.join(IMAGE_SUFFIXES)} images below it")
        return ((f"{rel}{OUT_SUFFIX}", rel, data) for rel, data in source), n
    else:
        files = [f for f in storage.list_files(uri) if _suffix(f) in IMAGE_SUFFIXES]
        root = uri
        if not files:
            raise RequestError(f"{uri}: no {', '.join(IMAGE_SUFFIXES)} images below it")

    def items() -> Iterator[Item]:
        for f in files:
            rel = _name(f) if root is None else _relative(f, root)
            parts = PurePosixPath(rel).parts
            if not parts or rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
                raise RequestError(
                    f"{f}: a name that leaves the output folder: expected plain names"
                )
            data = storage.read_bytes(f) if storage.is_s3(f) else read_regular(f)
            yield rel + OUT_SUFFIX, rel, data

    return items(), len(files)


def transform_output(
    detector: Detector,
    input_uri: str | os.PathLike,
    output_uri: str | os.PathLike,
    options: PredictOptions | None = None,
    *,
    batch_size: int = BATCH,
    overwrite: bool = False,
) -> dict:
    """Predict every image of ``input_uri`` into Batch Transform's layout under
    ``output_uri`` (see the module docstring). Returns ``{"images", "files", "output"}``."""
    options = options or PredictOptions()
    input_uri = str(input_uri)
    images = files = 0
    per_image = _per_image(input_uri)
    total = per_image[1] if per_image else None
    progress = LazyProgress(total, "predict")  # type: ignore[arg-type]  # None: open-ended
    try:
        with storage.atomic_dir(output_uri, overwrite=overwrite, writer="odp predict") as out:
            if per_image is not None:
                for batch in _batches(per_image[0], batch_size):
                    bodies = detector.predict(
                        [b for _, _, b in batch], options, [n for _, n, _ in batch]
                    )
                    for (target, _, _), body in zip(batch, bodies, strict=True):
                        path = out / target
                        path.parent.mkdir(parents=True, exist_ok=True)
                        path.write_bytes(response_body(body))
                        files += 1
                    images += len(batch)
                    progress.update(len(batch))
            else:
                source, _ = open_source(input_uri)
                with open(out / (_name(input_uri) + OUT_SUFFIX), "wb") as fh:
                    for batch in _batches(source, batch_size):
                        bodies = detector.predict(
                            [b for _, _, b in batch], options, [f for _, f, _ in batch]
                        )
                        for body in bodies:
                            fh.write(response_body(body) + b"\n")
                        images += len(batch)
                        progress.update(len(batch))
                files = 1
    finally:
        progress.close()
    return {"images": images, "files": files, "output": str(output_uri)}


__all__ = ["OUT_SUFFIX", "transform_output"]
