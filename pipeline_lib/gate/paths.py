"""Dataset paths confined to their folder: no absolute paths, no ``..``, no symlink that
leaves the folder, only regular files (a FIFO or device is refused without blocking).

Every reader of a dataset resolves an annotation's ``file`` (a manifest's local
``source-ref``, a COCO ``file_name``, a VOC ``<filename>``, an annotation JSON itself)
through :class:`Confined`. Messages about a refused path never depend on what lies outside
the folder: a symlink to a missing file and one to an existing file read the same.
"""

from __future__ import annotations

import errno
import os
import re
import stat

from .. import localfs
from .rules import GateError

OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: Fields naming metadata files (small JSON a reader parses and may quote in an error): such a
#: file is refused when it has several hard links (another name may lie outside the folder).
#: Images may be hard links: ``validate --convert-to-rgb`` and the RecordIO staging link them.
METADATA_FIELDS = frozenset({"annotation", "detections", "class map", "hyperparameters"})


class Confined:
    """One folder (a channel, an images folder) that relative names must stay inside."""

    def __init__(self, root: str | os.PathLike, label: str | None = None):
        self.root = os.path.abspath(os.fspath(root))
        self.real = os.path.realpath(self.root)
        self.label = label or f"{os.path.basename(self.root)}/"

    def _escape(self, name: str, source: str, field: str, why: str) -> GateError:
        return GateError(
            "pairing.path_escape",
            f"{source}: {field} {name!r} is {why}; files must be inside {self.label}",
        )

    def contains(self, path: str | os.PathLike) -> bool:
        """Whether an existing ``path`` (symlinks resolved) lies inside the folder."""
        return os.path.realpath(path).startswith(self.real + os.sep)

    def lexical(self, name: str, source: str, field: str = "file") -> str:
        """``root/name`` after the checks that need no file system (:func:`check_relative`)."""
        return os.path.join(self.root, check_relative(name, source, field, self.label))

    def check(self, name: str, source: str, field: str = "file") -> str:
        """``root/name`` for a later :meth:`open`: the lexical checks, and symlinks resolved
        and checked for a nested name (a name directly in the folder is checked by
        :meth:`open`'s ``O_NOFOLLOW`` at no extra cost)."""
        rel = check_relative(name, source, field, self.label)
        if os.sep in rel:
            self.resolve(name, source, field)
        return os.path.join(self.root, rel)

    def resolve(self, name: str, source: str, field: str = "file") -> str:
        """The real path of ``name`` inside the folder (symlinks resolved and checked);
        the file need not exist. Raises :class:`GateError` when it leaves the folder."""
        joined = self.lexical(name, source, field)
        real = os.path.realpath(joined)
        if not real.startswith(self.real + os.sep):
            raise self._escape(name, source, field, "a symlink that leaves the folder")
        return real

    def resolve_ref(self, ref: str, source: str, field: str = "source-ref") -> str:
        """Like :meth:`resolve`, but an absolute ``ref`` is accepted when it lies inside the
        folder (a manifest's local ``source-ref`` may be written either way)."""
        if isinstance(ref, str) and os.path.isabs(ref) and "\x00" not in ref:
            if ".." in ref.split("/"):
                raise self._escape(ref, source, field, "a path with '..'")
            real = os.path.realpath(ref)
            if not real.startswith(self.real + os.sep):
                raise self._escape(ref, source, field, "a path outside the folder")
            return real
        return self.resolve(ref, source, field)

    def open(self, name: str, source: str, field: str = "file") -> int:
        """A file descriptor of the regular file ``name`` (never blocks on a FIFO).

        Raises :class:`GateError` (escape, not a regular file) or ``FileNotFoundError``.
        A plain file directly in the folder costs no more system calls than ``open``.
        """
        fd = self._open_path(name, source, field)
        try:
            check_regular(fd, name, source, field)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _open_path(self, name: str, source: str, field: str) -> int:
        """A descriptor of ``name`` inside the folder, not yet checked to be a regular file."""
        rel = check_relative(name, source, field, self.label)
        joined = os.path.join(self.root, rel)
        path = joined if os.sep not in rel else self.resolve(name, source, field)
        try:
            fd = os.open(path, OPEN_FLAGS)
        except OSError as exc:
            if exc.errno != errno.ELOOP:  # a symlink as the last component: check it
                raise _missing(name, exc) from None
            path = self.resolve(name, source, field)
            try:
                fd = os.open(path, OPEN_FLAGS)
            except OSError as exc2:
                raise _missing(name, exc2) from None
        return fd

    def read(
        self,
        name: str,
        source: str,
        field: str = "file",
        *,
        single_link: bool | None = None,
        max_bytes: int | None = None,
    ) -> bytes:
        """The bytes of the regular file ``name`` inside the folder (see :meth:`open`).

        ``single_link`` (default: for :data:`METADATA_FIELDS`) refuses a file with several
        hard links (``pairing.path_escape``: another name for it may lie outside the
        folder); ``max_bytes`` bounds the read (:class:`localfs.FileTooLargeError`)."""
        if single_link is None:
            single_link = field in METADATA_FIELDS
        fd = self._open_path(name, source, field)
        try:
            st = check_regular(fd, name, source, field)
            if single_link and st.st_nlink > 1:
                raise self._escape(name, source, field, f"a file with {st.st_nlink} hard links")
            if max_bytes is not None and st.st_size > max_bytes:
                raise localfs.FileTooLargeError(
                    f"{source}: {field} {name!r} has {st.st_size} bytes, above the {max_bytes} "
                    "this file may have"
                )
            return read_fd(fd, st.st_size)
        finally:
            os.close(fd)


