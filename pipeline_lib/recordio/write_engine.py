"""The converter's parallel write engine: worker processes that pack chunks of images and
write them straight into the output ``.rec`` files.

Why it exists (and is not a simple loop of ``write`` calls): measured on
``benchmarks/convert.py`` it converts ~15,000 images/s, faster than ``im2rec
--pass-through`` and at 0.6-0.9x the speed of ``cat`` on the same files. The pieces that
buy that: forked workers read, check and frame whole chunks on every core; this process only
hands out offsets (in order), so no image byte passes through it; each worker writes its
chunk with ``pwritev`` (``ctypes``: ``memmem``, ``sync_file_range``) into one reused
``mmap`` arena per chunk, which saves a page fault per 4 KiB of fresh memory. Keep the
algorithm as it is unless a benchmark says otherwise.

What a chunk is and how it is packed is the converter's business (:mod:`.convert` passes
its ``pack`` function); this module only moves bytes.

Leftovers: workers die with the converter (``PR_SET_PDEATHSIG``, :mod:`pipeline_lib.workers`);
each hidden ``.part`` output is held under an exclusive ``flock`` by the conversion writing it
(:func:`hold_part`), which the kernel releases when the last process holding it is gone. A
SIGTERM unwinds the converter so that it removes its ``.part`` files
(:func:`sigterm_as_exit`); after a SIGKILL, the next conversion to the same outputs removes
the ``.part`` files no living process holds (:func:`remove_stale_parts`).
"""

from __future__ import annotations

import fcntl
import glob
import os
import signal
import stat
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from .errors import ConversionError
from .format import has_magic, libc_function

CHUNK_BYTES = 8 << 20  # image bytes a chunk aims at: the memory each worker holds
IOV_MAX = 512  # buffers per pwritev call (Linux allows 1024)


class Packed:
    """A chunk ready to write: its framed bytes and what the ``.idx``/``.lst`` need."""

    __slots__ = ("channel", "start", "size", "offsets", "lst", "stats", "pieces")

    def __init__(self, channel, start, size, offsets, lst, stats, pieces=None):
        self.channel: str = channel
        self.start: int = start
        self.size: int = size  # framed bytes
        self.offsets: list[int] = offsets  # of each record, relative to the chunk
        self.lst: str = lst
        self.stats = stats  # the converter's ChannelStats for this chunk
        self.pieces: list = pieces or []  # stays in the worker

    def meta(self) -> Packed:
        return Packed(self.channel, self.start, self.size, self.offsets, self.lst, self.stats)


def _read_fd(fd: int, size: int) -> bytes:
    """An open file's bytes in as few system calls as possible."""
    data = os.read(fd, size + 1)  # one call for a regular file; +1 notices growth
    if len(data) != size:
        chunks = [data]
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        data = b"".join(chunks)
    return data


def read_failed(item, exc: Exception) -> ConversionError:
    """The error for an image that cannot be read, naming its JSON and its path."""
    if isinstance(exc, FileNotFoundError):
        return ConversionError(
            f"{item.json_uri}: image not found: {item.image_uri} [L004 pairing.missing_image]"
        )
    return ConversionError(f"{item.json_uri}: cannot read {item.image_uri}: {exc}")


