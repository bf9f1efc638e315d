"""Local paths and s3:// URIs behind one small interface, with atomic writes.

Writes go to a temporary name and are moved into place only when complete, so a crash or
a retry never leaves a half-written file that looks finished. S3 endpoints follow boto3's
own configuration (``AWS_ENDPOINT_URL`` works for MinIO, moto and other S3-compatible stores).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

S3_PREFIX = "s3://"


def is_s3(uri: str | os.PathLike) -> bool:
    """True for ``s3://bucket/key`` URIs."""
    return str(uri).startswith(S3_PREFIX)


def split_s3(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> ``("bucket", "a/b")``."""
    rest = str(uri)[len(S3_PREFIX) :]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise ValueError(f"not an s3 URI with a bucket: {uri!r}")
    return bucket, key


def join(base: str | os.PathLike, *parts: str) -> str:
    """Join path parts onto a local path or an s3 URI."""
    base = str(base)
    if is_s3(base):
        return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])
    return str(Path(base, *parts))


def _s3_client():
    import boto3  # deferred: boto3 import costs ~0.3 s

    return boto3.client("s3")


def exists(uri: str | os.PathLike) -> bool:
    """Whether a file (or, for S3, an object or prefix) exists."""
    if not is_s3(uri):
        return Path(uri).exists()
    bucket, key = split_s3(str(uri))
    resp = _s3_client().list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
    return resp.get("KeyCount", 0) > 0


def list_files(uri: str | os.PathLike) -> list[str]:
    """All files below a folder or prefix, as URIs/paths, sorted."""
    if not is_s3(uri):
        root = Path(uri)
        return sorted(str(p) for p in root.rglob("*") if p.is_file())
    bucket, key = split_s3(str(uri))
    prefix = key.rstrip("/") + "/" if key else ""
    out: list[str] = []
    paginator = _s3_client().get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        out.extend(f"{S3_PREFIX}{bucket}/{obj['Key']}" for obj in page.get("Contents", []))
    return sorted(out)


def read_bytes(uri: str | os.PathLike) -> bytes:
    """Whole content of a (small) file."""
    if not is_s3(uri):
        return Path(uri).read_bytes()
    bucket, key = split_s3(str(uri))
    return _s3_client().get_object(Bucket=bucket, Key=key)["Body"].read()


def download(uri: str, dest: str | os.PathLike) -> Path:
    """Copy one file to a local path (streamed; multipart for large S3 objects)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if is_s3(uri):
        bucket, key = split_s3(uri)
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
        try:
            _s3_client().download_file(bucket, key, str(tmp))
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
    else:
        shutil.copyfile(uri, dest)
    return dest


def upload(src: str | os.PathLike, uri: str) -> str:
    """Copy a local file to a path or URI atomically (S3 objects appear only when complete)."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        _s3_client().upload_file(str(src), bucket, key)  # multipart above 8 MB
        return uri
    dest = Path(uri)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return str(dest)


@contextlib.contextmanager
def atomic_write(uri: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary local path; on success it becomes ``uri``, on error it vanishes."""
    uri = str(uri)
    if is_s3(uri):
        with tempfile.TemporaryDirectory(prefix="odp-") as tmpdir:
            tmp = Path(tmpdir) / "part"
            yield tmp
            upload(tmp, uri)
        return
    dest = Path(uri)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
    try:
        yield tmp
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(uri: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary local folder; on success it replaces ``uri`` as a whole."""
    uri = str(uri)
    if is_s3(uri):
        with tempfile.TemporaryDirectory(prefix="odp-") as tmpdir:
            yield Path(tmpdir)
            upload_dir(tmpdir, uri)
        return
    dest = Path(uri)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
    tmp.mkdir()
    try:
        yield tmp
        if dest.exists():
            old = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.old")
            os.replace(dest, old)
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def upload_dir(src: str | os.PathLike, uri: str) -> str:
    """Copy every file below a local folder to a folder or prefix."""
    src = Path(src)
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        upload(path, join(uri, path.relative_to(src).as_posix()))
    return uri


def download_dir(uri: str, dest: str | os.PathLike) -> Path:
    """Copy every file below a folder or prefix to a local folder."""
    dest = Path(dest)
    if not is_s3(uri):
        shutil.copytree(uri, dest, dirs_exist_ok=True)
        return dest
    _, key = split_s3(uri)
    prefix = key.rstrip("/") + "/" if key else ""
    for file_uri in list_files(uri):
        rel = split_s3(file_uri)[1][len(prefix) :]
        download(file_uri, dest / rel)
    return dest


@contextlib.contextmanager
def local_dir(uri: str | os.PathLike) -> Iterator[Path]:
    """A local folder with the content of ``uri``: the path itself, or a temporary download."""
    if not is_s3(uri):
        yield Path(uri)
        return
    with tempfile.TemporaryDirectory(prefix="odp-") as tmpdir:
        yield download_dir(str(uri), tmpdir)


@contextlib.contextmanager
def local_file(uri: str | os.PathLike) -> Iterator[Path]:
    """A local path with the content of file ``uri`` (downloaded to a temp file for S3)."""
    if not is_s3(uri):
        yield Path(uri)
        return
    with tempfile.TemporaryDirectory(prefix="odp-") as tmpdir:
        yield download(str(uri), Path(tmpdir) / Path(split_s3(str(uri))[1]).name)
