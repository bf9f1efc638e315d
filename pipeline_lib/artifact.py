"""The one reader/writer of ``model.tar.gz``, the SageMaker model artifact.

The tarball holds, flat (as SageMaker writes it), one of two formats, told apart by the
content of ``model_algo_1-symbol.json`` (:func:`model_format`):

* ``gluoncv`` (odp's first format): ``model_algo_1-symbol.json`` + ``model_algo_1-0000.params``
  (GluonCV's SSD, exported for inference), ``model_algo_1.gluon.params`` (Gluon weights, which
  seed incremental training), ``hyperparams.json`` (string values) and ``class_map.json``;
* ``sagemaker`` (what SageMaker's Object Detection writes and reads): the *training* symbol
  of MXNet example/ssd and its ``arg:``/``aux:`` weights, ``hyperparams.json``; odp adds
  ``class_map.json`` and ``model_algo_1-inference-symbol.json`` (example/ssd's inference on
  the same weights), which SageMaker ignores. A SageMaker job's own archive has no class
  map: class names come from the user (:func:`read_model_config`), else ``class_<id>``.

Writing those files is training's job (``training/artifacts.py``); this
module packages a folder of them, lists and reads members, and extracts safely: members
confined to the target folder, regular files only, at most ``ODP_MAX_ARCHIVE_MEMBERS``
members and ``ODP_MAX_ARCHIVE_BYTES`` bytes (declared sizes checked before anything is
written, bytes counted while writing), into scratch folders that are removed on every exit
path (:func:`model_folder`). Any unusable archive is an :class:`ArtifactError` naming the
file. It imports neither MXNet nor MLflow.
"""

from __future__ import annotations

import gzip
import json
import lzma
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from . import localfs, storage
from .annotations import AnnotationError, load_json, parse_class_map
from .gate.paths import Confined
from .gate.rules import GateError
from .hyperparameters import HyperparameterError, parse_value
from .images import limit_from_env
from .sagemaker_ssd.symbol_info import GLUONCV, SAGEMAKER, SymbolError, describe, symbol_format

MODEL_FILE = "model.tar.gz"
PREFIX = "model_algo_1"
SYMBOL = f"{PREFIX}-symbol.json"
PARAMS = f"{PREFIX}-0000.params"
GLUON_PARAMS = f"{PREFIX}.gluon.params"
HYPERPARAMS = "hyperparams.json"
CLASS_MAP = "class_map.json"
INFERENCE_SYMBOL = f"{PREFIX}-inference-symbol.json"  # odp's extra beside a SageMaker graph
MODEL_FORMATS = (GLUONCV, SAGEMAKER)
MAX_SYMBOL_BYTES = 32 << 20  # example/ssd's ResNet-50 training symbol is ~130 KB
SIDE_FILES = (CLASS_MAP, HYPERPARAMS)  # the small files shown beside the tarball

MAX_BYTES_ENV = "ODP_MAX_ARCHIVE_BYTES"
MAX_MEMBERS_ENV = "ODP_MAX_ARCHIVE_MEMBERS"
DEFAULT_MAX_BYTES = 2 << 30  # 2 GiB: an SSD-512 VGG-16 artifact (both weight files) is < 0.5 GiB
DEFAULT_MAX_MEMBERS = 10_000
MAX_BYTES_BOUND = 1 << 40  # the most ODP_MAX_ARCHIVE_BYTES may allow (1 TiB)
MAX_MEMBERS_BOUND = 1_000_000
MAX_SIDE_FILE_BYTES = 16 << 20  # class_map.json / hyperparams.json are read into memory
_COPY_BLOCK = 1 << 20

# What a damaged archive raises from tarfile and its decompressors.
_CORRUPT = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError)


class ArtifactError(ValueError):
    """A model archive that cannot be used (corrupt, truncated, not a tarball, over a limit,
    a member escaping the target): the message names the file and what is wrong."""


_NOISE = ("Traceback", "File ", "[bt]", "Stack trace", "During handling", "^")


