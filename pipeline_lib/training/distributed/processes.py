"""Process management: the ps-lite server/scheduler child processes of one host.

The children die with the training process (``PR_SET_PDEATHSIG``), live in their own session
(a signal to the training job's process group must not reach them) and are watched: one that
exits on its own while training runs means the parameter server is gone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from .roles import RolePlan

# Server/scheduler child: die with the training process (PR_SET_PDEATHSIG), then run the role.
_ROLE_CODE = """\
import ctypes, os, signal, sys
try:
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)
except (OSError, AttributeError):
    pass
if os.getppid() != int(os.environ["ODP_DIST_PARENT_PID"]):
    sys.exit(1)
import mxnet  # with DMLC_ROLE=server/scheduler, importing MXNet runs the role, then exits
"""


class RoleProcesses:
    """The child processes running this host's ps-lite roles (``plan.child_roles``)."""

    def __init__(self, plan: RolePlan):
        self.plan = plan
        self.children: dict[str, subprocess.Popen] = {}

    def start(self) -> None:
        """Start one child per role, each with its role's ``DMLC_*`` variables."""
        for role in self.plan.child_roles:
            env = {**os.environ, **self.plan.env(role), "ODP_DIST_PARENT_PID": str(os.getpid())}
            self.children[role] = subprocess.Popen(  # noqa: S603  our own interpreter and code, no shell
                [sys.executable, "-c", _ROLE_CODE],
                env=env,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # a signal to our process group must not kill them
            )

    def watch(self, closing: threading.Event, fail: Callable[[str], None]) -> None:
        """Until ``closing`` is set, call ``fail`` when a child exits (runs in a thread)."""
        while not closing.is_set():
            for role, child in self.children.items():
                code = child.poll()
                if code is not None and not closing.is_set():
                    fail(f"the local parameter-server {role} exited with code {code}")
            time.sleep(0.5)

    def stop(self, grace: float) -> None:
        """Give the children ``grace`` seconds to end by themselves, then terminate (and
        after 5 more seconds kill) the ones still running."""
        deadline = time.monotonic() + grace
        for child in self.children.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(max(0.0, deadline - time.monotonic()))
            if child.poll() is None:
                child.terminate()
        for child in self.children.values():
            try:
                child.wait(5)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()

    def kill(self) -> None:
        """SIGKILL every child at once (this host is failing)."""
        for child in self.children.values():
            with contextlib.suppress(OSError):
                child.send_signal(signal.SIGKILL)
