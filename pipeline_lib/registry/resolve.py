"""``models:/`` (and other model URI) resolution to a local ``model.tar.gz``, with a cache.

Registry downloads are cached per tracking store, model and version under
``$ODP_HOME/cache/models``, so a task that resolves ``models:/<name>@champion`` twice
downloads once. Other forms that need a local copy (``runs:/``, ``s3://``, a folder of model
files) land in one place per URI under the same cache, replaced on every call: resolving
never leaves scratch folders behind.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path

from .. import storage
from ..artifact import MODEL_FILE, as_tarball
from ..settings import load_settings
from .store import get_client, resolve_tracking_uri

_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))/?$")


def _cache_dir(tracking_uri: str, name: str, version: str) -> Path:
    tag = hashlib.sha256(tracking_uri.encode()).hexdigest()[:12]
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
    return load_settings().home / "cache" / "models" / tag / safe / str(version)


def _uri_dir(uri: str) -> Path:
    """The one local place for a copy of ``uri`` (replaced, not accumulated, per call)."""
    tag = hashlib.sha256(uri.encode()).hexdigest()[:16]
    return load_settings().home / "cache" / "models" / "by-uri" / tag


def _find_model_file(folder: Path) -> Path:
    if folder.is_file():
        return folder
    direct = folder / MODEL_FILE
    if direct.is_file():
        return direct
    found = sorted(folder.rglob(MODEL_FILE))
    if not found:
        raise FileNotFoundError(f"no {MODEL_FILE} in {folder}")
    return found[0]


def resolve_model_uri(
    uri: str | os.PathLike,
    dst: str | os.PathLike | None = None,
    tracking_uri: str | None = None,
) -> Path:
    """Local path of the ``model.tar.gz`` behind ``uri``, downloading when needed.

    ``uri`` may be ``models:/<name>@<alias>``, ``models:/<name>/<version>``, ``runs:/<id>/model``,
    an ``s3://`` URI of a tarball or of a folder holding ``model.tar.gz``, a local tarball, or
    a local folder (holding ``model.tar.gz``, or the model files, which are then tarred into
    ``dst``). Registry downloads are cached per version under ``$ODP_HOME/cache/models`` unless
    ``dst`` is given; other copies go to one folder per URI there. Calls to a tracking server
    are bounded in time (:mod:`.store`).
    """
    uri = str(uri)
    if uri.startswith(("models:/", "runs:/")):
        import mlflow.artifacts

        tracking = resolve_tracking_uri(tracking_uri)
        client = get_client(tracking)
        match = _MODELS_URI.match(uri)
        if match:
            name = match["name"]
            mv = (
                client.get_model_version_by_alias(name, match["alias"])
                if match["alias"]
                else client.get_model_version(name, match["version"])
            )
            target = Path(dst) if dst else _cache_dir(tracking, name, mv.version)
            if not dst:
                try:
                    return _find_model_file(target)
                except FileNotFoundError:
                    pass
            download_uri = client.get_model_version_download_uri(name, mv.version)
        else:
            target = Path(dst) if dst else _uri_dir(f"{tracking} {uri}")
            download_uri = uri
        target.mkdir(parents=True, exist_ok=True)
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=download_uri,
            dst_path=str(target),
            tracking_uri=tracking,
            registry_uri=tracking,
        )
        return _find_model_file(Path(local))
    if storage.is_s3(uri):
        target = Path(dst) if dst else _uri_dir(uri)
        source = uri if uri.endswith(".tar.gz") else storage.join(uri, MODEL_FILE)
        return storage.download(source, target / MODEL_FILE)
    path = Path(uri)
    if path.is_file():
        return path
    if path.is_dir():
        if (path / MODEL_FILE).is_file():
            return path / MODEL_FILE
        target = Path(dst) if dst else _uri_dir(str(path.resolve()))
        target.mkdir(parents=True, exist_ok=True)
        with as_tarball(path) as tar_path, storage.atomic_write(target / MODEL_FILE) as tmp:
            shutil.copyfile(tar_path, tmp)
        return target / MODEL_FILE
    raise FileNotFoundError(f"no model at {uri}")
