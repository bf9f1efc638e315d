"""Real processes for leftover tests: start a script, find its children in /proc (psutil is
not installed), kill it, and wait for processes to be gone."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def start(script: str, *args: str) -> subprocess.Popen:
    """``python -c script`` with the checkout importable; stdout is a pipe of lines."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "plugins")])}
    return subprocess.Popen(  # noqa: S603  argv built here: this interpreter and a test script
        [sys.executable, "-c", script, *args], stdout=subprocess.PIPE, text=True, env=env
    )


def _stat(pid: int) -> tuple[str, int] | None:
    """``(state, ppid)`` of a process, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1])


def children(pid: int) -> list[int]:
    """Live child processes of ``pid``."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (st := _stat(int(entry.name))) and st[1] == pid:
            if st[0] != "Z":
                out.append(int(entry.name))
    return out


def wait_children(pid: int, n: int, timeout: float = 60) -> list[int]:
    """Wait until ``pid`` has at least ``n`` live children; return them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(found := children(pid)) >= n:
            return found
        time.sleep(0.05)
    raise AssertionError(f"process {pid} did not start {n} children in {timeout} s")


def alive(pids: list[int]) -> list[int]:
    """The processes of ``pids`` that still run (zombies count as gone)."""
    return [p for p in pids if (st := _stat(p)) is not None and st[0] != "Z"]


def wait_gone(pids: list[int], timeout: float = 10) -> list[int]:
    """Wait for ``pids`` to end; returns those still alive at the timeout."""
    deadline = time.monotonic() + timeout
    while (left := alive(pids)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left