def error_summary(exc: BaseException, limit: int = 300) -> str:
    """One line of a native library's error (a model that does not load): MXNet's messages
    may start with a C++ or Python traceback and carry the error itself further down."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(_NOISE)]
    line = (useful or [type(exc).__name__])[-1 if useful and "Error" in useful[-1] else 0]
    return line if len(line) <= limit else line[: limit - 3] + "..."


def max_archive_bytes() -> int:
    """Largest total of member sizes an archive may extract to (``ODP_MAX_ARCHIVE_BYTES``)."""
    return limit_from_env(MAX_BYTES_ENV, DEFAULT_MAX_BYTES, MAX_BYTES_BOUND)


def max_archive_members() -> int:
    """Most members an archive may hold (``ODP_MAX_ARCHIVE_MEMBERS``)."""
    return limit_from_env(MAX_MEMBERS_ENV, DEFAULT_MAX_MEMBERS, MAX_MEMBERS_BOUND)


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


@contextmanager
def _open(tar_path: str | Path) -> Iterator[tarfile.TarFile]:
    """The archive, open; a damaged one is an :class:`ArtifactError` naming it (a FIFO or
    other special file is refused, never waited on)."""
    try:
        fd, _ = localfs.open_regular(tar_path)
    except localfs.NotRegularFileError as exc:
        raise ArtifactError(str(exc)) from None
    try:
        with os.fdopen(fd, "rb") as fh, tarfile.open(fileobj=fh, mode="r:*") as tar:
            yield tar
    except _CORRUPT as exc:
        raise ArtifactError(f"{tar_path} is not a readable model.tar.gz: {_why(exc)}") from None


def _why(exc: BaseException) -> str:
    """One line: tarfile's "r:*" lists every compression it tried, one per line."""
    text = str(exc).strip()
    if text.startswith("file could not be opened successfully"):
        return "not a tar archive (plain, gzip, bzip2 or xz)"
    return " ".join(text.split()) or type(exc).__name__


def _members(tar: tarfile.TarFile, tar_path: str | Path) -> Iterator[tarfile.TarInfo]:
    """The archive's members, read lazily, refusing an archive with too many."""
    limit = max_archive_members()
    for count, member in enumerate(tar, 1):
        if count > limit:
            raise ArtifactError(
                f"{tar_path} has more than {limit} members; a model.tar.gz holds a handful "
                f"(raise {MAX_MEMBERS_ENV} if this archive is expected)"
            )
        yield member


def member_name(member: tarfile.TarInfo) -> str:
    """A member's name as a relative path: ``./a`` (``tar -C model -czf m.tar.gz .``) is
    ``a``. Every reader compares names through this."""
    name = posixpath.normpath(member.name)
    return "" if name == "." else name


def member_names(tar_path: str | Path) -> list[str]:
    """Names of the tarball's members (relative, :func:`member_name`), in archive order."""
    with _open(tar_path) as tar:
        return [member_name(m) for m in _members(tar, tar_path)]


def _read_small(tar: tarfile.TarFile, member: tarfile.TarInfo, tar_path: str | Path) -> bytes:
    if member.size > MAX_SIDE_FILE_BYTES:
        raise ArtifactError(
            f"{tar_path}: {member.name} declares {member.size} bytes, above the "
            f"{MAX_SIDE_FILE_BYTES} bytes a model metadata file may have"
        )
    fh = tar.extractfile(member)
    if fh is None:
        raise KeyError(f"{member.name} in {tar_path} is not a regular file")
    return fh.read(MAX_SIDE_FILE_BYTES + 1)


def read_member(tar_path: str | Path, name: str) -> bytes:
    """Bytes of a small member ``name`` (exact archive path, at most ``MAX_SIDE_FILE_BYTES``);
    ``KeyError`` when there is none."""
    with _open(tar_path) as tar:
        for member in _members(tar, tar_path):
            if member_name(member) == name:
                return _read_small(tar, member, tar_path)
    raise KeyError(f"no member {name} in {tar_path}")


def _json_member(tar_path: str | Path, name: str) -> dict[str, str]:
    try:
        data = load_json(read_member(tar_path, name), f"{tar_path}: {name}")
    except AnnotationError as exc:
        raise ArtifactError(str(exc)) from None
    if not isinstance(data, dict):
        raise ArtifactError(f"{tar_path}: {name} is not a JSON object")
    return data


