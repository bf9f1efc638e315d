"""Ordered, streaming map over worker processes (inline for small inputs or one worker)."""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable, Iterable, Iterator, Sized
from itertools import islice
from typing import Any, TypeVar

from ..workers import init_worker

T = TypeVar("T")
R = TypeVar("R")

INLINE_BELOW = 48  # items; starting processes costs more than checking this many inline
WINDOW = 4096  # items handed to the pool at a time

_state: dict[str, Any] = {}


def worker_state() -> dict[str, Any]:
    """Per-process context set by :func:`pmap` (options, roots)."""
    return _state


def _init(state: dict[str, Any]) -> None:
    _state.clear()
    _state.update(state)


def _init_child(state: dict[str, Any], parent_pid: int) -> None:
    init_worker(parent_pid)  # default signals; dies with the validating process
    _init(state)


def pmap(
    fn: Callable[[T], R], items: Iterable[T], workers: int, state: dict[str, Any]
) -> Iterator[R]:
    """``map(fn, items)`` in order, over ``workers`` forked processes.

    Results stream back in input order (``imap``), so the caller folds them one at a time and
    the report is the same whatever the worker count. At most ``WINDOW`` items are in flight.
    """
    n = len(items) if isinstance(items, Sized) else None
    if workers <= 1 or (n is not None and n < INLINE_BELOW):
        _init(state)
        yield from map(fn, items)
        return
    ctx = mp.get_context("fork")
    chunk = 16 if n is None else max(1, min(64, n // (workers * 16)))
    window = max(WINDOW, workers * chunk * 4)
    it = iter(items)
    pool = ctx.Pool(workers, initializer=_init_child, initargs=(state, os.getpid()))
    try:
        # Pool.imap would pull the whole input at once; feeding it in windows keeps memory
        # flat however long the input stream (manifest lines, RecordIO records) is.
        while window_items := list(islice(it, window)):
            yield from pool.imap(fn, window_items, chunksize=chunk)
    except BaseException:  # an error, or the caller stopped early: stop the workers now
        pool.terminate()
        raise
    else:
        # Not ``with Pool`` (whose exit terminates): a terminate races with the pool's own
        # worker handler, which can fork a replacement worker that is never signalled and
        # then joined forever. Done normally, the workers get their sentinel and exit.
        pool.close()
    finally:
        pool.join()
