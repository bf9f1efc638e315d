"""The three input formats of the DAGs: which Params each reads, how it is validated, and
what training and evaluation read from it (no Airflow objects inside).

* ``image+json``: ``dataset_uri`` (a root with the four channel folders); converted to
  RecordIO, cached by content.
* ``recordio``: ``train_rec_uri`` / ``validation_rec_uri``; trained as they are (each is
  linked, or copied on S3, into a channel folder of its own under the run root).
* ``augmented-manifest``: ``train_manifest_uri`` / ``validation_manifest_uri`` with
  ``attribute_names`` (SageMaker's order: the image reference, then the label attribute);
  written out as image+JSON channels once per content hash (cached), then converted to
  RecordIO like an image+JSON dataset.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from .failure import StageFailed

log = logging.getLogger(__name__)

FORMATS = ("image+json", "recordio", "augmented-manifest")
#: Param names of the (train, validation) URIs of each file-based format.
CHANNEL_PARAMS = {
    "recordio": ("train_rec_uri", "validation_rec_uri"),
    "augmented-manifest": ("train_manifest_uri", "validation_manifest_uri"),
}
_SUFFIXES = {"recordio": (".rec",), "augmented-manifest": (".jsonl", ".manifest", ".json")}
CHANNELS = ("train", "validation")
DATASET_FOLDERS = ("train", "validation", "train_annotation", "validation_annotation")


def _text(params: dict[str, Any], name: str) -> str:
    value = params.get(name)
    return value.strip() if isinstance(value, str) else ""


def _uri(value: str, name: str) -> str:
    """A local path made absolute and checked to exist; s3:// URIs parsed strictly."""
    from pipeline_lib import storage

    try:
        value = storage.check_uri(value, f"Param '{name}'")
    except ValueError as exc:
        raise StageFailed(str(exc)) from None
    if storage.is_s3(value):
        return value
    path = Path(value).expanduser().resolve()
    if not path.exists():
        raise StageFailed(f"Param '{name}': {path} does not exist")
    return str(path)


def resolve_data(params: dict[str, Any]) -> dict[str, Any]:
    """The data part of the run's inputs; a combination that cannot work is refused with
    a message naming the Params involved."""
    fmt = params.get("input_format") or "image+json"
    if fmt not in FORMATS:
        raise StageFailed(f"Param 'input_format' must be one of {list(FORMATS)}, not {fmt!r}")
    for other, names in CHANNEL_PARAMS.items():
        if other == fmt:
            continue
        given = [n for n in names if _text(params, n)]
        if given:
            raise StageFailed(
                f"Param {', '.join(repr(n) for n in given)} belongs to input_format "
                f"'{other}', but input_format is '{fmt}': clear it or change input_format"
            )
    if fmt == "image+json":
        return {"input_format": fmt, "dataset_uri": _image_json_root(params)}
    train_name, val_name = CHANNEL_PARAMS[fmt]
    uris = {}
    for channel, name in zip(CHANNELS, (train_name, val_name), strict=True):
        value = _text(params, name)
        if not value:
            raise StageFailed(
                f"Param '{name}' is empty: input_format '{fmt}' needs a {channel} channel "
                f"({' or '.join(_SUFFIXES[fmt])} file)"
            )
        if not value.endswith(_SUFFIXES[fmt]):
            raise StageFailed(
                f"Param '{name}' = {value!r}: input_format '{fmt}' expects a "
                f"{' or '.join(_SUFFIXES[fmt])} file"
            )
        uris[channel] = _uri(value, name)
    if uris["train"] == uris["validation"]:
        raise StageFailed(f"Params '{train_name}' and '{val_name}' name the same file")
    data: dict[str, Any] = {"input_format": fmt, "dataset_uri": uris["train"], "channels": uris}
    if fmt == "augmented-manifest":
        data["attribute_names"] = _attribute_names(params.get("attribute_names"))
    return data