def class_map_json(tar_path: str | Path) -> dict[str, str]:
    """``class_map.json`` of a tarball as written (``{"0": "name", ...}``)."""
    return _json_member(tar_path, CLASS_MAP)


def hyperparameters_json(tar_path: str | Path) -> dict[str, str]:
    """``hyperparams.json`` of a tarball as written (string values)."""
    return _json_member(tar_path, HYPERPARAMS)


def servable_missing(tar_path: str | Path, members: list[str]) -> list[str]:
    """The files a servable model lacks among ``members`` (its regular files): the graph,
    its weights and ``hyperparams.json``, and for odp's GluonCV format ``class_map.json``
    (a SageMaker job's archive has none; its names are given or generated)."""
    names = set(members)
    missing = [n for n in (SYMBOL, PARAMS, HYPERPARAMS) if n not in names]
    if SYMBOL in names and CLASS_MAP not in names:
        try:
            fmt = symbol_format(json.loads(read_member(tar_path, SYMBOL)))
        except (ValueError, RecursionError, SymbolError) as exc:
            raise ArtifactError(f"{tar_path}: {SYMBOL} is not an MXNet symbol ({exc})") from None
        if fmt == GLUONCV:
            missing.append(CLASS_MAP)
    return missing


def copy_side_files(tar_path: str | Path, dest: Path) -> list[Path]:
    """Copy ``class_map.json``/``hyperparams.json`` (found at any folder depth) into ``dest``;
    a file already in ``dest`` is kept. :class:`ArtifactError` when the tarball is unusable."""
    found: list[Path] = []
    with _open(tar_path) as tar:
        for member in _members(tar, tar_path):
            name = Path(member.name).name
            if member.isfile() and name in SIDE_FILES and not (dest / name).exists():
                (dest / name).write_bytes(_read_small(tar, member, tar_path))
                found.append(dest / name)
    return found


# ------------------------------------------------------------------ extraction


def _checked(member: tarfile.TarInfo, dest: str, tar_path: str | Path) -> tarfile.TarInfo | None:
    """Relative member names only (an absolute name or a ``..`` segment is refused, not
    stripped), tarfile's ``data`` filter (nothing outside ``dest``, no devices), then only
    regular files and folders: links inside the archive are skipped."""
    raw = member.name
    if raw.startswith(("/", "\\")) or ".." in raw.replace("\\", "/").split("/"):
        raise ArtifactError(
            f"{tar_path}: member {raw[:200]!r} is not a relative path inside the archive "
            "(absolute or with '..'); a model.tar.gz holds relative names only"
        )
    try:
        member = tarfile.data_filter(member, dest)
    except tarfile.FilterError as exc:
        raise ArtifactError(f"{tar_path}: member refused: {exc}") from None
    return member if member.isfile() or member.isdir() else None


def _write_member(
    tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path, budget: int, tar_path: str | Path
) -> int:
    """Copy one regular member to ``target``, counting bytes; returns the bytes written."""
    src = tar.extractfile(member)
    if src is None:  # pragma: no cover - isfile() members always have data
        raise ArtifactError(f"{tar_path}: {member.name} has no data")
    written = 0
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "wb") as out:
        while block := src.read(_COPY_BLOCK):
            written += len(block)
            if written > member.size or written > budget:
                raise ArtifactError(
                    f"{tar_path}: {member.name} expands beyond its declared size or the archive "
                    f"limit ({MAX_BYTES_ENV})"
                )
            out.write(block)
    if written != member.size:
        raise ArtifactError(f"{tar_path} is truncated: {member.name} ends after {written} bytes")
    return written


def check(tar_path: str | Path) -> list[str]:
    """Read every member header without extracting: the same checks as :func:`extract`
    (member count, names confined, declared total size within the limit). Returns the
    names of the regular files. Used before an archive is stored anywhere (registration)."""
    limit = max_archive_bytes()
    names, declared = [], 0
    with _open(tar_path) as tar:
        for member in _members(tar, tar_path):
            checked = _checked(member, "/nonexistent-odp-check-root", tar_path)
            if checked is None or not checked.isfile():
                continue
            declared += checked.size
            if declared > limit:
                raise ArtifactError(
                    f"{tar_path} expands to more than {limit} bytes (at member "
                    f"{member.name}); raise {MAX_BYTES_ENV} if this archive is expected"
                )
            names.append(member_name(checked))
    return names