class Arena:
    """One reusable buffer for a chunk's local image bytes. Reading into memory that is
    already mapped saves a page fault per 4 KiB, a third of the conversion's time when every
    chunk gets fresh memory. (An anonymous mapping: pages are only touched when used.)"""

    def __init__(self, size: int):  # 2 x CHUNK_BYTES: larger images get their own buffers
        import ctypes
        import mmap

        self.buf = mmap.mmap(-1, size)
        self.view = memoryview(self.buf)
        self.addr = ctypes.addressof(ctypes.c_char.from_buffer(self.buf))  # fixed: never resized
        self.cursor = 0

    def read(self, item) -> tuple[memoryview | bytes, bool]:
        """A local image's bytes (in the arena when they fit) and whether they may hold the
        magic. ``item.open()`` opens it (through the converter's path checks)."""
        fd = item.open()  # the converter's path gate: raises ConversionError
        try:
            size = os.fstat(fd).st_size
            start = self.cursor
            if start + size > len(self.buf):  # a large image: its own buffer
                data = _read_fd(fd, size)
                return data, has_magic(data)
            view = self.view[start : start + size]
            got = 0
            while got < size and (n := os.readv(fd, [view[got:]])):
                got += n
            if got != size or os.read(fd, 1):
                raise ConversionError(f"{item.image_uri}: file changed while being read")
            self.cursor = start + size + (-size % 8)
            return view, has_magic(self.addr + start, size)
        finally:
            os.close(fd)


def hold_part(fd: int) -> None:
    """Mark the ``.part`` file open on ``fd`` as owned by this conversion (inherited by its
    forked workers): an exclusive ``flock`` that dies with the last of them."""
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def remove_stale_parts(outputs: Iterable[str]) -> list[str]:
    """Remove the hidden ``.<name>.*.part`` files beside each output path that no living
    process holds (a conversion killed with SIGKILL); returns the removed paths. Parts of a
    conversion still running are left alone."""
    removed: list[str] = []
    for output in outputs:
        dest = Path(output)
        for part in dest.parent.glob(f".{glob.escape(dest.name)}.*.part"):
            try:
                fd = os.open(part, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError:
                continue  # gone already, a symlink, unreadable: not ours to judge
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    continue
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # BlockingIOError: a living conversion holds it
                continue
            else:
                part.unlink(missing_ok=True)
                removed.append(str(part))
            finally:
                os.close(fd)
    return removed


def sigterm_as_exit() -> Callable[[], None]:
    """Until the returned function is called, SIGTERM raises ``SystemExit(143)`` here, so
    that the converter's ``finally`` blocks stop the workers and remove the ``.part`` files
    (Python's default would end the process on the spot). Only when SIGTERM has no handler
    yet and this is the main thread: a host (Airflow) that handles SIGTERM keeps its own."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        return lambda: None

    def exit_on_sigterm(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, exit_on_sigterm)

    def restore() -> None:
        if signal.getsignal(signal.SIGTERM) is exit_on_sigterm:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)

    return restore


#: ``pack(task, arena) -> Packed``: a chunk's framed records (run in the workers).
PackChunk = Callable[[object, Arena], Packed]


def pwrite_all(fd: int, pieces: list, offset: int) -> None:
    """Write ``pieces`` back to back at ``offset`` (few system calls, no joining)."""
    for i in range(0, len(pieces), IOV_MAX):
        group = pieces[i : i + IOV_MAX]
        want = sum(len(p) for p in group)
        done = os.pwritev(fd, group, offset)
        if done < want:  # short write (rare): finish it with plain pwrites
            rest = memoryview(b"".join(bytes(p) for p in group))[done:]
            while rest:
                n = os.pwrite(fd, rest, offset + done)
                rest, done = rest[n:], done + n
        offset += want


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing a range to disk now (``sync_file_range``), so that
    the fsync at the end finds little left to do. A no-op where unavailable."""
    import ctypes

    fn = libc_function(
        "sync_file_range", ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64,
        ctypes.c_uint,
    )  # fmt: skip
    if fn is not None:
        fn(fd, offset, length, 2)  # SYNC_FILE_RANGE_WRITE: start, do not wait


class Workers:
    """Worker processes that pack chunks and write them into the outputs themselves.

    Worker ``w`` packs chunks ``w, w + W, w + 2W, ...`` (it inherits the task list at fork).
    For each chunk it reports the framed size, packs its next chunk while this process hands
    out the offset (chunks are placed in order, so the offset of ``k`` is known as soon as
    ``k - 1`` is sized, not written), then writes with ``pwritev`` and starts the write-back.
    Each worker holds two chunks (``2 x CHUNK_BYTES`` each). Messages go over pipes."""

    def __init__(
        self, workers: int, tasks: list, fds: dict[str, int], durable: bool, pack: PackChunk
    ):
        import multiprocessing

        from ..workers import default_signals_for_forks

        ctx = multiprocessing.get_context("fork")
        self.n_tasks = len(tasks)
        self.conns = []
        self.procs = []
        # Forked with the default SIGTERM (not the converter's own handler, which a worker
        # stuck in C code would never run) and armed to die with this process.
        with default_signals_for_forks():
            for w in range(workers):
                mine, theirs = ctx.Pipe()
                proc = ctx.Process(
                    target=worker_main,
                    args=(theirs, tasks[w::workers], fds, durable, pack, os.getpid()),
                    daemon=True,
                    name=f"odp-convert-{w}",
                )
                proc.start()
                theirs.close()
                self.conns.append(mine)
                self.procs.append(proc)

    def run(self) -> Iterator[tuple[Packed, int]]:
        """Each chunk in order with its offset in its channel's ``.rec``; when the iterator
        ends, every chunk is written."""
        n = len(self.procs)
        pos: dict[str, int] = {}
        written = [0] * n
        for k in range(self.n_tasks):
            w = k % n
            while (msg := self._get(w))[0] == "written":
                written[w] += 1
            packed = msg[1]
            offset = pos.get(packed.channel, 0)
            pos[packed.channel] = offset + packed.size
            try:
                self.conns[w].send(offset)
            except OSError:
                raise self._died(w) from None
            yield packed, offset
        for w in range(n):
            while written[w] < len(range(w, self.n_tasks, n)):
                self._get(w)  # only "written" can come now
                written[w] += 1

    def _get(self, w: int):
        conn = self.conns[w]
        while not conn.poll(1.0):
            if not self.procs[w].is_alive():
                raise self._died(w)
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            raise self._died(w) from None
        if msg[0] == "error":
            raise ConversionError(msg[1])
        return msg

    def _died(self, w: int) -> ConversionError:
        self.procs[w].join(5)
        return ConversionError(f"conversion worker {w} died (exit code {self.procs[w].exitcode})")

    def close(self, ok: bool) -> None:
        for proc in self.procs:
            if ok:
                proc.join(timeout=30)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=10)
            if proc.is_alive():  # stuck where SIGTERM cannot reach Python code
                proc.kill()
                proc.join()
        for conn in self.conns:
            conn.close()


