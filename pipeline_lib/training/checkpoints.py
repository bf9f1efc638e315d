"""Resumable checkpoints: weights, optimizer state and loop state, written atomically.

``Checkpointer`` for one host; ``DistCheckpointer`` for a multi-host run, where only the
chief writes and the others read the copy it handed over (see ``distributed.watch``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import mxnet as mx

from ..storage import atomic_write

# The files of the resume point (``best.params`` is not needed to resume).
CHECKPOINT_FILES = ("last.params", "last.states", "state.json")


@dataclass
class LoopState:
    """Everything besides weights/optimizer that a resumed job needs."""

    epoch: int = -1  # last completed epoch
    best_map: float = -1.0
    best_epoch: int = -1
    epochs_without_improvement: int = 0
    learning_rate: float = 0.0
    initial_map: float | None = None  # mAP of the seed model (incremental training)
    history: list[dict[str, Any]] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)  # each epoch's wall time
    spent_seconds: float = 0.0  # of the time budget, at the last checkpoint


class Checkpointer:
    """``checkpoints/last.*`` (resume point) and ``checkpoints/best.params`` (best mAP weights)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.params = self.folder / "last.params"
        self.states = self.folder / "last.states"
        self.state = self.folder / "state.json"
        self.best = self.folder / "best.params"

    def save(self, net, trainer: mx.gluon.Trainer, state: LoopState) -> None:
        """Write weights, optimizer state and loop state as one commit: all three are written
        aside first and renamed into place only when every one is complete (a full disk
        leaves the previous checkpoint whole, never new weights with an old loop state)."""
        write_together(
            [
                (self.params, lambda tmp: net.save_parameters(str(tmp))),
                (self.states, lambda tmp: trainer.save_states(str(tmp))),
                (self.state, lambda tmp: tmp.write_text(json.dumps(asdict(state), indent=1))),
            ]
        )

    def save_best(self, net) -> None:
        with atomic_write(self.best) as tmp:
            net.save_parameters(str(tmp))

    def load(self, net, trainer: mx.gluon.Trainer, ctx) -> LoopState | None:
        """Restore the last checkpoint into ``net``/``trainer``; None when there is none."""
        if not (self.state.exists() and self.params.exists() and self.states.exists()):
            return None
        state = LoopState(**json.loads(self.state.read_text()))
        net.load_parameters(str(self.params), ctx=ctx)
        trainer.load_states(str(self.states))
        return state

    def clear(self) -> None:
        for p in (self.params, self.states, self.state, self.best):
            if p.exists():
                os.remove(p)


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
        write_together(
            [
                (self.params, lambda tmp: net.save_parameters(str(tmp))),
                # no optimizer state: a resumed run starts it afresh
                (self.states, lambda tmp: tmp.write_bytes(b"")),
                (self.state, lambda tmp: tmp.write_text(json.dumps(asdict(state), indent=1))),
            ]
        )

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


def write_together(writes: list[tuple[Path, Callable[[Path], object]]]) -> None:
    """Write every ``(dest, write)`` to a temporary sibling, then rename them into place in
    order (the last one is the commit point); on any error nothing is replaced and the
    temporary files are removed. Renames need no space: a full disk fails the writes only."""
    done: list[tuple[Path, Path]] = []
    try:
        for dest, write in writes:
            tmp = dest.with_name(f".{dest.name}.{os.urandom(8).hex()}.part")
            done.append((tmp, dest))
            write(tmp)
        for tmp, dest in done:
            os.replace(tmp, dest)
    finally:
        for tmp, _ in done:
            tmp.unlink(missing_ok=True)


def read_checkpoint_files(folder: Path) -> dict[str, bytes]:
    """The resume point's files by name (``CHECKPOINT_FILES``); empty unless all exist."""
    files = {name: folder / name for name in CHECKPOINT_FILES}
    if not all(p.is_file() for p in files.values()):
        return {}
    return {name: p.read_bytes() for name, p in files.items()}
