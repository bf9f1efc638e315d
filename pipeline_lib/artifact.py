"""The one reader/writer of ``model.tar.gz``, the SageMaker model artifact.

The tarball holds, flat (as SageMaker writes it): ``model_algo_1-symbol.json`` +
``model_algo_1-0000.params`` (the inference graph), ``model_algo_1.gluon.params`` (Gluon
weights, which seed incremental training), ``hyperparams.json`` (string values) and
``class_map.json``. Writing those files is training's job (``training/artifacts.py``); this
module packages a folder of them, lists and reads members, and extracts safely (members
confined to the target folder, regular files only). It imports neither MXNet nor MLflow.
"""

from __future__ import annotations

import json
import os
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from . import storage
from .annotations import read_class_map

MODEL_FILE = "model.tar.gz"
PREFIX = "model_algo_1"
SYMBOL = f"{PREFIX}-symbol.json"
PARAMS = f"{PREFIX}-0000.params"
GLUON_PARAMS = f"{PREFIX}.gluon.params"
HYPERPARAMS = "hyperparams.json"
CLASS_MAP = "class_map.json"
SIDE_FILES = (CLASS_MAP, HYPERPARAMS)  # the small files shown beside the tarball


# ------------------------------------------------------------------ writing


def package(model_dir: str | Path, tar_path: str | Path, *, recursive: bool = False) -> str:
    """Tar ``model_dir``'s files into ``tar_path`` (local or s3://), atomically.

    Flat by default (the folder's own files, as SageMaker does); ``recursive`` takes every
    file below the folder, named by its relative path.
    """
    model_dir = Path(model_dir)
    if recursive:
        files = sorted(p for p in model_dir.rglob("*") if p.is_file())
    else:
        files = [p for p in sorted(model_dir.iterdir()) if p.is_file()]
    with storage.atomic_write(tar_path) as tmp:
        with tarfile.open(tmp, "w:gz") as tar:
            for path in files:
                tar.add(path, arcname=path.relative_to(model_dir).as_posix())
    return str(tar_path)


@contextmanager
def as_tarball(model_dir_or_tar: str | os.PathLike) -> Iterator[Path]:
    """A local ``model.tar.gz`` for a tarball, a folder holding one, or a folder of model
    files (tarred, with their relative paths, into a temporary file); local or s3://."""
    uri = str(model_dir_or_tar)
    if storage.is_s3(uri):
        if uri.endswith(".tar.gz"):
            with storage.local_file(uri) as path:
                yield path
            return
        with storage.local_dir(uri) as folder, as_tarball(folder) as path:
            yield path
        return
    path = Path(uri)
    if path.is_file():
        yield path
        return
    if not path.is_dir():
        raise FileNotFoundError(f"no model at {uri}")
    if (path / MODEL_FILE).is_file():
        yield path / MODEL_FILE
        return
    if not any(p.is_file() for p in path.rglob("*")):
        raise FileNotFoundError(f"model folder {uri} is empty")
    with tempfile.TemporaryDirectory(prefix="odp-model-") as tmp:
        tar_path = Path(tmp) / MODEL_FILE
        package(path, tar_path, recursive=True)
        yield tar_path


# ------------------------------------------------------------------ reading members


def _open(tar_path: str | Path) -> tarfile.TarFile:
    return tarfile.open(tar_path, "r:*")


def member_names(tar_path: str | Path) -> list[str]:
    """Names of the tarball's members, in archive order."""
    with _open(tar_path) as tar:
        return tar.getnames()


def read_member(tar_path: str | Path, name: str) -> bytes:
    """Bytes of member ``name`` (exact archive path); ``KeyError`` when there is none."""
    with _open(tar_path) as tar:
        fh = tar.extractfile(name)
        if fh is None:
            raise KeyError(f"{name} in {tar_path} is not a regular file")
        return fh.read()


def class_map_json(tar_path: str | Path) -> dict[str, str]:
    """``class_map.json`` of a tarball as written (``{"0": "name", ...}``)."""
    return json.loads(read_member(tar_path, CLASS_MAP))


def hyperparameters_json(tar_path: str | Path) -> dict[str, str]:
    """``hyperparams.json`` of a tarball as written (string values)."""
    return json.loads(read_member(tar_path, HYPERPARAMS))


def copy_side_files(tar_path: str | Path, dest: Path) -> list[Path]:
    """Copy ``class_map.json``/``hyperparams.json`` (found at any folder depth) into ``dest``;
    a file already in ``dest`` is kept. ``ValueError`` when the tarball is unreadable."""
    found: list[Path] = []
    try:
        with _open(tar_path) as tar:
            for member in tar.getmembers():
                name = Path(member.name).name
                if member.isfile() and name in SIDE_FILES and not (dest / name).exists():
                    fh = tar.extractfile(member)
                    if fh is not None:
                        (dest / name).write_bytes(fh.read())
                        found.append(dest / name)
    except tarfile.TarError as exc:
        raise ValueError(f"{tar_path} is not a readable model.tar.gz: {exc}") from exc
    return found


# ------------------------------------------------------------------ extraction


def _regular_files_only(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
    """tarfile's ``data`` filter (no absolute paths, nothing outside ``dest``), then only
    regular files and folders: links, devices and pipes are skipped."""
    member = tarfile.data_filter(member, dest)
    return member if member.isfile() or member.isdir() else None


def extract(tar_path: str | Path, dest: str | Path) -> Path:
    """Extract a ``model.tar.gz`` into ``dest`` (created): members confined to ``dest``,
    regular files only."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with _open(tar_path) as tar:
        tar.extractall(dest, filter=_regular_files_only)  # noqa: S202  every member passes _regular_files_only (data_filter)
    return dest


def model_files(path: str | Path, scratch: Path) -> Path:
    """A folder with the artifact files: ``path`` itself, or its ``model.tar.gz`` extracted
    into ``scratch``."""
    path = Path(path)
    if path.is_dir():
        tars = list(path.glob("*.tar.gz"))
        if not (path / SYMBOL).exists() and len(tars) == 1:
            return extract(tars[0], scratch)
        return path
    return extract(path, scratch)


def read_artifact_config(model_dir: Path) -> tuple[dict[str, str], dict[int, str]]:
    """``(hyperparams, class_map)`` of an extracted artifact, with a clear error when
    incomplete."""
    missing = [n for n in (SYMBOL, PARAMS, HYPERPARAMS, CLASS_MAP) if not (model_dir / n).exists()]
    if missing:
        raise FileNotFoundError(f"model artifact in {model_dir} is missing {missing}")
    hp = json.loads((model_dir / HYPERPARAMS).read_text())
    return hp, read_class_map(model_dir / CLASS_MAP)
