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
import io
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
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

                retries = {
                    "total_max_attempts": int(env.get("AWS_MAX_ATTEMPTS") or 4),
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


#: The completion manifest of a folder published to S3 (:func:`atomic_dir`).
COMPLETE_MARKER = ".odp-complete.json"


@contextlib.contextmanager
def atomic_dir(uri: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary local folder; on success it replaces ``uri`` as a whole.

    Locally that is one rename. On S3, where a prefix cannot be renamed: the old completion
    manifest is removed first (the folder reads as incomplete from then on), the files are
    uploaded, keys left by an earlier attempt are deleted, and a new manifest listing every
    file (path and size) is written last. Readers (:func:`download_dir`, :func:`local_dir`)
    take exactly the files the manifest lists; a folder without one (uploaded by another
    tool) is read as listed.
    """
    uri = str(uri)
    if is_s3(uri):
        with tempfile.TemporaryDirectory(prefix="odp-") as tmpdir:
            yield Path(tmpdir)
            _publish_s3_dir(Path(tmpdir), uri)
        return
    dest = Path(uri)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{_token()}.part")
    tmp.mkdir()
    try:
        yield tmp
        if dest.exists():
            old = dest.with_name(f".{dest.name}.{_token()}.old")
            os.replace(dest, old)
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _publish_s3_dir(src: Path, uri: str) -> None:
    import json

    bucket, key = split_s3(uri)
    prefix = key.rstrip("/") + "/" if key else ""
    client = _s3_client()
    client.delete_object(Bucket=bucket, Key=prefix + COMPLETE_MARKER)
    files = {p.relative_to(src).as_posix(): p.stat().st_size for p in _files_below(src)}
    for rel in sorted(files):
        upload(src / rel, join(uri, rel))
    stale = [u for u in list_files(uri) if _relative(u, bucket, prefix) not in files]
    for i in range(0, len(stale), 1000):  # DeleteObjects takes at most 1000 keys
        objects = [{"Key": split_s3(u)[1]} for u in stale[i : i + 1000]]
        client.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
    manifest = json.dumps({"files": files}, sort_keys=True).encode()
    client.put_object(Bucket=bucket, Key=prefix + COMPLETE_MARKER, Body=manifest)


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
