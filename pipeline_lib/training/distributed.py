"""Multi-host training over MXNet's parameter server (ps-lite), started from resourceconfig.json.

Every host runs one *server* process and its training process is the *worker*; ``hosts[0]``
also runs the *scheduler*. The server/scheduler are child processes running
``python -c "import mxnet"`` with ``DMLC_ROLE`` set (importing MXNet runs the role and exits,
as MXNet's own launcher does); the worker gets its ``DMLC_*`` variables before
``mx.kv.create('dist_sync')``. Locally every host can be a process on 127.0.0.1 (set
``ODP_DIST_HOST_ADDRESSES=127.0.0.1``), which is how this is tested.

Besides the kvstore, ``hosts[0]`` keeps a small TCP link to every other host (the *watch*,
on ``DMLC_PS_ROOT_PORT + 1``). ps-lite never notices a peer that died, so without it one
failed host would leave the others blocked forever; over the watch:

* a host that ends without saying ``done`` (crash, OOM kill, a failed pod) makes the others
  write ``output/failure`` and exit non-zero at once;
* hosts that have not all joined within ``ODP_DIST_START_TIMEOUT`` seconds fail the same way;
* ``hosts[0]`` (the *chief*: the only host that writes checkpoints, the model and
  metrics.json) sends its last checkpoint to the others, so every worker resumes from the
  same epoch, weights and optimizer state.

With ``dist_sync`` a stop (SIGTERM, ``max_runtime_seconds``) is agreed between batches through
the kvstore, so every worker stops at the same step instead of waiting on the others.

Environment (all optional): ``ODP_DIST_HOST_ADDRESSES`` (``algo-1=10.0.0.5,algo-2=10.0.0.6``,
or one address for every host), ``DMLC_PS_ROOT_URI`` / ``DMLC_PS_ROOT_PORT`` (scheduler address
and port; default ``hosts[0]`` resolved by DNS, port 9091), ``ODP_DIST_WATCH_PORT``,
``ODP_DIST_START_TIMEOUT`` (default 900), ``DMLC_INTERFACE`` (else resourceconfig's
``network_interface_name``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import mxnet as mx
import numpy as np

from ..storage import atomic_write
from .checkpoints import Checkpointer, LoopState

ENV_ADDRESSES = "ODP_DIST_HOST_ADDRESSES"
ENV_WATCH_PORT = "ODP_DIST_WATCH_PORT"
ENV_START_TIMEOUT = "ODP_DIST_START_TIMEOUT"
DEFAULT_PORT = 9091
DEFAULT_START_TIMEOUT = 900.0
# kvstore key of the stop vote; Gluon's Trainer uses keys 0..n_params-1. ps-lite maps a key to
# a server with ``key * 9973`` in a 32-bit int, so keys must stay below 2**31 / 9973.
STOP_KEY = 200_000
VALUE_KEY = 200_001

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


class DistributedError(RuntimeError):
    """The cluster could not be formed or lost a host."""


# --------------------------------------------------------------------------- configuration


def kv_store_type(kv_store: str, num_hosts: int, num_devices: int) -> str:
    """The kvstore to create for a ``kv_store`` hyperparameter on this cluster.

    Several hosts: ``device`` (the default) means ``dist_sync``, as in SageMaker; ``local``
    cannot span hosts. One host: ``device`` with several GPUs, ``local`` otherwise (a ``dist_*``
    value on one host needs no parameter server).
    """
    if num_hosts > 1:
        if kv_store == "device":
            return "dist_sync"
        if kv_store.startswith("dist"):
            return kv_store
        from .entrypoint import TrainingError

        raise TrainingError(
            f"kv_store={kv_store} cannot train across {num_hosts} hosts; use dist_sync or "
            "dist_async (or leave kv_store unset)"
        )
    if kv_store == "local":
        return "local"
    return "device" if num_devices > 1 else "local"


def is_sync(kv_type: str) -> bool:
    return kv_type.startswith("dist") and "async" not in kv_type


@dataclass(frozen=True)
class RolePlan:
    """Which ps-lite roles this host runs and the ``DMLC_*`` variables each gets."""

    hosts: tuple[str, ...]
    current_host: str
    root_uri: str
    root_port: int
    watch_port: int
    node_host: str | None = None
    interface: str | None = None

    @property
    def num_hosts(self) -> int:
        return len(self.hosts)

    @property
    def host_index(self) -> int:
        return self.hosts.index(self.current_host)

    @property
    def is_chief(self) -> bool:
        """``hosts[0]``: runs the scheduler and writes checkpoints, model and metrics."""
        return self.host_index == 0

    @property
    def child_roles(self) -> tuple[str, ...]:
        """Roles started as child processes (the worker is the training process itself)."""
        return ("scheduler", "server") if self.is_chief else ("server",)

    def env(self, role: str) -> dict[str, str]:
        if role not in ("scheduler", "server", "worker"):
            raise ValueError(f"unknown ps-lite role {role!r}")
        env = {
            "DMLC_ROLE": role,
            "DMLC_PS_ROOT_URI": self.root_uri,
            "DMLC_PS_ROOT_PORT": str(self.root_port),
            "DMLC_NUM_SERVER": str(self.num_hosts),
            "DMLC_NUM_WORKER": str(self.num_hosts),
        }
        if role != "scheduler" and self.node_host:
            env["DMLC_NODE_HOST"] = self.node_host
        if self.interface:
            env["DMLC_INTERFACE"] = self.interface
        return env


def parse_addresses(value: str | None, hosts: tuple[str, ...]) -> dict[str, str]:
    """``ODP_DIST_HOST_ADDRESSES``: ``name=addr,...`` or one address shared by every host."""
    if not value or not value.strip():
        return {}
    value = value.strip()
    if "=" not in value:
        return dict.fromkeys(hosts, value)
    out = {}
    for part in value.split(","):
        name, sep, addr = part.strip().partition("=")
        if not sep or not name or not addr:
            raise ValueError(f"{ENV_ADDRESSES}: expected name=address pairs, got {part!r}")
        out[name.strip()] = addr.strip()
    return out


def plan_roles(
    resource: Mapping,
    env: Mapping[str, str] | None = None,
    resolve: Callable[[str], str] | None = None,
) -> RolePlan:
    """The role plan for this host from resourceconfig.json and the environment.

    ``resolve`` turns a host name into an address (default: DNS, retried until the start
    timeout, as pods of a headless Service appear one by one).
    """
    env = os.environ if env is None else env
    hosts = tuple(resource.get("hosts") or ("algo-1",))
    current = resource.get("current_host", hosts[0])
    if current not in hosts:
        raise DistributedError(f"current_host {current!r} is not among hosts {list(hosts)}")
    if len(set(hosts)) != len(hosts):
        raise DistributedError(f"resourceconfig.json lists a host twice: {list(hosts)}")
    addresses = parse_addresses(env.get(ENV_ADDRESSES), hosts)
    if resolve is None:
        timeout = float(env.get(ENV_START_TIMEOUT, DEFAULT_START_TIMEOUT))
        resolve = lambda name: _resolve(name, timeout)  # noqa: E731
    root_uri = env.get("DMLC_PS_ROOT_URI") or addresses.get(hosts[0]) or resolve(hosts[0])
    root_port = int(env.get("DMLC_PS_ROOT_PORT") or DEFAULT_PORT)
    watch_port = int(env.get(ENV_WATCH_PORT) or root_port + 1)
    return RolePlan(
        hosts=hosts,
        current_host=current,
        root_uri=root_uri,
        root_port=root_port,
        watch_port=watch_port,
        node_host=env.get("DMLC_NODE_HOST") or addresses.get(current),
        interface=env.get("DMLC_INTERFACE") or resource.get("network_interface_name"),
    )


def _resolve(name: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return socket.gethostbyname(name)
        except OSError as exc:
            if time.monotonic() >= deadline:
                raise DistributedError(
                    f"cannot resolve host {name!r} within {timeout:.0f}s: {exc}"
                ) from None
            time.sleep(2)


def encode_f64(value: float) -> np.ndarray:
    """A float64 as four float32 holding its 16-bit words (sums with zeros stay exact)."""
    return np.frombuffer(np.float64(value).tobytes(), dtype="<u2").astype(np.float32)


def decode_f64(words: np.ndarray) -> float:
    return float(np.frombuffer(np.asarray(words).astype("<u2").tobytes(), dtype=np.float64)[0])


# --------------------------------------------------------------------------- data sharding


class ShardSampler(mx.gluon.data.Sampler):
    """This worker's disjoint part of a shuffled epoch; every worker gets the same count.

    Each epoch the workers shuffle with the same seed, pad the order by wrapping around to a
    multiple of ``num_shards`` and take every ``num_shards``-th index from ``rank``, so the
    shards are disjoint (but for the padding) and equally long: in ``dist_sync`` every worker
    must run the same number of steps.
    """

    def __init__(self, length: int, rank: int, num_shards: int, seed: int = 0, epoch: int = 0):
        if not 0 <= rank < num_shards:
            raise ValueError(f"rank {rank} outside 0..{num_shards - 1}")
        if length < 1:
            raise ValueError("cannot shard an empty dataset")
        self.length, self.rank, self.num_shards = length, rank, num_shards
        self.seed, self.epoch = seed, epoch
        self.per_shard = math.ceil(length / num_shards)

    def indices(self, epoch: int) -> list[int]:
        order = np.random.RandomState((self.seed + epoch) % 2**32).permutation(self.length)
        order = np.resize(order, self.per_shard * self.num_shards)  # wrap-around padding
        return order[self.rank :: self.num_shards].tolist()

    def __iter__(self):
        epoch, self.epoch = self.epoch, self.epoch + 1
        return iter(self.indices(epoch))

    def __len__(self) -> int:
        return self.per_shard


# --------------------------------------------------------------------------- checkpoints


class DistCheckpointer(Checkpointer):
    """Checkpoints in a distributed run: only the chief writes; optimizer state is skipped
    where it lives on the servers (``dist_async``: MXNet cannot save it from a worker)."""

    def __init__(self, folder: str | Path, writable: bool = True, optimizer_state: bool = True):
        super().__init__(folder)
        self.writable, self.optimizer_state = writable, optimizer_state

    def save(self, net, trainer: mx.gluon.Trainer, state: LoopState) -> None:
        if not self.writable:
            return
        if self.optimizer_state:
            super().save(net, trainer, state)
            return
        with atomic_write(self.params) as tmp:
            net.save_parameters(str(tmp))
        with atomic_write(self.states) as tmp:
            tmp.write_bytes(b"")  # no optimizer state: a resumed run starts it afresh
        with atomic_write(self.state) as tmp:
            tmp.write_text(json.dumps(asdict(state), indent=1))

    def save_best(self, net) -> None:
        if self.writable:
            super().save_best(net)

    def load(self, net, trainer: mx.gluon.Trainer, ctx) -> LoopState | None:
        if not (self.state.exists() and self.params.exists() and self.states.exists()):
            return None
        if self.optimizer_state and self.states.stat().st_size:
            return super().load(net, trainer, ctx)
        state = LoopState(**json.loads(self.state.read_text()))
        net.load_parameters(str(self.params), ctx=ctx)
        return state


CHECKPOINT_FILES = ("last.params", "last.states", "state.json")


def _read_checkpoint(folder: Path) -> dict[str, bytes]:
    files = {name: folder / name for name in CHECKPOINT_FILES}
    if not all(p.is_file() for p in files.values()):
        return {}
    return {name: p.read_bytes() for name, p in files.items()}


# --------------------------------------------------------------------------- the cluster


@dataclass
class _Peer:
    host: str
    sock: socket.socket
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: bool = False

    def send(self, data: bytes) -> None:
        with self.lock:
            self.sock.sendall(data)


class Cluster:
    """This host's part of a multi-host run: ps-lite roles, the watch, the kvstore."""

    def __init__(
        self,
        plan: RolePlan,
        kv_type: str,
        failure_file: Path,
        checkpoint_dir: Path,
        log: Callable[[str], None] = print,
        start_timeout: float | None = None,
    ):
        if not kv_type.startswith("dist"):
            raise ValueError(f"a cluster needs a dist kvstore, not {kv_type!r}")
        self.plan, self.kv_type, self.failure_file = plan, kv_type, Path(failure_file)
        self.checkpoint_dir, self.log = Path(checkpoint_dir), log
        self.start_timeout = float(
            start_timeout
            if start_timeout is not None
            else os.environ.get(ENV_START_TIMEOUT, DEFAULT_START_TIMEOUT)
        )
        self.kv = None
        self.rank: int | None = None
        self.children: dict[str, subprocess.Popen] = {}
        self._peers: dict[str, _Peer] = {}
        self._lock = threading.Lock()
        self._closing = False  # our own shutdown started: the children may exit
        self._failing = False  # ... because training failed here (it reports that itself)
        self._finished = False  # the kvstore is shut down: nothing left to watch
        self._ready = threading.Event()  # kvstore formed
        self._joined = threading.Event()  # watch links up (chief: all hosts said hello)
        self._checkpoint_received = threading.Event()
        self._received_dir: Path | None = None
        self._server: socket.socket | None = None
        self._checkpoint: dict[str, bytes] = {}

    # ---------------------------------------------------------------- start

    @classmethod
    def start(
        cls,
        resource: Mapping,
        kv_type: str,
        failure_file: Path,
        checkpoint_dir: Path,
        log: Callable[[str], None] = print,
    ) -> Cluster:
        """Plan the roles from ``resource``, start the child roles and the watch."""
        cluster = cls(plan_roles(resource), kv_type, failure_file, checkpoint_dir, log)
        try:
            cluster._start()
        except BaseException:
            cluster.close(ok=False)
            raise
        return cluster

    @property
    def is_chief(self) -> bool:
        return self.plan.is_chief

    @property
    def sync(self) -> bool:
        return is_sync(self.kv_type)

    def _start(self) -> None:
        p = self.plan
        self.log(
            f"distributed training ({self.kv_type}): host {p.current_host} is "
            f"{p.host_index + 1} of {p.num_hosts}, scheduler {p.root_uri}:{p.root_port}, "
            f"starting {' + '.join(p.child_roles)}"
        )
        for role in p.child_roles:
            env = {**os.environ, **p.env(role), "ODP_DIST_PARENT_PID": str(os.getpid())}
            self.children[role] = subprocess.Popen(
                [sys.executable, "-c", _ROLE_CODE],
                env=env,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # a signal to our process group must not kill them
            )
        if p.is_chief:
            self._checkpoint = _read_checkpoint(self.checkpoint_dir)
            try:
                self._server = socket.create_server(("", p.watch_port))
            except OSError as exc:
                raise DistributedError(
                    f"cannot listen on the watch port {p.watch_port} ({ENV_WATCH_PORT}): {exc}"
                ) from None
            self._thread(self._accept_loop)
        else:
            self._thread(self._connect_loop)
        self._thread(self._watch_children)
        self._thread(self._watch_start)

    def _thread(self, target, *args) -> None:
        threading.Thread(target=target, args=args, daemon=True).start()

    # ---------------------------------------------------------------- the worker

    def create_kvstore(self, seed: int = 0):
        """Join the parameter server as a worker; returns the dist kvstore.

        Also reseeds Python's and NumPy's generators with ``seed + rank`` so that workers
        augment their shards differently (the weights were initialised before, identically).
        """
        os.environ.update(self.plan.env("worker"))
        kv = mx.kv.create(self.kv_type)
        self.kv, self.rank = kv, kv.rank
        self._ready.set()
        if kv.num_workers != self.plan.num_hosts:
            raise DistributedError(
                f"kvstore has {kv.num_workers} workers but resourceconfig.json lists "
                f"{self.plan.num_hosts} hosts"
            )
        if self.sync:
            kv.init(STOP_KEY, mx.nd.zeros(2))
            kv.init(VALUE_KEY, mx.nd.zeros(4))
        random.seed(seed + kv.rank)
        np.random.seed(seed + kv.rank)
        self.log(
            f"joined the parameter server: worker rank {kv.rank} of {kv.num_workers}"
            + (" (chief)" if self.is_chief else "")
        )
        return kv

    @property
    def update_on_kvstore(self) -> bool:
        """dist_sync: servers sum gradients, every worker runs the optimizer (so its state can
        be checkpointed); dist_async: MXNet only supports updating on the servers."""
        return not self.sync

    @property
    def rescale_grad(self) -> float:
        """dist_sync sums the workers' gradients; average them so the effective batch is
        mini_batch_size x hosts at the learning rate of one host (as SageMaker does)."""
        return 1.0 / self.plan.num_hosts if self.sync else 1.0

    def sampler(self, length: int, seed: int, start_epoch: int = 0) -> ShardSampler:
        sampler = ShardSampler(length, self.rank or 0, self.plan.num_hosts, seed, start_epoch)
        self.log(
            f"worker rank {sampler.rank}: training on a shard of {len(sampler)} of {length} "
            f"images per epoch"
        )
        return sampler

    def checkpointer(self, folder: Path) -> DistCheckpointer:
        """The chief's own checkpoints; elsewhere a read-only copy of the chief's."""
        if self.is_chief:
            return DistCheckpointer(folder, writable=True, optimizer_state=self.sync)
        if not self._checkpoint_received.wait(self.start_timeout):
            raise DistributedError("no checkpoint hand-over from the chief host")
        return DistCheckpointer(self._received_dir, writable=False, optimizer_state=self.sync)

    def stop_check(self, stopper: Callable[[], str | None]) -> Callable[[], str | None]:
        """A stop check every worker agrees on (dist_sync); ``stopper`` itself otherwise.

        ``stopper`` returns a reason or None and may carry ``signal_reason``; a signal on any
        host is recorded as this host's ``signal_reason`` too, so all of them save and exit
        the same way.
        """
        if not self.sync:
            return stopper
        kv = self.kv

        def check() -> str | None:
            reason = stopper()
            signalled = bool(getattr(stopper, "signal_reason", None))
            vote = mx.nd.array([float(signalled), float(bool(reason) and not signalled)])
            kv.push(STOP_KEY, vote)
            total = mx.nd.zeros(2)
            kv.pull(STOP_KEY, out=total)
            signals, others = total.asnumpy().tolist()
            if signals and not signalled and hasattr(stopper, "signal_reason"):
                stopper.signal_reason = "another host received a stop signal"
                return stopper.signal_reason
            if reason:
                return reason
            if signals or others:
                return "another host reached max_runtime_seconds"
            return None

        return check

    def chief_value(self, value: float) -> float:
        """The chief's ``value`` on every host, bit for bit (dist_sync; ``value`` otherwise).

        Workers keep different BatchNorm statistics (each sees its own shard), so their
        validation mAP differs; decisions taken on it (early stopping) must be the chief's
        or the workers would leave the training loop at different epochs and block each
        other. The float64 travels as four 16-bit integers (exact in float32 sums).
        """
        if not self.sync:
            return value
        mine = encode_f64(value) if self.is_chief else np.zeros(4, np.float32)
        self.kv.push(VALUE_KEY, mx.nd.array(mine))
        total = mx.nd.zeros(4)
        self.kv.pull(VALUE_KEY, out=total)
        return decode_f64(total.asnumpy())

    def detach(self, net) -> None:
        """After training: let ``net.load_parameters`` work (with dist_async MXNet would
        otherwise try to re-initialise the distributed kvstore, which it cannot)."""
        for param in net.collect_params().values():
            param._trainer = None

    # ---------------------------------------------------------------- shutdown

    def close(self, ok: bool) -> None:
        """End this host's part. ``ok``: training ended normally here (also after an agreed
        stop), so wait for the other workers; otherwise leave at once (the others are told
        through the watch and fail too)."""
        with self._lock:
            if self._closing:
                return
            self._closing, self._failing = True, not ok
        if self.kv is not None:
            self._free_kvstore(barrier=ok)  # ok: returns once every host got here
        self._finished = True
        if ok:  # after the barrier: a host leaving without "done" before it has failed
            for peer in list(self._peers.values()):
                with contextlib.suppress(OSError):
                    peer.send(b"done\n")
        deadline = time.monotonic() + (30 if ok else 0)
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
        for peer in list(self._peers.values()):
            with contextlib.suppress(OSError):
                peer.sock.close()
        if self._server is not None:
            self._server.close()
        if self._received_dir is not None:
            shutil.rmtree(self._received_dir, ignore_errors=True)

    def _free_kvstore(self, barrier: bool) -> None:
        """Finalize ps-lite now, not whenever Python collects the kvstore (by then the
        servers may be gone). With ``barrier`` this waits for every worker to get here."""
        import ctypes

        from mxnet.base import _LIB, check_call

        kv, self.kv = self.kv, None
        if barrier:
            mx.nd.waitall()
        check_call(_LIB.MXKVStoreSetBarrierBeforeExit(kv.handle, ctypes.c_int(int(barrier))))
        check_call(_LIB.MXKVStoreFree(kv.handle))
        kv.handle = None  # KVStore.__del__ frees again: deleting NULL is a no-op

    def _abort(self, reason: str) -> None:
        """A peer failed or the cluster never formed: fail this host now (the main thread
        may be blocked inside ps-lite, where it would wait forever)."""
        with self._lock:
            if self._finished or self._failing:
                return
            self._finished = True
        message = (
            f"AlgorithmError: distributed training stopped on {self.plan.current_host}: {reason}"
        )
        for peer in list(self._peers.values()):
            with contextlib.suppress(OSError):
                peer.send(f"abort {reason}\n".encode())
        with contextlib.suppress(OSError):
            self.failure_file.parent.mkdir(parents=True, exist_ok=True)
            self.failure_file.write_text(message + "\n")
        print(f"training failed: {message}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        for child in self.children.values():
            with contextlib.suppress(OSError):
                child.send_signal(signal.SIGKILL)
        os._exit(1)

    # ---------------------------------------------------------------- the watch

    def _watch_start(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        if self._ready.wait(self.start_timeout) and self._joined.wait(
            max(30.0, deadline - time.monotonic())
        ):
            return
        joined = [self.plan.current_host, *self._peers]
        missing = [h for h in self.plan.hosts if h not in joined]
        self._abort(
            f"the cluster did not form within {self.start_timeout:.0f}s ({ENV_START_TIMEOUT}); "
            f"hosts not heard from: {missing or 'none (the parameter server did not start)'}"
        )

    def _watch_children(self) -> None:
        while not self._closing:
            for role, child in self.children.items():
                code = child.poll()
                if code is not None and not self._closing:
                    self._abort(f"the local parameter-server {role} exited with code {code}")
            time.sleep(0.5)

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
            peer = _Peer(words[1], sock)
            self._peers[peer.host] = peer
            try:
                self._send_checkpoint(peer)
            except OSError:
                self._abort(f"lost host {peer.host} while handing over the checkpoint")
            self._thread(self._read_peer, peer, reader)
            if expected <= set(self._peers):
                self._joined.set()
                self._checkpoint = {}

    def _send_checkpoint(self, peer: _Peer) -> None:
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
                if time.monotonic() >= deadline or self._closing:
                    return  # _watch_start reports it
                time.sleep(1)
        _keepalive(sock)
        sock.settimeout(None)
        peer = _Peer(chief, sock)
        self._peers[chief] = peer
        reader = sock.makefile("rb")
        try:
            peer.send(f"hello {self.plan.current_host}\n".encode())
            self._receive_checkpoint(reader)
        except (OSError, ValueError) as exc:
            self._abort(f"lost the chief host {chief} while joining: {exc}")
        self._joined.set()
        self._read_peer(peer, reader)

    def _receive_checkpoint(self, reader) -> None:
        words = reader.readline().decode().split()
        if len(words) != 2 or words[0] != "checkpoint":
            raise ValueError(f"unexpected hand-over {words!r}")
        folder = Path(tempfile.mkdtemp(prefix="odp-dist-ckpt-"))
        for _ in range(int(words[1])):
            name, size = reader.readline().decode().split()
            if name not in CHECKPOINT_FILES:
                raise ValueError(f"unexpected checkpoint file {name!r}")
            data = reader.read(int(size))
            if len(data) != int(size):
                raise ValueError("checkpoint hand-over cut short")
            (folder / name).write_bytes(data)
        self._received_dir = folder
        self._checkpoint_received.set()

    def _read_peer(self, peer: _Peer, reader) -> None:
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
                self._abort(f"host {peer.host} failed: {rest}")
        if not peer.done and not self._finished:
            self._abort(f"host {peer.host} stopped without finishing (it failed or was killed)")


def _keepalive(sock: socket.socket) -> None:
    """Notice a vanished host (node failure, network partition) within about two minutes."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for opt, value in (("TCP_KEEPIDLE", 60), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 6)):
        if hasattr(socket, opt):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, opt), value)
