"""The trials' semaphore in a real SQLite database (beside a real study): with P=2 never more
than two of four trials run at once, a dead holder's slot comes free, a retry takes its own
lease back, and waiting gives up at its timeout."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time

import pytest

from pipeline_lib.tuning.slots import SlotTimeout, TrialSlots, hold_slot
from pipeline_lib.tuning.space import parse_ranges
from pipeline_lib.tuning.study import open_study
from pipeline_lib.tuning.trials import start_trial

SPACE = parse_ranges(
    {
        "ContinuousParameterRanges": [
            {"Name": "learning_rate", "MinValue": "0.001", "MaxValue": "0.1"}
        ]
    }
)


@pytest.fixture
def url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'study.db'}"


def test_at_most_two_of_four_trials_run_at_once(url):
    study = open_study("s", SPACE, {}, storage_url=url, sampler="random", seed=1)
    running, peak, lock = [0], [0], threading.Lock()
    errors: list[BaseException] = []

    def trial(index: int) -> None:
        slots = TrialSlots(url, "dag/run-1", 2, poll_s=0.02)
        try:
            with hold_slot(slots, f"run-1/{index}", timeout_s=120) as slot:
                assert slot in (0, 1)
                with lock:
                    running[0] += 1
                    peak[0] = max(peak[0], running[0])
                start_trial(study, SPACE, {}, url, f"run-1/{index}")  # real study work
                time.sleep(0.2)
                with lock:
                    running[0] -= 1
        except BaseException as exc:
            errors.append(exc)
        finally:
            slots.close()

    threads = [threading.Thread(target=trial, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert peak[0] <= 2
    assert len(study.get_trials(deepcopy=False)) == 4
    assert TrialSlots(url, "dag/run-1", 2).holders() == {}  # all released


def test_a_third_trial_waits_while_two_hold_their_slots(url):
    slots = TrialSlots(url, "dag/run-1", 2, poll_s=0.02)
    assert {slots.try_acquire("a"), slots.try_acquire("b")} == {0, 1}
    with pytest.raises(SlotTimeout, match="2 trials at once"):
        slots.acquire("c", timeout_s=0.2)
    assert TrialSlots(url, "dag/run-2", 2).try_acquire("c") == 0  # another run: its own slots
    slots.release("a")
    assert slots.acquire("c", timeout_s=5) in (0, 1)
    assert set(slots.holders().values()) == {"b", "c"}
    slots.clear()  # the run is done
    assert slots.holders() == {} and TrialSlots(url, "dag/run-2", 2).holders() == {0: "c"}


def _hold_forever(url: str, ready) -> None:
    slots = TrialSlots(url, "dag/run-1", 1, ttl_s=3600)
    slots.acquire("run-1/0", timeout_s=10)
    ready.set()
    time.sleep(3600)


def test_a_dead_holders_slot_comes_free(url):
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold_forever, args=(url, ready))
    holder.start()
    assert ready.wait(60)
    slots = TrialSlots(url, "dag/run-1", 1, poll_s=0.02)
    assert slots.try_acquire("run-1/1") is None  # alive: its lease holds (an hour to live)
    os.kill(holder.pid, signal.SIGKILL)
    holder.join()
    assert slots.acquire("run-1/1", timeout_s=30) == 0
    assert slots.holders() == {0: "run-1/1"}


def test_an_expired_lease_is_taken_over(url):
    # The holder is alive (this process) but stopped renewing: e.g. on another host.
    TrialSlots(url, "dag/run-1", 1, ttl_s=0.1).try_acquire("run-1/0", owner="elsewhere:1")
    slots = TrialSlots(url, "dag/run-1", 1, poll_s=0.02)
    assert slots.acquire("run-1/1", timeout_s=30) == 0


def test_a_retry_takes_its_own_lease_back(url):
    slots = TrialSlots(url, "dag/run-1", 1, poll_s=0.02)
    assert slots.try_acquire("run-1/0", owner="elsewhere:1") == 0
    assert slots.try_acquire("run-1/1") is None
    assert slots.try_acquire("run-1/0") == 0  # the same trial's next attempt


def _expiry(url: str) -> float:
    import sqlalchemy as sa

    with sa.create_engine(url).connect() as db:
        return db.execute(sa.text("SELECT expires_at FROM odp_trial_slots")).scalar_one()


def test_hold_slot_renews_its_lease_and_releases_it(url):
    slots = TrialSlots(url, "dag/run-1", 1, ttl_s=0.3, poll_s=0.02)
    other = TrialSlots(url, "dag/run-1", 1, poll_s=0.02)
    with hold_slot(slots, "run-1/0", timeout_s=10):
        first = _expiry(url)
        deadline = time.monotonic() + 30
        while _expiry(url) == first and time.monotonic() < deadline:  # the heartbeat's
            time.sleep(0.05)
        assert _expiry(url) > first
    assert slots.holders() == {}
    assert other.try_acquire("run-1/1") == 0