def _image_json_root(params: dict[str, Any]) -> str:
    from pipeline_lib import storage

    dataset = _text(params, "dataset_uri")
    if not dataset:
        raise StageFailed("Param 'dataset_uri' is empty: give an image+JSON dataset root")
    if dataset.endswith((".rec", ".jsonl", ".manifest")):
        raise StageFailed(
            f"Param 'dataset_uri' = {dataset!r} is a file, but input_format 'image+json' "
            "reads a dataset folder: set input_format to 'recordio' or 'augmented-manifest' "
            "and give the train/validation URIs"
        )
    try:
        dataset = storage.check_uri(dataset, "Param 'dataset_uri'")
    except ValueError as exc:
        raise StageFailed(str(exc)) from None
    if storage.is_s3(dataset):
        return dataset
    path = Path(dataset).expanduser().resolve()
    if not path.is_dir():
        raise StageFailed(f"Param 'dataset_uri': {path} is not a folder")
    missing = [c for c in DATASET_FOLDERS if not (path / c).is_dir()]
    if missing:  # not a dataset at all: say so now, not after the first task
        raise StageFailed(
            f"Param 'dataset_uri': {path} is not an image+JSON dataset (no "
            f"{', '.join(m + '/' for m in missing)}): expected the four channel folders"
        )
    return str(path)


def _attribute_names(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [v.strip() for v in value.replace(",", "\n").splitlines() if v.strip()]
    if value is None:
        value = ["source-ref", "bounding-box"]
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(v, str) and v for v in value)
        or value[0] == value[1]
    ):
        raise StageFailed(
            f"Param 'attribute_names' = {value!r}: expected two different names in "
            "SageMaker's order, the image reference then the label attribute "
            '(e.g. ["source-ref", "bounding-box"])'
        )
    return value


def content_hash(inputs: dict[str, Any]) -> str:
    """What training reads, hashed (:func:`pipeline_lib.input_hash.input_content_hash`)."""
    from pipeline_lib.input_hash import input_content_hash

    channels = inputs.get("channels") or {}
    return input_content_hash(
        inputs["input_format"],
        dataset_uri=inputs["dataset_uri"],
        train_uri=channels.get("train"),
        validation_uri=channels.get("validation"),
        attribute_names=tuple(inputs.get("attribute_names") or ("source-ref", "bounding-box")),
    )


def validate_channels(inputs: dict[str, Any], report_uri: str, empty_policy: str):
    """Validate each channel file of a file-based format into ``report_uri/<channel>``;
    returns ``(ok, summary, text)`` with the channels' counts merged under their names."""
    from pipeline_lib import storage
    from pipeline_lib.validation import ValidationOptions, validate

    options = ValidationOptions(
        empty_policy=empty_policy,
        manifest_attributes=tuple(inputs.get("attribute_names") or ("source-ref", "bounding-box")),
    )
    merged: dict[str, Any] = {
        "ok": True,
        "format": inputs["input_format"],
        "counts": {"images": {}, "boxes": {}, "empty_images": {}, "errors": 0, "warnings": 0},
        "class_counts": {},
        "label_width": 0,
        "first_findings": [],
        "report_uri": report_uri,
    }
    texts = []
    for channel, uri in inputs["channels"].items():
        out = storage.join(report_uri, channel)
        with storage.atomic_dir(out, overwrite=True, writer="odp validate") as tmp:
            report = validate(uri, options=options, report_dir=str(tmp))
        summary = json.loads(json.dumps(report.summary_dict()).replace(str(tmp), out))
        texts.append(f"[{channel}] {uri}\n{report.human_summary().replace(str(tmp), out)}")
        merged["ok"] = merged["ok"] and report.ok
        for key in ("images", "boxes", "empty_images"):
            merged["counts"][key][channel] = sum(summary["counts"][key].values())
        for key in ("errors", "warnings"):
            merged["counts"][key] += summary["counts"][key]
        for cid, entry in summary["class_counts"].items():
            target = merged["class_counts"].setdefault(cid, {"name": entry.get("name")})
            target[channel] = sum(v for k, v in entry.items() if k != "name")
        merged["label_width"] = max(merged["label_width"], summary["label_width"])
        merged["first_findings"].extend(summary["first_findings"])
    return merged["ok"], merged, "\n".join(texts)