def worker_main(
    conn, tasks: list, fds: dict[str, int], durable: bool, pack: PackChunk, parent: int
) -> None:
    from ..workers import init_worker

    init_worker(parent)  # default signals; killed with the converter (no orphan writers)
    arenas = [Arena(2 * CHUNK_BYTES), Arena(2 * CHUNK_BYTES)]

    def pack_next(i: int) -> Packed | None:
        if i >= len(tasks):
            return None
        try:
            packed = pack(tasks[i], arenas[i % 2])
        except Exception as exc:  # noqa: BLE001  report, then stop
            msg = str(exc) if isinstance(exc, ConversionError) else f"{type(exc).__name__}: {exc}"
            conn.send(("error", msg))
            raise SystemExit(0) from None
        conn.send(("sized", packed.meta()))
        return packed

    current = pack_next(0)
    i = 0
    while current is not None:
        upcoming = pack_next(i + 1)  # while this process places `current`
        while not conn.poll(1.0):
            if os.getppid() != parent:  # the converter was killed: do not linger
                raise SystemExit(1)
        try:
            offset = conn.recv()
        except EOFError:
            raise SystemExit(1) from None
        fd = fds[current.channel]
        try:
            pwrite_all(fd, current.pieces, offset)
            if durable:
                start_writeback(fd, offset, current.size)
        except OSError as exc:
            conn.send(("error", f"writing the {current.channel} .rec: {exc}"))
            return
        conn.send(("written", None))
        current, i = upcoming, i + 1