def extract(tar_path: str | Path, dest: str | Path) -> Path:
    """Extract a ``model.tar.gz`` into ``dest`` (created): members confined to ``dest``,
    regular files only, within the member-count and total-size limits. Every member is
    checked before anything is written; on any error a ``dest`` this call created is
    removed again. :class:`ArtifactError` names the archive and the reason."""
    dest = Path(dest)
    created = not dest.exists()
    dest.mkdir(parents=True, exist_ok=True)
    limit = max_archive_bytes()
    try:
        with _open(tar_path) as tar:
            plan: list[tarfile.TarInfo] = []
            declared = 0
            for member in _members(tar, tar_path):
                checked = _checked(member, str(dest), tar_path)
                if checked is None:
                    continue
                declared += checked.size if checked.isfile() else 0
                if declared > limit:
                    raise ArtifactError(
                        f"{tar_path} expands to more than {limit} bytes (at member "
                        f"{member.name}); raise {MAX_BYTES_ENV} if this archive is expected"
                    )
                plan.append(checked)
            budget = limit
            for member in plan:
                target = dest / member.name
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                else:
                    budget -= _write_member(tar, member, target, budget, tar_path)
    except (NotADirectoryError, IsADirectoryError, FileExistsError) as exc:
        if created:
            shutil.rmtree(dest, ignore_errors=True)
        raise ArtifactError(f"{tar_path}: members clash ({exc.strerror}: {exc.filename})") from None
    except BaseException:
        if created:
            shutil.rmtree(dest, ignore_errors=True)
        raise
    return dest


@contextmanager
def model_folder(path: str | Path) -> Iterator[Path]:
    """A folder with the artifact files: ``path`` itself when it holds them, else its
    ``model.tar.gz`` extracted into a scratch folder that is removed when the block exits
    (whatever the exit)."""
    path = Path(path)
    if path.is_dir():
        check_folder(path)
        tars = list(path.glob("*.tar.gz"))
        if (path / SYMBOL).exists() or len(tars) != 1:
            yield path
            return
        path = tars[0]
    if not path.exists():
        raise FileNotFoundError(f"no model at {path}")
    with tempfile.TemporaryDirectory(prefix="odp-model-") as tmp:
        yield extract(path, tmp)


def check_folder(folder: Path) -> None:
    """A model folder's files are its own: every entry is a regular file or a folder, and a
    symlink stays inside it (a model channel's ``hyperparams.json`` linked to a file
    elsewhere is refused, never read; so is a FIFO, which would block the loader)."""
    gated = Confined(folder, f"{folder.name}/")
    with os.scandir(folder) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        mode = entry.stat(follow_symlinks=False).st_mode
        if stat.S_ISLNK(mode):
            if not gated.contains(entry.path):
                raise ArtifactError(
                    f"model folder {folder}: {entry.name} is a symlink that leaves the folder; "
                    "the model's files must be inside it"
                )
            mode = os.stat(entry.path).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise ArtifactError(
                f"model folder {folder}: {entry.name} is {localfs.describe_mode(mode)}, not a "
                "regular file"
            )


# ------------------------------------------------------------------ what the model is


def _read_gated(model_dir: Path, name: str, where: object, field: str, limit: int) -> bytes:
    """A model file read through the gate: inside the folder (no link out), a regular file
    (a FIFO is refused, never waited on), at most ``limit`` bytes."""
    gated = Confined(model_dir, f"{Path(model_dir).name}/")
    try:
        return gated.read(name, f"model artifact {where}", field, max_bytes=limit)
    except (GateError, localfs.FileTooLargeError) as exc:
        raise ArtifactError(str(exc)) from None


