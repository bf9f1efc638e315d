"""Local paths and s3:// URIs behind one small interface, with atomic writes.

One job (storage access) in one module: every function takes either kind of location.
Writes go to a temporary name and are moved into place only when complete, so a crash or
a retry never leaves a half-written file that looks finished; a folder published to S3
carries a completion manifest written last (:func:`atomic_dir`). S3 endpoints follow boto3's
own configuration (``AWS_ENDPOINT_URL`` works for MinIO, moto and other S3-compatible
stores); the client has connect/read timeouts and a bounded retry with backoff
(``AWS_MAX_ATTEMPTS``, default 4; ``AWS_RETRY_MODE``, default ``standard``).
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import shutil
import stat
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from . import bounds

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


_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_IP = re.compile(r"\d+\.\d+\.\d+\.\d+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_URI = 1024


def check_uri(uri: object, what: str = "URI") -> str:
    """``uri`` parsed strictly: a local path (made absolute) or ``s3://bucket[/key]`` with a
    valid bucket name and no empty, ``.`` or ``..`` key segment (returned without a trailing
    slash). Any other scheme (``file://``, ``http://``, ``S3://``), a control character or
    more than :data:`MAX_URI` characters is a ``ValueError`` naming ``what``."""
    if not isinstance(uri, str) or not uri.strip() or len(uri) > MAX_URI or _CONTROL.search(uri):
        raise ValueError(f"{what} {str(uri)[:80]!r}: expected a local path or s3://bucket/prefix")
    uri = uri.strip()
    if "://" not in uri:
        return os.path.abspath(os.path.expanduser(uri))
    if not uri.startswith(S3_PREFIX):
        raise ValueError(
            f"{what} {uri[:80]!r}: scheme {uri.split('://', 1)[0]!r} is not supported: expected "
            "a local path or s3://bucket/prefix"
        )
    bucket, _, key = uri[len(S3_PREFIX) :].partition("/")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket or _IP.fullmatch(bucket):
        raise ValueError(f"{what} {uri[:80]!r}: {bucket[:64]!r} is not a valid S3 bucket name")
    key = key.rstrip("/")
    if key and any(part in ("", ".", "..") for part in key.split("/")):
        raise ValueError(
            f"{what} {uri[:80]!r}: the key has an empty, '.' or '..' segment: expected "
            "s3://bucket/prefix"
        )
    return f"{S3_PREFIX}{bucket}/{key}" if key else f"{S3_PREFIX}{bucket}"


def within(uri: str, root: str) -> bool:
    """Whether ``uri`` is ``root`` or below it (both as :func:`check_uri` returns them; local
    paths compared with symlinks resolved)."""
    if is_s3(uri) != is_s3(root):
        return False
    if is_s3(uri):
        return uri == root or uri.startswith(root.rstrip("/") + "/")
    real, base = os.path.realpath(uri), os.path.realpath(root)
    return real == base or real.startswith(base.rstrip(os.sep) + os.sep)


def join(base: str | os.PathLike, *parts: str) -> str:
    """Join path parts onto a local path or an s3 URI."""
    base = str(base)
    if is_s3(base):
        return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])
    return str(Path(base, *parts))


_CLIENTS: dict[tuple, object] = {}
_CLIENTS_LOCK = threading.Lock()


def _token() -> str:
    """A random name part for temporary files (os.urandom: no ``uuid`` import)."""
    return os.urandom(16).hex()


def _s3_client():
    """A boto3 S3 client, cached per process and per endpoint/credential environment.

    boto3 clients are thread-safe but must not cross ``fork``; keying on the pid gives each
    DataLoader/Pool worker its own. Keying on the environment lets tests point
    ``AWS_ENDPOINT_URL`` at a fresh server.
    """
    env = os.environ
    key = (
        os.getpid(),
        env.get("AWS_ENDPOINT_URL"),
        env.get("AWS_ENDPOINT_URL_S3"),
        env.get("AWS_ACCESS_KEY_ID"),
        env.get("AWS_SECRET_ACCESS_KEY"),
        env.get("AWS_SESSION_TOKEN"),
        env.get("AWS_PROFILE"),
        env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION"),
        env.get("AWS_MAX_ATTEMPTS"),
        env.get("AWS_RETRY_MODE"),
    )
    client = _CLIENTS.get(key)
    if client is None:
        import boto3  # deferred: boto3 import costs ~0.3 s

        with _CLIENTS_LOCK:
            client = _CLIENTS.get(key)
            if client is None:
                from botocore.config import Config

                attempts = bounds.env_int("AWS_MAX_ATTEMPTS", 4, minimum=1, maximum=20)
                retries = {
                    "total_max_attempts": attempts,
                    "mode": env.get("AWS_RETRY_MODE") or "standard",
                }
                config = Config(connect_timeout=10, read_timeout=120, retries=retries)
                client = boto3.session.Session().client("s3", config=config)
                if len(_CLIENTS) > 16:
                    _CLIENTS.clear()
                _CLIENTS[key] = client
    return client


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
        tmp = dest.with_name(f".{dest.name}.{_token()}.part")
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
    tmp = dest.with_name(f".{dest.name}.{_token()}.part")
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
    tmp = dest.with_name(f".{dest.name}.{_token()}.part")
    try:
        yield tmp
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


#: The marker of a folder an ``odp`` command published (:func:`atomic_dir`): the files it
#: wrote and who wrote them. It is what lets ``--overwrite`` replace the folder (only an
#: earlier output of the same writer, holding nothing else), and on S3 it is also the
#: completion manifest that readers trust.
COMPLETE_MARKER = ".odp-complete"
#: S3: a publication under way lists every key it may leave behind here first, so that an
#: interrupted one can be replaced by a retry without touching keys it did not write.
PENDING_MARKER = ".odp-pending"
_MARKERS = (COMPLETE_MARKER, PENDING_MARKER)
_MAX_MARKER_BYTES = 64 << 20
OVERWRITE_HINT = "pass --overwrite to replace an earlier output of this command"


class OutputExistsError(FileExistsError):
    """An output location that is refused: something is there that this command did not
    write (or, without ``overwrite``, anything at all). Nothing was written or removed."""

    def __init__(self, message: str):
        super().__init__(message)


def check_output(
    uri: str | os.PathLike, *, overwrite: bool = False, writer: str | None = None
) -> None:
    """Refuse an output folder that would destroy anything (before any work is done).

    A missing or empty folder is fine. A file (or a symlink) at ``uri`` is never replaced by
    a folder. A non-empty folder is replaced only with ``overwrite``, and then only when it
    is an earlier output of ``writer``: it carries :data:`COMPLETE_MARKER` and holds no
    file or folder the marker does not list. Raises :class:`OutputExistsError`.
    """
    if is_s3(uri):
        _check_s3_output(str(uri), overwrite, writer)
    else:
        _check_local_output(Path(uri), overwrite, writer)


def check_output_file(uri: str | os.PathLike, *, overwrite: bool = False) -> None:
    """Refuse an existing output file unless ``overwrite``; never replace a folder."""
    if is_s3(uri):
        if not overwrite and _s3_object_exists(str(uri)):
            raise OutputExistsError(f"{uri}: exists; expected a new file ({OVERWRITE_HINT})")
        return
    try:
        mode = os.lstat(uri).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return
    if stat.S_ISDIR(mode):
        raise OutputExistsError(f"{uri}: a folder exists there; expected a file path")
    if not stat.S_ISREG(mode):
        raise OutputExistsError(f"{uri}: a symlink or special file exists there; expected a file")
    if not overwrite:
        raise OutputExistsError(f"{uri}: exists; expected a new file ({OVERWRITE_HINT})")


@dataclass(frozen=True)
class _Owned:
    files: frozenset[str]
    writer: str | None


def _parse_marker(raw: bytes | None) -> _Owned | None:
    import json

    if raw is None:
        return None
    try:
        data = json.loads(raw)
        files = data["files"]
        writer = data.get("writer")
        if not isinstance(files, dict) or not isinstance(writer, str | None):
            return None
        return _Owned(frozenset(str(k) for k in files), writer)
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None


def _read_local_marker(folder: Path) -> bytes | None:
    try:
        fd = os.open(folder / COMPLETE_MARKER, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, _MAX_MARKER_BYTES)
    finally:
        os.close(fd)


def _refuse_existing(where: str, owned: _Owned | None, writer: str | None) -> None:
    """The checks shared by local folders and S3 prefixes once something exists there."""
    if owned is None:
        raise OutputExistsError(
            f"{where}: exists and was not written by odp (no {COMPLETE_MARKER}); --overwrite "
            "replaces only an earlier output of the same command: move it away first"
        )
    if writer and owned.writer and owned.writer != writer:
        raise OutputExistsError(
            f"{where}: an output of {owned.writer}, not of {writer}; --overwrite replaces only "
            "an earlier output of the same command"
        )


def _stray_local(folder: Path, files: frozenset[str]) -> str | None:
    """The first entry below ``folder`` that ``files`` does not account for (no symlink is
    followed), or None."""
    parents = {p for f in files for p in _parents(f)}
    for here, dirs, names in os.walk(folder):
        rel_dir = os.path.relpath(here, folder)
        for name in sorted(dirs):
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if rel not in parents:  # a folder holding none of our files (or a symlink)
                return rel
        for name in sorted(names):
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if rel not in files and rel not in _MARKERS:
                return rel
    return None


def _parents(rel: str) -> list[str]:
    parts = rel.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def _check_local_output(dest: Path, overwrite: bool, writer: str | None) -> None:
    try:
        mode = os.lstat(dest).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return  # a parent that is a file fails later with its own clear error
    if not stat.S_ISDIR(mode):
        kind = "a symlink" if stat.S_ISLNK(mode) else "a file"
        raise OutputExistsError(
            f"{dest}: {kind} exists there and is never replaced by an output folder; "
            "expected a new or empty folder"
        )
    if not os.listdir(dest):
        return
    if not overwrite:
        raise OutputExistsError(
            f"{dest}: exists and is not empty; expected a new or empty folder ({OVERWRITE_HINT})"
        )
    owned = _parse_marker(_read_local_marker(dest))
    _refuse_existing(str(dest), owned, writer)
    assert owned is not None  # noqa: S101  narrows the type: _refuse_existing raised otherwise
    stray = _stray_local(dest, owned.files)
    if stray is not None:
        raise OutputExistsError(
            f"{dest / stray}: not written by {owned.writer or 'odp'}; --overwrite replaces only "
            "the files of an earlier output: move it away first"
        )


def _s3_object_exists(uri: str) -> bool:
    bucket, key = split_s3(uri)
    if not key:
        return False
    resp = _s3_client().list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
    return any(o["Key"] == key for o in resp.get("Contents", []))


def _s3_marker(bucket: str, key: str) -> bytes | None:
    try:
        body = _s3_client().get_object(Bucket=bucket, Key=key)["Body"]
    except Exception as exc:  # botocore's NoSuchKey: not imported here (start-up cost)
        if _http_status(exc) == 404:
            return None
        raise
    return body.read(_MAX_MARKER_BYTES)


def _s3_owned(uri: str) -> tuple[_Owned | None, set[str]]:
    """What the markers of an S3 folder account for: the complete marker's owner and
    files (None without one), and every file either marker lists."""
    bucket, key = split_s3(uri)
    prefix = key.rstrip("/") + "/" if key else ""
    complete = _parse_marker(_s3_marker(bucket, prefix + COMPLETE_MARKER))
    pending = _parse_marker(_s3_marker(bucket, prefix + PENDING_MARKER))
    known = set(complete.files if complete else ()) | set(pending.files if pending else ())
    owner = complete or pending
    return owner, known


def _check_s3_output(uri: str, overwrite: bool, writer: str | None) -> None:
    if _s3_object_exists(uri.rstrip("/")):
        raise OutputExistsError(
            f"{uri}: an object exists there and is never replaced by an output folder; "
            "expected a new or empty prefix"
        )
    bucket, key = split_s3(uri)
    existing = list_files(uri)
    if not existing:
        return
    if not overwrite:
        raise OutputExistsError(
            f"{uri}: exists and is not empty; expected a new or empty prefix ({OVERWRITE_HINT})"
        )
    prefix = key.rstrip("/") + "/" if key else ""
    owner, known = _s3_owned(uri)
    _refuse_existing(uri, owner, writer)
    for file_uri in existing:
        rel = _relative(file_uri, bucket, prefix)
        if rel not in known and rel not in _MARKERS:
            raise OutputExistsError(
                f"{file_uri}: not written by {owner.writer if owner else 'odp'}; --overwrite "
                "replaces only the files of an earlier output: move it away first"
            )


def _marker_bytes(files: dict[str, int], writer: str | None) -> bytes:
    import json

    body: dict = {"files": files}
    if writer:
        body["writer"] = writer
    return json.dumps(body, sort_keys=True).encode()


@contextlib.contextmanager
def atomic_dir(
    uri: str | os.PathLike, *, overwrite: bool = False, writer: str | None = None
) -> Iterator[Path]:
    """Yield a temporary local folder; on success it replaces ``uri`` as a whole.

    Never destructive: :func:`check_output` runs first (a missing or empty ``uri`` is fine;
    with ``overwrite``, an earlier output of ``writer`` too) and again when publishing.
    The published folder carries :data:`COMPLETE_MARKER` (its files, its writer).

    Locally the temporary folder is a sibling, renamed into place. On S3, where a prefix
    cannot be renamed: a pending marker lists every key the publication may leave, the old
    completion marker is removed (the folder reads as incomplete from then on), the files
    are uploaded, keys of the earlier publication that are not rewritten are deleted, and
    the new completion marker is written last. Readers (:func:`download_dir`,
    :func:`local_dir`) take exactly the files the marker lists; a folder without one
    (uploaded by another tool) is read as listed.
    """
    uri = str(uri)
    check_output(uri, overwrite=overwrite, writer=writer)
    if is_s3(uri):
        with tempfile.TemporaryDirectory(prefix="odp-") as tmpdir:
            yield Path(tmpdir)
            check_output(uri, overwrite=overwrite, writer=writer)
            _publish_s3_dir(Path(tmpdir), uri, writer)
        return
    dest = Path(uri)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{_token()}.part")
    tmp.mkdir()
    try:
        yield tmp
        files = {p.relative_to(tmp).as_posix(): p.stat().st_size for p in _files_below(tmp)}
        (tmp / COMPLETE_MARKER).write_bytes(_marker_bytes(files, writer))
        _publish_local_dir(tmp, dest, overwrite, writer)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _publish_local_dir(tmp: Path, dest: Path, overwrite: bool, writer: str | None) -> None:
    """Rename ``tmp`` onto ``dest``: over nothing or an empty folder directly; over an
    earlier output, which is moved aside, checked again (nothing of anyone else's may have
    appeared meanwhile) and only then removed."""
    check_output(dest, overwrite=overwrite, writer=writer)
    try:
        os.rename(tmp, dest)  # onto nothing, or an empty folder
        return
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
    old = dest.with_name(f".{dest.name}.{_token()}.old")
    os.rename(dest, old)
    try:
        check_output(old, overwrite=overwrite, writer=writer)
    except OutputExistsError:
        os.rename(old, dest)  # something appeared while we worked: give it all back
        raise
    os.rename(tmp, dest)
    shutil.rmtree(old, ignore_errors=True)


def _publish_s3_dir(src: Path, uri: str, writer: str | None = None) -> None:
    bucket, key = split_s3(uri)
    prefix = key.rstrip("/") + "/" if key else ""
    client = _s3_client()
    files = {p.relative_to(src).as_posix(): p.stat().st_size for p in _files_below(src)}
    _, earlier = _s3_owned(uri)
    pending = {**dict.fromkeys(earlier, 0), **files}
    client.put_object(
        Bucket=bucket, Key=prefix + PENDING_MARKER, Body=_marker_bytes(pending, writer)
    )
    client.delete_object(Bucket=bucket, Key=prefix + COMPLETE_MARKER)
    for rel in sorted(files):
        upload(src / rel, join(uri, rel))
    stale = sorted(earlier - set(files))  # only keys an earlier publication wrote
    for i in range(0, len(stale), 1000):  # DeleteObjects takes at most 1000 keys
        objects = [{"Key": prefix + rel} for rel in stale[i : i + 1000]]
        client.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
    client.put_object(
        Bucket=bucket, Key=prefix + COMPLETE_MARKER, Body=_marker_bytes(files, writer)
    )
    client.delete_object(Bucket=bucket, Key=prefix + PENDING_MARKER)


def _relative(file_uri: str, bucket: str, prefix: str) -> str:
    return file_uri[len(f"{S3_PREFIX}{bucket}/{prefix}") :]


def _files_below(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def published_files(uri: str) -> dict[str, int] | None:
    """The files (relative path -> size) of an S3 folder published by :func:`atomic_dir`,
    or None when the folder has no completion manifest (not published that way, or a
    publication under way)."""
    import json

    bucket, key = split_s3(uri)
    prefix = key.rstrip("/") + "/" if key else ""
    try:
        body = _s3_client().get_object(Bucket=bucket, Key=prefix + COMPLETE_MARKER)["Body"]
    except Exception as exc:  # botocore's NoSuchKey: not imported here (start-up cost)
        if _http_status(exc) == 404:
            return None
        raise
    return {str(k): int(v) for k, v in json.loads(body.read())["files"].items()}


def _http_status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return None


def upload_dir(src: str | os.PathLike, uri: str) -> str:
    """Copy every file below a local folder to a folder or prefix."""
    src = Path(src)
    for path in _files_below(src):
        upload(path, join(uri, path.relative_to(src).as_posix()))
    return uri


def download_dir(uri: str, dest: str | os.PathLike) -> Path:
    """Copy every file below a folder or prefix to a local folder."""
    dest = Path(dest)
    if not is_s3(uri):
        shutil.copytree(uri, dest, dirs_exist_ok=True)
        return dest
    published = published_files(uri)
    if published is not None:  # exactly what the last complete publication wrote
        for rel in sorted(published):
            download(join(uri, rel), dest / rel)
        return dest
    _, key = split_s3(uri)
    prefix = key.rstrip("/") + "/" if key else ""
    for file_uri in list_files(uri):
        rel = split_s3(file_uri)[1][len(prefix) :]
        if rel not in _MARKERS:
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


# ---------------------------------------------------------------- streaming reads and writes


@dataclass(frozen=True)
class ObjectInfo:
    """One file or object: its URI, size in bytes and (S3 only) ETag."""

    uri: str
    size: int
    etag: str | None = None


def list_objects(uri: str | os.PathLike) -> list[ObjectInfo]:
    """Like :func:`list_files`, with sizes (and ETags on S3), sorted by URI."""
    if not is_s3(uri):
        root = Path(uri)
        if not root.exists():
            return []
        return sorted(
            (ObjectInfo(str(p), p.stat().st_size) for p in root.rglob("*") if p.is_file()),
            key=lambda o: o.uri,
        )
    bucket, key = split_s3(str(uri))
    prefix = key.rstrip("/") + "/" if key else ""
    out: list[ObjectInfo] = []
    paginator = _s3_client().get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        out.extend(
            ObjectInfo(f"{S3_PREFIX}{bucket}/{obj['Key']}", obj["Size"], obj.get("ETag"))
            for obj in page.get("Contents", [])
        )
    return sorted(out, key=lambda o: o.uri)


def size(uri: str | os.PathLike) -> int:
    """Size of one file or object in bytes (``FileNotFoundError`` when missing)."""
    if not is_s3(uri):
        return Path(uri).stat().st_size
    bucket, key = split_s3(str(uri))
    from botocore.exceptions import ClientError

    try:
        return int(_s3_client().head_object(Bucket=bucket, Key=key)["ContentLength"])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            raise FileNotFoundError(f"no such object: {uri}") from exc
        raise


def stat_object(uri: str) -> ObjectInfo:
    """Size and ETag of one S3 object (``FileNotFoundError`` when missing)."""
    bucket, key = split_s3(str(uri))
    from botocore.exceptions import ClientError

    try:
        head = _s3_client().head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            raise FileNotFoundError(f"no such object: {uri}") from exc
        raise
    return ObjectInfo(str(uri), int(head["ContentLength"]), head.get("ETag"))


def read_range(uri: str | os.PathLike, start: int, length: int) -> bytes:
    """``length`` bytes from ``start`` (fewer at the end of the file); one ranged GET on S3."""
    if length <= 0:
        return b""
    if not is_s3(uri):
        with open(uri, "rb") as f:
            return os.pread(f.fileno(), length, start)
    bucket, key = split_s3(str(uri))
    from botocore.exceptions import ClientError

    try:
        resp = _s3_client().get_object(
            Bucket=bucket, Key=key, Range=f"bytes={start}-{start + length - 1}"
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "InvalidRange":
            return b""  # start is at or past the end
        raise
    return resp["Body"].read()


class S3RangeReader(io.RawIOBase):
    """A seekable, read-only raw stream over one S3 object, read with ranged GETs.

    Wrap it in :class:`io.BufferedReader` (as :func:`open_read` does) so that small reads
    become a few large requests.
    """

    def __init__(self, uri: str):
        super().__init__()
        self.uri = uri
        self._size = size(uri)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, b) -> int:  # type: ignore[override]
        n = min(len(b), self._size - self._pos)
        if n <= 0:
            return 0
        data = read_range(self.uri, self._pos, n)
        b[: len(data)] = data
        self._pos += len(data)
        return len(data)


def open_read(uri: str | os.PathLike, buffer_size: int = 8 << 20) -> io.BufferedIOBase:
    """A seekable binary stream: a local file, or an S3 object read in ``buffer_size`` ranges."""
    if not is_s3(uri):
        return open(uri, "rb", buffering=min(buffer_size, 1 << 20))  # noqa: SIM115
    return io.BufferedReader(S3RangeReader(str(uri)), buffer_size=buffer_size)


class AtomicWriter:
    """A file being written under a temporary name; :meth:`commit` publishes it, :meth:`abort`
    removes every trace. Local files are renamed into place; S3 objects are streamed as a
    multipart upload that becomes visible only when completed."""

    uri: str

    def write(self, data: bytes | bytearray | memoryview) -> int:
        raise NotImplementedError

    def writev(self, pieces: list) -> int:
        """Write several buffers in order (one system call for local files)."""
        return sum(self.write(p) for p in pieces)

    def append_file(self, path: str | os.PathLike) -> int:
        """Append the whole content of a local file (kernel-side copy where possible)."""
        n = 0
        with open(path, "rb") as f:
            while chunk := f.read(8 << 20):
                n += self.write(chunk)
        return n

    def tell(self) -> int:
        raise NotImplementedError

    def commit(self) -> str:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError


class _LocalAtomicWriter(AtomicWriter):
    def __init__(self, path: str | os.PathLike, durable: bool = True):
        self.uri = str(path)
        self.dest = Path(path)
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.dest.with_name(f".{self.dest.name}.{_token()}.part")
        self.durable = durable
        self._f = open(self.tmp, "wb", buffering=0)  # noqa: SIM115  raw: we track the offset
        self._pos = 0
        self._done = False

    def write(self, data) -> int:
        view = memoryview(data)
        total = len(view)
        while view:
            n = self._f.write(view)
            view = view[n:]
        self._pos += total
        return total

    def writev(self, pieces: list) -> int:
        total = sum(len(p) for p in pieces)
        n = os.writev(self._f.fileno(), pieces)
        if n < total:  # short write (rare): finish it piece by piece
            rest = memoryview(b"".join(bytes(p) for p in pieces))[n:]
            while rest:
                rest = rest[self._f.write(rest) :]
        self._pos += total
        return total

    def append_file(self, path) -> int:
        n_total = os.path.getsize(path)
        with open(path, "rb") as src:
            left = n_total
            try:
                while left > 0:
                    n = os.copy_file_range(src.fileno(), self._f.fileno(), left)
                    if n == 0:
                        break
                    left -= n
            except OSError:
                pass  # e.g. EXDEV or an old kernel: finish with plain reads and writes
            if left > 0:
                src.seek(n_total - left)
                os.lseek(self._f.fileno(), self._pos + (n_total - left), os.SEEK_SET)
                while left > 0 and (chunk := src.read(min(left, 8 << 20))):
                    self._f.write(chunk)
                    left -= len(chunk)
        if left:
            raise OSError(f"short copy from {path}: {left} bytes missing")
        self._pos += n_total
        return n_total

    def tell(self) -> int:
        return self._pos

    def fileno(self) -> int:
        """The temporary file's descriptor, for positional writes (``os.pwritev``) by this or
        forked processes; :meth:`tell` does not see those."""
        return self._f.fileno()

    def commit(self) -> str:
        if self._done:
            raise RuntimeError(f"{self.uri}: already committed or aborted")
        if self.durable:
            os.fsync(self._f.fileno())
        self._f.close()
        os.replace(self.tmp, self.dest)
        self._done = True
        if self.durable:
            _fsync_dir(self.dest.parent)
        return self.uri

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        self._f.close()
        self.tmp.unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


MIN_PART_SIZE = 5 << 20  # S3's lower bound for every part but the last


class _S3AtomicWriter(AtomicWriter):
    def __init__(self, uri: str, part_size: int = 16 << 20):
        self.uri = uri
        self.bucket, self.key = split_s3(uri)
        self.part_size = max(int(part_size), MIN_PART_SIZE)
        self._buf = bytearray()
        self._parts: list[dict] = []
        self._upload_id: str | None = None
        self._pos = 0
        self._done = False

    def write(self, data) -> int:
        self._buf += data
        self._pos += len(data)
        while len(self._buf) >= self.part_size:
            self._upload_part(bytes(self._buf[: self.part_size]))
            del self._buf[: self.part_size]
        return len(data)

    def _upload_part(self, body: bytes) -> None:
        client = _s3_client()
        if self._upload_id is None:
            resp = client.create_multipart_upload(Bucket=self.bucket, Key=self.key)
            self._upload_id = resp["UploadId"]
        number = len(self._parts) + 1
        resp = client.upload_part(
            Bucket=self.bucket, Key=self.key, UploadId=self._upload_id, PartNumber=number, Body=body
        )
        self._parts.append({"PartNumber": number, "ETag": resp["ETag"]})

    def tell(self) -> int:
        return self._pos

    def commit(self) -> str:
        if self._done:
            raise RuntimeError(f"{self.uri}: already committed or aborted")
        client = _s3_client()
        if self._upload_id is None:
            client.put_object(Bucket=self.bucket, Key=self.key, Body=bytes(self._buf))
        else:
            if self._buf:
                self._upload_part(bytes(self._buf))
            client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
            )
        self._buf = bytearray()
        self._done = True
        return self.uri

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        self._buf = bytearray()
        if self._upload_id is not None:
            with contextlib.suppress(Exception):
                _s3_client().abort_multipart_upload(
                    Bucket=self.bucket, Key=self.key, UploadId=self._upload_id
                )


def atomic_writer(
    uri: str | os.PathLike, *, durable: bool = True, part_size: int = 16 << 20
) -> AtomicWriter:
    """A streaming :class:`AtomicWriter` for a local path or an ``s3://`` URI.

    ``durable`` fsyncs local files before the rename; ``part_size`` is the S3 multipart part
    size (memory held per open S3 writer).
    """
    if is_s3(uri):
        return _S3AtomicWriter(str(uri), part_size=part_size)
    return _LocalAtomicWriter(uri, durable=durable)


@contextlib.contextmanager
def open_atomic(uri: str | os.PathLike, **kwargs) -> Iterator[AtomicWriter]:
    """``with open_atomic(uri) as w: w.write(...)``: published on success, removed on error."""
    writer = atomic_writer(uri, **kwargs)
    try:
        yield writer
    except BaseException:
        writer.abort()
        raise
    writer.commit()


def commit_all(writers: list[AtomicWriter]) -> list[str]:
    """Commit several writers in order; if one fails, abort the ones not yet committed."""
    done: list[str] = []
    try:
        for w in writers:
            done.append(w.commit())
    except BaseException:
        for w in writers:
            w.abort()
        raise
    return done
