"""The watch: a small TCP link from ``hosts[0]`` (the chief) to every other host.

ps-lite never notices a peer that died, so without it one failed host would leave the others
blocked forever. The protocol, one text line per message:

* a host connects to the chief and says ``hello <host>``; the chief answers
  ``checkpoint <n>`` followed by ``n`` files (``<name> <size>`` and the bytes), its last
  checkpoint, so every worker resumes from the same state;
* ``done`` (the host finished normally) or ``abort <reason>`` (it failed);
* a link that closes without ``done``, or hosts that have not all joined within the start
  timeout, fail this host through the ``fail`` callback.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..checkpoints import CHECKPOINT_FILES
from ..errors import DistributedError
from .roles import ENV_START_TIMEOUT, ENV_WATCH_PORT, RolePlan


@dataclass
class Peer:
    """The link to one other host."""

    host: str
    sock: socket.socket
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: bool = False

    def send(self, data: bytes) -> None:
        with self.lock:
            self.sock.sendall(data)


class Watch:
    """This host's end of the watch. ``fail(reason)`` is called from the watch's threads
    when a peer fails or the cluster does not form; ``closing`` is set once this host's own
    shutdown started (then a worker stops trying to connect)."""

    def __init__(
        self,
        plan: RolePlan,
        start_timeout: float,
        closing: threading.Event,
        fail: Callable[[str], None],
    ):
        self.plan, self.start_timeout = plan, start_timeout
        self._closing, self._fail = closing, fail
        self.peers: dict[str, Peer] = {}
        self.ready = threading.Event()  # set by the owner once the kvstore has formed
        self._joined = threading.Event()  # links up (chief: all hosts said hello)
        self._checkpoint_received = threading.Event()
        self._received_dir: Path | None = None
        self._server: socket.socket | None = None
        self._checkpoint: dict[str, bytes] = {}

    # ---------------------------------------------------------------- life cycle

    def start(self, checkpoint: dict[str, bytes]) -> None:
        """The chief listens and will hand ``checkpoint`` to every host; others connect."""
        if self.plan.is_chief:
            self._checkpoint = checkpoint
            try:
                self._server = socket.create_server(("", self.plan.watch_port))
            except OSError as exc:
                raise DistributedError(
                    f"cannot listen on the watch port {self.plan.watch_port} "
                    f"({ENV_WATCH_PORT}): {exc}"
                ) from None
            _thread(self._accept_loop)
        else:
            _thread(self._connect_loop)

    def start_timer(self) -> None:
        """Fail unless the kvstore forms and every link is up within the start timeout."""
        _thread(self._watch_start)

    def wait_checkpoint(self, timeout: float) -> Path | None:
        """(Not the chief.) The folder holding the chief's checkpoint; None on time-out."""
        if not self._checkpoint_received.wait(timeout):
            return None
        return self._received_dir

    def broadcast(self, line: bytes) -> None:
        """Send ``line`` to every peer, ignoring the ones already gone."""
        for peer in list(self.peers.values()):
            with contextlib.suppress(OSError):
                peer.send(line)

    def close(self) -> None:
        """Close every link and remove the received checkpoint."""
        for peer in list(self.peers.values()):
            with contextlib.suppress(OSError):
                peer.sock.close()
        if self._server is not None:
            self._server.close()
        self.discard_checkpoint()

    def discard_checkpoint(self) -> None:
        """Remove the received checkpoint (also on the way out of a failed host)."""
        if self._received_dir is not None:
            shutil.rmtree(self._received_dir, ignore_errors=True)

    # ---------------------------------------------------------------- threads

    def _watch_start(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        if self.ready.wait(self.start_timeout) and self._joined.wait(
            max(30.0, deadline - time.monotonic())
        ):
            return
        joined = [self.plan.current_host, *self.peers]
        missing = [h for h in self.plan.hosts if h not in joined]
        self._fail(
            f"the cluster did not form within {self.start_timeout:.0f}s ({ENV_START_TIMEOUT}); "
            f"hosts not heard from: {missing or 'none (the parameter server did not start)'}"
        )

    def _accept_loop(self) -> None:
        expected = set(self.plan.hosts[1:])
        while True:
            try:
                sock, _addr = self._server.accept()
            except OSError:
                return
            _keepalive(sock)
            try:
                sock.settimeout(60)
                reader = sock.makefile("rb")
                words = reader.readline().decode().split()
                sock.settimeout(None)
            except (OSError, UnicodeDecodeError):
                sock.close()
                continue
            if len(words) != 2 or words[0] != "hello" or words[1] not in expected:
                sock.close()
                continue
            peer = Peer(words[1], sock)
            self.peers[peer.host] = peer
            try:
                self._send_checkpoint(peer)
            except OSError:
                self._fail(f"lost host {peer.host} while handing over the checkpoint")
            _thread(self._read_peer, peer, reader)
            if expected <= set(self.peers):
                self._joined.set()
                self._checkpoint = {}

    def _send_checkpoint(self, peer: Peer) -> None:
        with peer.lock:
            peer.sock.sendall(f"checkpoint {len(self._checkpoint)}\n".encode())
            for name, data in self._checkpoint.items():
                peer.sock.sendall(f"{name} {len(data)}\n".encode())
                peer.sock.sendall(data)

    def _connect_loop(self) -> None:
        chief = self.plan.hosts[0]
        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                sock = socket.create_connection((self.plan.root_uri, self.plan.watch_port), 10)
                break
            except OSError:
                if time.monotonic() >= deadline or self._closing.is_set():
                    return  # _watch_start reports it
                time.sleep(1)
        _keepalive(sock)
        sock.settimeout(None)
        peer = Peer(chief, sock)
        self.peers[chief] = peer
        reader = sock.makefile("rb")
        try:
            peer.send(f"hello {self.plan.current_host}\n".encode())
            self._receive_checkpoint(reader)
        except (OSError, ValueError) as exc:
            self._fail(f"lost the chief host {chief} while joining: {exc}")
        self._joined.set()
        self._read_peer(peer, reader)

    def _receive_checkpoint(self, reader) -> None:
        words = reader.readline().decode().split()
        if len(words) != 2 or words[0] != "checkpoint":
            raise ValueError(f"unexpected hand-over {words!r}")
        self._received_dir = folder = Path(tempfile.mkdtemp(prefix="odp-dist-ckpt-"))
        for _ in range(int(words[1])):
            name, size = reader.readline().decode().split()
            if name not in CHECKPOINT_FILES:
                raise ValueError(f"unexpected checkpoint file {name!r}")
            data = reader.read(int(size))
            if len(data) != int(size):
                raise ValueError("checkpoint hand-over cut short")
            (folder / name).write_bytes(data)
        self._checkpoint_received.set()

    def _read_peer(self, peer: Peer, reader) -> None:
        while True:
            try:
                line = reader.readline()
            except OSError:
                line = b""
            if not line:
                break
            word, _, rest = line.decode(errors="replace").strip().partition(" ")
            if word == "done":
                peer.done = True
            elif word == "abort":
                self._fail(f"host {peer.host} failed: {rest}")
        if not peer.done:  # ``fail`` ignores this once the run has finished
            self._fail(f"host {peer.host} stopped without finishing (it failed or was killed)")


def _thread(target, *args) -> None:
    threading.Thread(target=target, args=args, daemon=True).start()


def _keepalive(sock: socket.socket) -> None:
    """Notice a vanished host (node failure, network partition) within about two minutes."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for opt, value in (("TCP_KEEPIDLE", 60), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 6)):
        if hasattr(socket, opt):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, opt), value)
