"""Forked workers die with their parent: SIGKILL the parent of a real worker pool (the pool
kinds the pipeline forks) and no worker is left running."""

from __future__ import annotations

import os
import signal

import pytest
from process_tree import alive, start, wait_children, wait_gone

# Every script prints "busy" from each of 2 workers once they are working (a worker that
# waits on its task pipe would exit by itself when the parent dies: busy ones would not).

# MXNet's DataLoader: a multiprocessing.Pool without initializer, forked inside the helper.
DATALOADER = """
import time
from mxnet import gluon, nd
from pipeline_lib.workers import default_signals_for_forks
class Slow(gluon.data.Dataset):
    def __len__(self):
        return 64
    def __getitem__(self, i):
        print("busy", flush=True)
        time.sleep(600)
with default_signals_for_forks():
    loader = gluon.data.DataLoader(Slow(), batch_size=1, num_workers=2)
next(iter(loader))
"""

# Validation's pool (pmap).
VALIDATION = """
import time
from pipeline_lib.validation.parallel import pmap
def busy(i):
    print("busy", flush=True)
    time.sleep(600)
list(pmap(busy, list(range(200)), 2, {}))
"""

# A pool forked outside the helpers is not armed (the control: these workers survive).
UNARMED = """
import multiprocessing, time
def busy(i):
    print("busy", flush=True)
    time.sleep(600)
pool = multiprocessing.get_context("fork").Pool(2)
pool.map(busy, range(2), chunksize=1)
"""


def _kill_parent_and_list_survivors(script: str) -> list[int]:
    proc = start(script)
    try:
        seen = ""
        while seen.count("busy") < 2:  # two workers at work (their lines may interleave)
            line = proc.stdout.readline()
            assert line, f"the script ended: {seen!r}"
            seen += line
        workers = wait_children(proc.pid, 2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        return wait_gone(workers, timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("script", [DATALOADER, VALIDATION], ids=["dataloader", "validation"])
def test_workers_die_with_a_killed_parent(script):
    assert _kill_parent_and_list_survivors(script) == []


def test_a_pool_outside_the_helper_outlives_its_parent():
    survivors = _kill_parent_and_list_survivors(UNARMED)
    try:
        assert len(survivors) == 2  # what the helpers prevent
    finally:
        for pid in alive(survivors):
            os.kill(pid, signal.SIGKILL)


def test_a_worker_whose_parent_is_already_gone_exits():
    from pipeline_lib.workers import die_with_parent

    pid = os.fork()
    if pid == 0:  # the child: claim a parent that is not ours, as after a lost race
        try:
            die_with_parent(os.getppid() + 1_000_000)
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 1
