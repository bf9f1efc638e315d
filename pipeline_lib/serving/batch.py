"""Batch prediction (SageMaker Batch Transform's equivalent): every image of an input, one
detection JSON per image.

Inputs: one image file, a folder or ``s3://`` prefix of images (``.jpg``, ``.jpeg``,
``.png``, below it, sorted), a RecordIO ``.rec`` (scanned front to back), or an augmented
manifest (``.jsonl``/``.manifest``; only ``source-ref`` is read, confined to the manifest's
folder like every manifest reader). Images are read one batch at a time, never all at
once. Each result is ``OUTPUT/<name>.json``: the response layout asked for plus ``file``,
named by the image's base name (``<rec stem>_<ordinal>`` for records), the layout
``odp map`` reads. The output folder appears whole when every image succeeded (it is built
aside and published at the end): a bad image stops the job, naming it, and leaves nothing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from .. import storage
from ..gate.paths import Confined
from ..localfs import open_regular, read_regular
from ..progress import LazyProgress
from .detector import Detector
from .request import PredictOptions, RequestError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
MANIFEST_SUFFIXES = (".jsonl", ".manifest")
BATCH = 8

Source = Iterator[tuple[str, str, bytes]]  # (output name, file, image bytes)


def _suffix(uri: str) -> str:
    return Path(storage.split_s3(uri)[1] if storage.is_s3(uri) else uri).suffix.lower()


def _name(uri: str) -> str:
    return Path(storage.split_s3(uri)[1] if storage.is_s3(uri) else uri).name


def _images(uris: list[str]) -> Source:
    for uri in uris:
        data = storage.read_bytes(uri) if storage.is_s3(uri) else read_regular(uri)
        yield Path(_name(uri)).stem, _name(uri), data


def _check_regular(path: str) -> None:
    """A local input file is a regular file (a FIFO is refused, never waited on)."""
    fd, _ = open_regular(path)
    os.close(fd)


def folder_images(folder: str) -> tuple[Iterator[tuple[str, bytes]], int]:
    """``(relative path, bytes)`` of the images below a local folder, sorted by path, read
    through the gate: a symlink that leaves the folder or a FIFO is refused (a file named
    ``.jpg`` is not trusted to be one); and how many."""
    gated = Confined(folder, f"{Path(folder).name}/")
    rels = []
    for here, dirs, files in os.walk(folder):  # symlinked folders are not followed
        dirs.sort()
        for name in sorted(files):
            if Path(name).suffix.lower() in IMAGE_SUFFIXES:
                rels.append(os.path.relpath(os.path.join(here, name), folder))

    rels.sort()  # by relative path, as the listing of an s3:// prefix is

    def read() -> Iterator[tuple[str, bytes]]:
        for rel in rels:
            yield rel, gated.read(rel, f"{gated.label}{rel}", "image")

    return read(), len(rels)


def _folder_images(folder: str) -> tuple[Source, int]:
    source, n = folder_images(folder)
    return ((Path(rel).stem, Path(rel).name, data) for rel, data in source), n


def _records(rec: str) -> Source:
    from ..recordio.reader import iter_records

    if not storage.is_s3(rec):
        _check_regular(rec)
    stem = Path(_name(rec)).stem
    for record in iter_records(rec, check=False):
        yield f"{stem}_{record.ordinal:06d}", f"{_name(rec)}#{record.ordinal}", record.image


def _manifest(manifest: str) -> Source:
    from ..manifest import SOURCE_REF, read_source, resolve_source

    base = manifest.rsplit("/", 1)[0] if storage.is_s3(manifest) else str(Path(manifest).parent)
    with storage.open_read(manifest) as raw:
        for lineno, line in enumerate(raw, 1):
            if not line.strip():
                continue
            where = f"{manifest}: line {lineno}"
            try:
                ref = json.loads(line)[SOURCE_REF]
            except (ValueError, KeyError, TypeError, RecursionError):
                raise RequestError(
                    f"{where}: expected a JSON object with a {SOURCE_REF!r} string"
                ) from None
            if not isinstance(ref, str):
                raise RequestError(f"{where}: {SOURCE_REF} is not a string")
            uri = resolve_source(ref, base, f"{where}: {SOURCE_REF}")
            yield Path(_name(ref)).stem, _name(ref), read_source(uri, ref, where)


def open_source(uri: str) -> tuple[Source, int | None]:
    """The images of ``uri`` (see the module docstring) and how many, when known up front."""
    suffix = _suffix(uri)
    if suffix == ".rec":
        return _records(uri), None
    if suffix in MANIFEST_SUFFIXES:
        if not storage.is_s3(uri):
            _check_regular(uri)
        return _manifest(uri), None
    if suffix in IMAGE_SUFFIXES and (storage.is_s3(uri) or not Path(uri).is_dir()):
        return _images([uri]), 1
    if not storage.is_s3(uri):
        if not Path(uri).is_dir():
            raise FileNotFoundError(f"no images at {uri}")
        source, n = _folder_images(uri)
        if not n:
            raise RequestError(f"{uri}: no {', '.join(IMAGE_SUFFIXES)} images below it")
        return source, n
    files = [f for f in storage.list_files(uri) if _suffix(f) in IMAGE_SUFFIXES]
    if not files:
        raise RequestError(f"{uri}: no {', '.join(IMAGE_SUFFIXES)} images below it")
    return _images(files), len(files)


def _batches(source: Source, size: int) -> Iterator[list[tuple[str, str, bytes]]]:
    batch: list[tuple[str, str, bytes]] = []
    for item in source:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def predict_batch(
    detector: Detector,
    input_uri: str | os.PathLike,
    output_uri: str | os.PathLike,
    options: PredictOptions | None = None,
    *,
    batch_size: int = BATCH,
    on_result: Callable[[str, dict], None] | None = None,
    overwrite: bool = False,
) -> dict:
    """Predict every image of ``input_uri`` into ``output_uri`` (see the module docstring).

    Returns ``{"images", "detections", "output"}``.
    """
    options = options or PredictOptions()
    storage.check_output(output_uri, overwrite=overwrite, writer="odp predict")
    source, total = open_source(str(input_uri))
    seen: dict[str, int] = {}
    images = boxes = 0
    progress = LazyProgress(total, "predict")  # type: ignore[arg-type]  # None: open-ended
    try:
        with storage.atomic_dir(output_uri, overwrite=overwrite, writer="odp predict") as out:
            for batch in _batches(source, batch_size):
                results = detector.predict(
                    [b for _, _, b in batch], options, [f for _, f, _ in batch]
                )
                for (name, file, _), result in zip(batch, results, strict=True):
                    k = seen.get(name, 0)
                    seen[name] = k + 1
                    unique = name if k == 0 else f"{name}_{k}"
                    doc = {"file": file, **result}
                    (out / f"{unique}.json").write_text(json.dumps(doc))
                    boxes += len(result.get("prediction", result.get("annotations", [])))
                    if on_result is not None:
                        on_result(unique, doc)
                images += len(batch)
                progress.update(len(batch))
    finally:
        progress.close()
    return {"images": images, "detections": boxes, "output": str(output_uri)}
