"""This host's part of a multi-host run: the ps-lite roles, the watch and the dist kvstore.

``Cluster`` ties role planning (``roles``), the child processes (``processes``) and the peer
watch (``watch``) to the training process's kvstore, over which the workers also agree on
when to stop and on the chief's validation mAP.
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

import mxnet as mx
import numpy as np

from ..checkpoints import DistCheckpointer, read_checkpoint_files
from ..errors import DistributedError
from .processes import RoleProcesses
from .roles import RolePlan, configured_start_timeout, is_sync, plan_roles
from .sharding import ShardSampler
from .watch import Watch

# kvstore key of the stop vote; Gluon's Trainer uses keys 0..n_params-1. ps-lite maps a key to
# a server with ``key * 9973`` in a 32-bit int, so keys must stay below 2**31 / 9973.
STOP_KEY = 200_000
VALUE_KEY = 200_001


def encode_f64(value: float) -> np.ndarray:
    """A float64 as four float32 holding its 16-bit words (sums with zeros stay exact)."""
    return np.frombuffer(np.float64(value).tobytes(), dtype="<u2").astype(np.float32)


def decode_f64(words: np.ndarray) -> float:
    """The float64 that ``encode_f64`` turned into ``words``."""
    return float(np.frombuffer(np.asarray(words).astype("<u2").tobytes(), dtype=np.float64)[0])


class Cluster:
    """This host's part of a multi-host run: ps-lite roles, the watch, the kvstore."""

    def __init__(
        self,
        plan: RolePlan,
        kv_type: str,
        failure_file: Path,
        checkpoint_dir: Path,
        *,
        log: Callable[[str], None] = print,
        start_timeout: float | None = None,
    ):
        if not kv_type.startswith("dist"):
            raise ValueError(f"a cluster needs a dist kvstore, not {kv_type!r}")
        self.plan, self.kv_type, self.failure_file = plan, kv_type, Path(failure_file)
        self.checkpoint_dir, self.log = Path(checkpoint_dir), log
        self.start_timeout = float(
            start_timeout if start_timeout is not None else configured_start_timeout()
        )
        self.kv = None
        self.rank: int | None = None
        self.processes = RoleProcesses(plan)
        self._lock = threading.Lock()
        self._closing = threading.Event()  # our own shutdown started: the children may exit
        self._failing = False  # ... because training failed here (it reports that itself)
        self._finished = False  # the kvstore is shut down: nothing left to watch
        self.watch = Watch(plan, self.start_timeout, self._closing, self._abort)

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
        cluster = cls(plan_roles(resource), kv_type, failure_file, checkpoint_dir, log=log)
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
        self.processes.start()
        self.watch.start(read_checkpoint_files(self.checkpoint_dir) if p.is_chief else {})
        threading.Thread(
            target=self.processes.watch, args=(self._closing, self._abort), daemon=True
        ).start()
        self.watch.start_timer()

    # ---------------------------------------------------------------- the worker

    def create_kvstore(self, seed: int = 0):
        """Join the parameter server as a worker; returns the dist kvstore.

        Also reseeds Python's and NumPy's generators with ``seed + rank`` so that workers
        augment their shards differently (the weights were initialised before, identically).
        """
        os.environ.update(self.plan.env("worker"))
        kv = mx.kv.create(self.kv_type)
        self.kv, self.rank = kv, kv.rank
        self.watch.ready.set()
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
        """This worker's shard of a ``length``-image training set."""
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
        received = self.watch.wait_checkpoint(self.start_timeout)
        if received is None:
            raise DistributedError("no checkpoint hand-over from the chief host")
        return DistCheckpointer(received, writable=False, optimizer_state=self.sync)

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
            if self._closing.is_set():
                return
            self._closing.set()
            self._failing = not ok
        if self.kv is not None:
            self._free_kvstore(barrier=ok)  # ok: returns once every host got here
        self._finished = True
        if ok:  # after the barrier: a host leaving without "done" before it has failed
            self.watch.broadcast(b"done\n")
        self.processes.stop(grace=30 if ok else 0)
        self.watch.close()

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
        self.watch.broadcast(f"abort {reason}\n".encode())
        with contextlib.suppress(OSError):
            self.failure_file.parent.mkdir(parents=True, exist_ok=True)
            self.failure_file.write_text(message + "\n")
        print(f"training failed: {message}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        self.processes.kill()
        self.watch.discard_checkpoint()  # os._exit runs no cleanup
        os._exit(1)