def stage_recordio(inputs: dict[str, Any], validation: dict[str, Any]) -> dict[str, Any]:
    """Each ``.rec`` (and its ``.idx``) in a channel folder of its own under the run root,
    with ``class_map.json``: hard links locally (no copy), copies on S3."""
    from pipeline_lib import storage

    channels = {}
    for channel, rec in inputs["channels"].items():
        folder = storage.join(inputs["run_root"], "convert", channel)
        with storage.atomic_dir(folder, overwrite=True, writer="odp_airflow stage") as tmp:
            for src in (rec, rec[: -len(".rec")] + ".idx"):
                if src != rec and not storage.exists(src):
                    continue  # the reader rebuilds a missing index
                _link_or_copy(src, Path(tmp, f"{channel}{Path(src).suffix}"))
            Path(tmp, "class_map.json").write_text(json.dumps(_class_names(validation)))
        channels[channel] = folder
    log.info("RecordIO trains as it is: %s", ", ".join(inputs["channels"].values()))
    return {
        "content_hash": None,
        "channels": channels,
        "label_width": validation["label_width"],
        "eval_uri": storage.join(channels["validation"], "validation.rec"),
        "cache_hit": False,
    }


def _link_or_copy(src: str, dest: Path) -> None:
    from pipeline_lib import storage

    if storage.is_s3(src):
        storage.download(src, dest)
        return
    try:
        os.link(src, dest)
    except OSError:  # another file system
        storage.download(src, dest)


def _class_names(validation: dict[str, Any]) -> dict[str, str]:
    return {k: v.get("name") or f"class_{k}" for k, v in validation["class_counts"].items()}


def manifests_as_image_json(inputs: dict[str, Any], key: str) -> dict[str, str]:
    """The two manifests written out as image+JSON roots (one per channel), cached under
    ``{artifact_root}/cache/manifest/<content hash>``; returns channel -> root."""
    from pipeline_lib import storage
    from pipeline_lib.manifest import manifest_to_dataset

    source, label = inputs["attribute_names"]
    cache = storage.join(inputs["artifact_root"], "cache", "manifest", key)
    roots = {c: storage.join(cache, c) for c in CHANNELS}
    marker = storage.join(cache, "_SUCCESS")
    if storage.exists(marker):
        log.info("manifests unchanged (content hash %s): reusing %s", key, cache)
        return roots
    for channel, manifest in inputs["channels"].items():
        n = manifest_to_dataset(
            manifest,
            roots[channel],
            attribute=label,
            channel=channel,
            source_attribute=source,
            progress=False,
            overwrite=True,  # a retry replaces what an interrupted try wrote
        )
        log.info("manifest %s: %d images written as image+JSON", manifest, n)
    with storage.atomic_write(marker) as tmp:
        tmp.write_text(json.dumps(roots))
    return roots


def convert_manifests(inputs: dict[str, Any], validation: dict[str, Any]) -> dict[str, Any]:
    """Manifests -> image+JSON (cached) -> RecordIO per channel (cached)."""
    from pipeline_lib import storage
    from pipeline_lib.recordio.convert import convert_to_recordio

    key = content_hash(inputs)
    roots = manifests_as_image_json(inputs, key)
    cache = storage.join(inputs["artifact_root"], "cache", "recordio", f"manifest-{key}")
    marker = storage.join(cache, "_SUCCESS")
    channels = {c: storage.join(cache, c) for c in CHANNELS}
    if storage.exists(marker):
        log.info("reusing RecordIO in %s", cache)
        return {**json.loads(storage.read_bytes(marker)), "cache_hit": True}
    label_width = 0
    for channel, uri in channels.items():
        result = convert_to_recordio(roots[channel], storage.join(uri, channel), channel=channel)
        label_width = max(label_width, result.label_width)
        with storage.atomic_write(storage.join(uri, "class_map.json")) as tmp:
            tmp.write_text(json.dumps(_class_names(validation)))
    meta = {
        "content_hash": key,
        "channels": channels,
        "label_width": label_width,
        "eval_uri": roots["validation"],
    }
    with storage.atomic_write(marker) as tmp:
        tmp.write_text(json.dumps(meta))
    return {**meta, "cache_hit": False}