def read_symbol(model_dir: Path, source: str | os.PathLike | None = None) -> dict:
    """``model_algo_1-symbol.json`` of an extracted artifact, parsed (size-bounded)."""
    where = source or model_dir
    try:
        raw = _read_gated(Path(model_dir), SYMBOL, where, "symbol", MAX_SYMBOL_BYTES)
    except FileNotFoundError:
        raise FileNotFoundError(f"model artifact {where} is missing ['{SYMBOL}']") from None
    try:
        symbol = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ArtifactError(f"model artifact {where}: {SYMBOL} is not JSON ({exc})") from None
    if not isinstance(symbol, dict):
        raise ArtifactError(f"model artifact {where}: {SYMBOL} is not an MXNet symbol")
    return symbol


def model_format(model_dir: Path, source: str | os.PathLike | None = None) -> str:
    """``sagemaker`` or ``gluoncv``: which graph an extracted artifact holds."""
    try:
        return symbol_format(read_symbol(model_dir, source))
    except SymbolError as exc:
        raise ArtifactError(f"model artifact {source or model_dir}: {SYMBOL}: {exc}") from None


@dataclass(frozen=True)
class ModelConfig:
    """What an extracted artifact is: its format, hyperparameters (string values, with
    ``base_network``, ``num_classes`` and ``image_shape`` always present) and class names."""

    format: str
    hyperparameters: dict[str, str]
    classes: dict[int, str]
    class_names: str  # where the names came from: "model", "user" or "generated"

    @property
    def base_network(self) -> str:
        return self.hyperparameters["base_network"]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def note(self) -> str | None:
        """The one line to tell a user whose model has no class names."""
        if self.class_names != "generated":
            return None
        return (
            f"note: the model has no class names ({CLASS_MAP}); using class_0..class_"
            f"{self.num_classes - 1} (pass --class-map with a class map or categories)"
        )


def _hyperparams_of(raw: bytes, where: object) -> dict[str, str]:
    try:
        if len(raw) > MAX_SIDE_FILE_BYTES:
            raise ValueError(f"above {MAX_SIDE_FILE_BYTES} bytes")
        hp = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise ArtifactError(f"model artifact {where}: {HYPERPARAMS}: {exc}") from None
    if not isinstance(hp, dict):
        raise ArtifactError(f"model artifact {where}: {HYPERPARAMS} is not a JSON object")
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in hp.items()}


def _class_map_of(raw: bytes, where: object) -> dict[int, str]:
    try:  # bounded: at most 10,000 entries, bounded names (annotations.parse_class_map)
        return parse_class_map(raw, CLASS_MAP)
    except ValueError as exc:
        raise ArtifactError(f"model artifact {where}: {exc}") from None


def _classes(
    own: dict[int, str] | None,
    given: Mapping[int, str] | None,
    num_classes: int | None,
    where: object,
) -> tuple[dict[int, str], str]:
    """The class names: the user's, else the archive's ``class_map.json``, else generated;
    they must name exactly the ids ``0..num_classes-1`` the graph predicts."""
    if given is not None:
        classes, origin, source = dict(given), "user", "the class map given"
    elif own is not None:
        classes, origin, source = own, "model", f"{CLASS_MAP} of {where}"
    elif num_classes is not None:
        return {i: f"class_{i}" for i in range(num_classes)}, "generated"
    else:
        raise FileNotFoundError(f"model artifact {where} is missing ['{CLASS_MAP}']")
    n = num_classes if num_classes is not None else len(classes)
    if sorted(classes) != list(range(n)):
        raise ArtifactError(
            f"{source} names class ids {sorted(classes)[:10]} but the model predicts "
            f"{n} classes (ids 0..{n - 1})"
        )
    return dict(sorted(classes.items())), origin


