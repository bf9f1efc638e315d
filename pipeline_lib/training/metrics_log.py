"""SageMaker-style metric lines and the metrics summary kept alongside them.

The line formats are the ones SageMaker users parse with metric-definition regexes:
``#quality_metric: host=algo-1, epoch=3, batch=9 train cross_entropy <loss>=(1.81)``.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

#: Metric batches waiting for MLflow; beyond this the newest are dropped (metrics.json
#: keeps every value), so a slow server never holds more than this in memory.
MLFLOW_QUEUE_LIMIT = 1000


@dataclass
class MetricLogger:
    """Prints SageMaker metric lines and records the same values for metrics.json/MLflow."""

    host: str = "algo-1"
    stream: TextIO = field(default_factory=lambda: sys.stdout)
    history: list[dict[str, Any]] = field(default_factory=list)
    mlflow_run_id: str | None = None
    _mlflow_failed: bool = field(default=False, repr=False)
    _sender: _MlflowSender | None = field(default=None, repr=False)

    def _emit(self, line: str) -> None:
        print(line, file=self.stream, flush=True)

    def train_loss(
        self, epoch: int, batch: int, ce: float, l1: float, step: int | None = None
    ) -> None:
        """Running mean losses of an epoch so far; ``step`` (global iteration) also sends
        them to MLflow as ``batch_cross_entropy``/``batch_smooth_l1``."""
        self._emit(
            f"#quality_metric: host={self.host}, epoch={epoch}, batch={batch} "
            f"train cross_entropy <loss>=({ce})"
        )
        self._emit(
            f"#quality_metric: host={self.host}, epoch={epoch}, batch={batch} "
            f"train smooth_l1 <loss>=({l1})"
        )
        if step is not None:
            self._to_mlflow({"batch_cross_entropy": ce, "batch_smooth_l1": l1}, step)

    def validation_map(self, epoch: int, value: float) -> None:
        self._emit(
            f"#quality_metric: host={self.host}, epoch={epoch}, validation mAP <score>=({value})"
        )

    def progress(self, completed_epochs: int, total_epochs: int) -> None:
        pct = int(100 * completed_epochs / max(1, total_epochs))
        self._emit(f"#progress_metric: host={self.host}, completed {pct} % of epochs")

    def throughput(self, records_per_second: float) -> None:
        self._emit(
            f"#throughput_metric: host={self.host}, train throughput="
            f"{records_per_second:.1f} records/second"
        )

    def info(self, message: str) -> None:
        self._emit(f"[{time.strftime('%H:%M:%S')}] {message}")

    def epoch_end(self, record: dict[str, Any]) -> None:
        """Remember one epoch's values (and send them to MLflow, ``step=epoch``)."""
        self.history.append(record)
        values = {k: v for k, v in record.items() if k != "epoch" and isinstance(v, int | float)}
        self._to_mlflow(values, int(record["epoch"]))

    def _to_mlflow(self, values: dict[str, float], step: int) -> None:
        """Queue one batch for the attached run; a background thread sends it, so a slow
        or silent tracking server never holds up training."""
        if not self.mlflow_run_id or self._mlflow_failed:
            return
        if self._sender is None:
            self._sender = _MlflowSender(self.mlflow_run_id, self._mlflow_stopped)
        if not self._sender.put(values, step):
            self._mlflow_stopped(f"more than {MLFLOW_QUEUE_LIMIT} batches waiting")

    def _mlflow_stopped(self, why: str) -> None:
        if not self._mlflow_failed:
            self._mlflow_failed = True
            self.info(
                f"warning: MLflow logging to run {self.mlflow_run_id} stopped ({why}); "
                "metrics.json still has every value"
            )

    def close(self, timeout: float = 30.0) -> None:
        """Send what is queued for MLflow (waiting at most ``timeout`` seconds)."""
        if self._sender is not None:
            if not self._sender.drain(timeout):
                self._mlflow_stopped(f"not all metrics sent within {timeout:.0f} s")
            self._sender = None


class _MlflowSender:
    """A daemon thread sending metric batches to one MLflow run, in order, with
    ``log_batch``. Each call is bounded in time (``registry.store.HTTP_DEFAULTS``); after
    the first failure nothing more is tried."""

    def __init__(self, run_id: str, on_failure):
        self.run_id, self.on_failure = run_id, on_failure
        self.queue: queue.Queue = queue.Queue(maxsize=MLFLOW_QUEUE_LIMIT)
        self.failed = False
        threading.Thread(target=self._loop, name="odp-mlflow-metrics", daemon=True).start()

    def put(self, values: dict[str, float], step: int) -> bool:
        """Queue a batch; False when the queue is full or sending has failed."""
        if self.failed:
            return False
        try:
            self.queue.put_nowait((dict(values), step, int(time.time() * 1000)))
        except queue.Full:
            return False
        return True

    def drain(self, timeout: float) -> bool:
        """Wait until everything queued was sent (or dropped after a failure)."""
        deadline = time.monotonic() + timeout
        while self.queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.05)
        return not self.queue.unfinished_tasks

    def _loop(self) -> None:
        while True:
            values, step, ts = self.queue.get()
            try:
                if not self.failed:
                    self._send(values, step, ts)
            except Exception as exc:  # noqa: BLE001  any client/server failure
                self.failed = True
                self.on_failure(f"{type(exc).__name__}: {str(exc)[:200]}")
            finally:
                self.queue.task_done()

    def _send(self, values: dict[str, float], step: int, ts: int) -> None:
        from mlflow.entities import Metric
        from mlflow.tracking import MlflowClient

        from ..registry.store import bound_http_requests

        bound_http_requests()
        MlflowClient().log_batch(
            self.run_id,
            metrics=[Metric(k, float(v), ts, step) for k, v in values.items()],
            synchronous=True,
        )