def check_relative(name: str, source: str, field: str = "file", label: str = "its folder") -> str:
    """``name`` normalized, when it is a usable relative path: not empty, not absolute, no
    ``..`` segment, no NUL. Raises :class:`GateError` (``pairing.path_escape``). The one
    check for names that are not local files (``s3://`` keys)."""
    if (  # the common case, a plain file name: nothing to normalize
        type(name) is str
        and name
        and "/" not in name
        and "\\" not in name
        and not _CONTROL.search(name)
        and name not in (".", "..")
        and name[1:2] != ":"
    ):
        return name
    if isinstance(name, str) and "\x00" not in name and _CONTROL.search(name):
        raise GateError(
            "pairing.unusable_name",
            f"{source}: {field} {name!r} holds a control character (a tab or newline breaks "
            "the .lst files and manifests it would be written to); rename the file",
        )
    why = None
    if not isinstance(name, str) or not name or "\x00" in name:
        why = "not a usable relative path"
    elif name.startswith(("/", "\\")) or os.path.isabs(name) or (len(name) > 1 and name[1] == ":"):
        why = "an absolute path"
    elif ".." in name.replace("\\", "/").split("/"):
        why = "a path with '..'"
    if why:
        raise GateError(
            "pairing.path_escape",
            f"{source}: {field} {str(name)!r} is {why}; files must be inside {label}",
        )
    return os.path.normpath(name)


def _missing(name: str, exc: OSError) -> OSError:
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return FileNotFoundError(errno.ENOENT, "no such file", name)
    return exc


def check_image_file(path: str, name: str, source: str, field: str = "file") -> None:
    """An image a resolved path names exists and is a regular file, checked without opening
    it (a FIFO would block an open): for writers that only record the path."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise GateError(
            "pairing.missing_image", f"{source}: {field} {name!r} does not exist"
        ) from None
    if not stat.S_ISREG(mode):
        raise GateError(
            "path.not_regular_file", f"{source}: {field} {name!r} is not a regular file"
        )


def check_regular(fd: int, name: str, source: str, field: str = "file") -> os.stat_result:
    """Refuse anything but a regular file (``path.not_regular_file``); its ``fstat``."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise GateError(
            "path.not_regular_file",
            f"{source}: {field} {name!r} is {localfs.describe_mode(st.st_mode)}, not a regular "
            "file (never read)",
        )
    return st


def read_regular_fd(fd: int, name: str, source: str, field: str = "file") -> bytes:
    """All bytes of ``fd`` once :func:`check_regular` accepts it (one ``fstat``)."""
    return read_fd(fd, check_regular(fd, name, source, field).st_size)


read_fd = localfs.read_fd


def read_resolved(path: str, name: str, source: str, field: str = "file") -> bytes:
    """The bytes of a path :meth:`Confined.resolve` returned (no symlink followed now, only
    a regular file); ``FileNotFoundError`` when it is missing."""
    try:
        fd = os.open(path, OPEN_FLAGS)
    except OSError as exc:
        raise _missing(name, exc) from None
    try:
        return read_regular_fd(fd, name, source, field)
    finally:
        os.close(fd)


def read_regular(path: str | os.PathLike, source: str | None = None) -> bytes:
    """A file named by the user (not by a dataset): refused when it is not a regular file
    (``path.not_regular_file``), so a FIFO never blocks. Symlinks are followed (the user
    chose the path)."""
    path = os.fspath(path)
    try:
        fd = os.open(path, localfs.OPEN_FLAGS)
    except OSError as exc:
        raise _missing(path, exc) from None
    try:
        return read_regular_fd(fd, path, source or path, "path")
    finally:
        os.close(fd)
