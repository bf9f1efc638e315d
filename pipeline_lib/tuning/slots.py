"""At most P trials of one tuning run at once: a semaphore of leases in the study's database.

Airflow fixes a task's concurrency when the DAG is parsed, so the tuning DAG's mapped trials
get a generous parse-time cap (:data:`MAX_PARALLEL_TRIALS`) and each trial, when it starts,
takes one of its run's P slots here (P is a run-time Param). A slot is a row of the table
``odp_trial_slots`` keyed by (run, slot index), slot index < P: taking one is an INSERT that
the primary key makes atomic, in the same database as the study (SQLite locally, PostgreSQL
in production, shared by every worker and pod).

A slot cannot leak: it is a lease that the holder renews while it trains
(:func:`hold_slot`'s heartbeat). A lease that expired, or whose holder process on this host
is gone, is taken over with a compare-and-swap UPDATE. A retry of the same trial (same
``holder`` key) takes its own lease back instead of waiting behind it. Waiting sleeps
between looks (no busy loop) and gives up after ``timeout_s`` (the task's timeout).
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlalchemy as sa

log = logging.getLogger(__name__)

#: The parse-time cap on a run's trials at once (the Param's maximum).
MAX_PARALLEL_TRIALS = 16
#: P when neither the Param nor the config's ResourceLimits.MaxParallelTrainingJobs says.
DEFAULT_PARALLEL_TRIALS = 2
LEASE_TTL_S = 120.0  # a lease not renewed for this long is free (holder on another host gone)
POLL_S = 5.0  # between looks for a free slot
TABLE = "odp_trial_slots"


class SlotTimeout(TimeoutError):
    """No slot came free within the wait allowed."""


def this_owner() -> str:
    """``host:pid`` of this process (a lease's liveness is checked on its own host)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _owner_gone(owner: str) -> bool:
    """True only when the owner ran on this host and its process no longer exists."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


class TrialSlots:
    """The P slots of one tuning run (``run``: e.g. ``dag_id/run_id``) in the database at
    ``url`` (any SQLAlchemy URL; the study's)."""

    def __init__(
        self,
        url: str,
        run: str,
        limit: int,
        *,
        ttl_s: float = LEASE_TTL_S,
        poll_s: float = POLL_S,
    ) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        self.url, self.run, self.limit = url, run, limit
        self.ttl_s, self.poll_s = ttl_s, poll_s
        self._db_table: tuple[sa.Engine, sa.Table] | None = None

    def _db(self) -> tuple[sa.Engine, sa.Table]:
        if self._db_table is None:
            import sqlalchemy as sa

            from .study import engine_kwargs

            engine = sa.create_engine(self.url, **engine_kwargs(self.url))
            meta = sa.MetaData()
            table = sa.Table(
                TABLE,
                meta,
                sa.Column("run", sa.String(512), primary_key=True),
                sa.Column("slot", sa.Integer, primary_key=True, autoincrement=False),
                sa.Column("holder", sa.String(512), nullable=False),
                sa.Column("owner", sa.String(300), nullable=False),
                sa.Column("expires_at", sa.Float, nullable=False),
            )
            try:
                meta.create_all(engine, checkfirst=True)
            except sa.exc.DatabaseError:  # another trial created it between check and create
                if not sa.inspect(engine).has_table(TABLE):
                    raise
            self._db_table = (engine, table)
        return self._db_table

    def try_acquire(self, holder: str, owner: str | None = None) -> int | None:
        """A slot index for ``holder`` now (its own lease if it has one), else None."""
        import sqlalchemy as sa

        engine, t = self._db()
        owner = owner or this_owner()
        now = time.time()
        expires = now + self.ttl_s
        mine = (t.c.run == self.run) & (t.c.holder == holder)
        with engine.begin() as db:
            own = db.execute(sa.select(t.c.slot).where(mine)).scalar()
            if own is not None:  # a retry of the same trial: its lease is its own
                db.execute(sa.update(t).where(mine).values(owner=owner, expires_at=expires))
                return int(own)
            taken = {
                row.slot: row
                for row in db.execute(
                    sa.select(t.c.slot, t.c.owner, t.c.expires_at).where(t.c.run == self.run)
                )
            }
        for slot in range(self.limit):
            row = taken.get(slot)
            if row is None:
                try:
                    with engine.begin() as db:
                        db.execute(
                            sa.insert(t).values(
                                run=self.run,
                                slot=slot,
                                holder=holder,
                                owner=owner,
                                expires_at=expires,
                            )
                        )
                    return slot
                except sa.exc.IntegrityError:  # another trial took it just now
                    continue
            if row.expires_at < now or _owner_gone(row.owner):
                with engine.begin() as db:  # compare-and-swap: only the lease we judged stale
                    result = db.execute(
                        sa.update(t)
                        .where(
                            (t.c.run == self.run)
                            & (t.c.slot == slot)
                            & (t.c.owner == row.owner)
                            & (t.c.expires_at == row.expires_at)
                        )
                        .values(holder=holder, owner=owner, expires_at=expires)
                    )
                if result.rowcount == 1:
                    log.warning("trial slot %d of %s: took over a stale lease", slot, self.run)
                    return slot
        return None

    def acquire(self, holder: str, timeout_s: float) -> int:
        """Wait (sleeping between looks) until a slot is free; :class:`SlotTimeout` after
        ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        waiting = False
        while (slot := self.try_acquire(holder)) is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise SlotTimeout(
                    f"no trial slot of {self.run} came free in {timeout_s:.0f}s "
                    f"({self.limit} trials at once)"
                )
            if not waiting:
                log.info("%s: %d trials running, waiting for a slot", holder, self.limit)
                waiting = True
            # jitter: trials waiting together do not all look at the same instant
            time.sleep(min(left, self.poll_s * random.uniform(0.5, 1.5)))  # noqa: S311
        return slot

    def renew(self, holder: str) -> bool:
        """Push the lease's expiry on; False when it is no longer this holder's."""
        import sqlalchemy as sa

        engine, t = self._db()
        with engine.begin() as db:
            result = db.execute(
                sa.update(t)
                .where((t.c.run == self.run) & (t.c.holder == holder))
                .values(expires_at=time.time() + self.ttl_s)
            )
        return result.rowcount == 1

    def release(self, holder: str) -> None:
        """Free the holder's slot (nothing if it holds none)."""
        import sqlalchemy as sa

        engine, t = self._db()
        with engine.begin() as db:
            db.execute(sa.delete(t).where((t.c.run == self.run) & (t.c.holder == holder)))

    def clear(self) -> None:
        """Drop every lease of the run (its trials are all done; a crashed one's stays
        otherwise)."""
        import sqlalchemy as sa

        engine, t = self._db()
        with engine.begin() as db:
            db.execute(sa.delete(t).where(t.c.run == self.run))

    def holders(self) -> dict[int, str]:
        """Slot index -> holder, expired leases included (for reports and tests)."""
        import sqlalchemy as sa

        engine, t = self._db()
        with engine.begin() as db:
            rows = db.execute(sa.select(t.c.slot, t.c.holder).where(t.c.run == self.run))
            return {int(r.slot): r.holder for r in rows}

    def close(self) -> None:
        """Dispose of the engine (its connections)."""
        if self._db_table is not None:
            self._db_table[0].dispose()
            self._db_table = None


@contextmanager
def hold_slot(slots: TrialSlots, holder: str, timeout_s: float) -> Iterator[int]:
    """Hold one of ``slots`` while the block runs, renewing the lease every third of its
    time to live; released on the way out, whatever happens."""
    slot = slots.acquire(holder, timeout_s)
    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.wait(slots.ttl_s / 3):
            try:
                if not slots.renew(holder):
                    log.warning("%s: lost trial slot %d (its lease expired)", holder, slot)
            except Exception:  # a database hiccup: the next beat tries again
                log.warning("%s: could not renew trial slot %d", holder, slot, exc_info=True)

    beat = threading.Thread(target=heartbeat, name=f"trial-slot-{slot}", daemon=True)
    beat.start()
    try:
        yield slot
    finally:
        stop.set()
        beat.join()
        slots.release(holder)