def model_config(
    symbol: dict,
    hyperparams: dict[str, str],
    class_map: dict[int, str] | None,
    where: object,
    class_names: Mapping[int, str] | None = None,
) -> ModelConfig:
    """The :class:`ModelConfig` of a model's parsed files (``class_map`` ``None`` when it has
    none); ``class_names`` (the user's) replace the model's own. A SageMaker graph's base
    network and class count are read from the graph and must agree with its
    ``hyperparams.json``."""
    hp = dict(hyperparams)
    try:
        fmt = symbol_format(symbol)
        if fmt == GLUONCV:
            classes, origin = _classes(class_map, class_names, None, where)
            return ModelConfig(fmt, hp, classes, origin)
        info = describe(symbol)
    except SymbolError as exc:
        raise ArtifactError(f"model artifact {where}: {SYMBOL}: {exc}") from None
    for key, value in (("base_network", info.base_network), ("num_classes", info.num_classes)):
        if key in hp and str(hp[key]).strip() != str(value):
            raise ArtifactError(
                f"model artifact {where}: {HYPERPARAMS} says {key}={hp[key][:40]!r} but the "
                f"graph in {SYMBOL} is {key}={value}"
            )
        hp[key] = str(value)
    hp.setdefault("image_shape", "300")  # SageMaker's default
    try:
        parse_value("image_shape", hp["image_shape"])
    except HyperparameterError as exc:
        raise ArtifactError(f"model artifact {where}: {HYPERPARAMS}: {exc}") from None
    classes, origin = _classes(class_map, class_names, info.num_classes, where)
    return ModelConfig(fmt, hp, classes, origin)


def read_model_config(
    model_dir: Path,
    source: str | os.PathLike | None = None,
    class_names: Mapping[int, str] | None = None,
) -> ModelConfig:
    """The :class:`ModelConfig` of an extracted artifact of either format, with a clear
    error when incomplete (``FileNotFoundError``) or unusable (:class:`ArtifactError`);
    messages name ``source`` (what the user gave) when the folder is a scratch extraction."""
    where = source or model_dir
    model_dir = Path(model_dir)
    missing = [n for n in (SYMBOL, PARAMS, HYPERPARAMS) if not os.path.lexists(model_dir / n)]
    if missing:
        raise FileNotFoundError(f"model artifact {where} is missing {missing}")
    symbol = read_symbol(model_dir, source)
    limit = MAX_SIDE_FILE_BYTES + 1  # _hyperparams_of names the bound
    hp = _hyperparams_of(
        _read_gated(model_dir, HYPERPARAMS, where, "hyperparameters", limit), where
    )
    own = None
    if os.path.lexists(model_dir / CLASS_MAP):
        raw = _read_gated(model_dir, CLASS_MAP, where, "class map", MAX_SIDE_FILE_BYTES)
        own = _class_map_of(raw, where)
    return model_config(symbol, hp, own, where, class_names)


def archive_config(
    tar_path: str | Path, class_names: Mapping[int, str] | None = None
) -> ModelConfig:
    """:func:`read_model_config` of a ``model.tar.gz`` read in place (its small members
    only, nothing extracted)."""
    found: dict[str, bytes] = {}
    with _open(tar_path) as tar:
        for member in _members(tar, tar_path):
            name = member_name(member)  # ./x is x (tar -C model -czf m.tar.gz .)
            if member.isfile() and name in (SYMBOL, HYPERPARAMS, CLASS_MAP):
                if name == SYMBOL and member.size > MAX_SYMBOL_BYTES:
                    raise ArtifactError(f"{tar_path}: {SYMBOL} is above {MAX_SYMBOL_BYTES} bytes")
                fh = tar.extractfile(member)
                found[name] = fh.read(MAX_SYMBOL_BYTES + 1) if fh else b""
    missing = [n for n in (SYMBOL, HYPERPARAMS) if n not in found]
    if missing:
        raise FileNotFoundError(f"model artifact {tar_path} is missing {missing}")
    try:
        symbol = json.loads(found[SYMBOL])
    except (ValueError, RecursionError) as exc:
        raise ArtifactError(f"model artifact {tar_path}: {SYMBOL} is not JSON ({exc})") from None
    if not isinstance(symbol, dict):
        raise ArtifactError(f"model artifact {tar_path}: {SYMBOL} is not an MXNet symbol")
    hp = _hyperparams_of(found[HYPERPARAMS], tar_path)
    own = _class_map_of(found[CLASS_MAP], tar_path) if CLASS_MAP in found else None
    return model_config(symbol, hp, own, tar_path, class_names)


def read_artifact_config(
    model_dir: Path,
    source: str | os.PathLike | None = None,
    class_names: Mapping[int, str] | None = None,
) -> tuple[dict[str, str], dict[int, str]]:
    """``(hyperparams, class_map)`` of an extracted artifact (:func:`read_model_config`)."""
    config = read_model_config(model_dir, source, class_names)
    return config.hyperparameters, config.classes
