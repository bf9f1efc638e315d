"""Opening a local file that something names, without blocking, following or over-reading.

The lowest piece of the trust boundary, standard library only: every reader of a local
file that a user, a job or a dataset names opens it here (the dataset gate,
:mod:`pipeline_lib.gate.paths`, adds containment and rule codes on top).

* Only regular files are read: a FIFO, device, socket or folder is refused after an
  ``O_NONBLOCK`` open (which never waits for a writer) and one ``fstat``.
* ``follow=False`` refuses a symlink as the last component (``O_NOFOLLOW``): for files whose
  location is fixed by a contract (a model channel's ``hyperparams.json``), not chosen.
* ``single_link=True`` refuses a file with more than one hard link: another name for it may
  lie anywhere on the file system (metadata files: annotation JSON, class maps,
  hyperparameters, detection files).
* ``max_bytes`` bounds what is read into memory.
"""

from __future__ import annotations

import errno
import os
import stat

OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC


class NotRegularFileError(OSError):
    """A path that names something other than a regular file (never read)."""


class LinkedFileError(OSError):
    """A symlink where none may be, or a file with several hard links."""


class FileTooLargeError(OSError):
    """A file larger than its reader's bound (only the bound was read)."""


def describe_mode(mode: int) -> str:
    """What a non-regular ``st_mode`` is, for a message."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISLNK(mode):
        return "a symlink"
    return "a device or socket"


def open_regular(path: str | os.PathLike, *, follow: bool = True) -> tuple[int, os.stat_result]:
    """``(fd, fstat)`` of the regular file ``path``; never blocks on a FIFO.

    Raises ``FileNotFoundError``, :class:`NotRegularFileError`, or (``follow=False`` and a
    symlink) :class:`LinkedFileError`."""
    path = os.fspath(path)
    try:
        fd = os.open(path, OPEN_FLAGS | (0 if follow else os.O_NOFOLLOW))
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow:
            raise LinkedFileError(f"{path}: a symlink; expected the file itself") from None
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise FileNotFoundError(errno.ENOENT, "no such file", path) from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFileError(
                f"{path}: {describe_mode(st.st_mode)}, not a regular file (never read)"
            )
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def read_fd(fd: int, size: int | None = None, max_bytes: int | None = None) -> bytes:
    """The bytes of an open regular file (``size`` its ``st_size`` when known), at most
    ``max_bytes + 1`` of them when bounded, in as few system calls as possible."""
    if size is None:
        size = os.fstat(fd).st_size
    want = size + 1 if max_bytes is None else min(size, max_bytes) + 1
    data = os.read(fd, want)  # +1 notices growth
    if len(data) <= size or (max_bytes is not None and len(data) > max_bytes):
        return data
    chunks = [data]
    total = len(data)
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
        total += len(chunk)
        if max_bytes is not None and total > max_bytes:
            break
    return b"".join(chunks)


def check_links(st: os.stat_result, path: str | os.PathLike) -> None:
    """Refuse a file with more than one hard link (:class:`LinkedFileError`)."""
    if st.st_nlink > 1:
        raise LinkedFileError(
            f"{os.fspath(path)}: a file with {st.st_nlink} hard links (another name for it may "
            "lie outside its folder); expected a file of its own (copy it)"
        )


def read_regular(
    path: str | os.PathLike,
    *,
    follow: bool = True,
    single_link: bool = False,
    max_bytes: int | None = None,
) -> bytes:
    """All bytes of the regular file ``path`` (see the module docstring for the options);
    :class:`FileTooLargeError` above ``max_bytes``."""
    fd, st = open_regular(path, follow=follow)
    try:
        if single_link:
            check_links(st, path)
        if max_bytes is not None and st.st_size > max_bytes:
            raise FileTooLargeError(
                f"{os.fspath(path)}: {st.st_size} bytes, above the {max_bytes} bytes this file "
                "may have"
            )
        data = read_fd(fd, st.st_size, max_bytes)
    finally:
        os.close(fd)
    if max_bytes is not None and len(data) > max_bytes:
        raise FileTooLargeError(f"{os.fspath(path)}: grew above {max_bytes} bytes while read")
    return data
