"""SageMaker-style metric lines and the metrics summary kept alongside them.

The line formats are the ones SageMaker users parse with metric-definition regexes:
``#quality_metric: host=algo-1, epoch=3, batch=9 train cross_entropy <loss>=(1.81)``.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO


@dataclass
class MetricLogger:
    """Prints SageMaker metric lines and records the same values for metrics.json/MLflow."""

    host: str = "algo-1"
    stream: TextIO = field(default_factory=lambda: sys.stdout)
    history: list[dict[str, Any]] = field(default_factory=list)
    mlflow_run_id: str | None = None
    _mlflow_failed: bool = field(default=False, repr=False)

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
        """One ``log_batch`` call to the attached run. A tracking server that stops answering
        costs a warning, not the training job (metrics.json keeps every value): the call is
        bounded in time (``registry.store.HTTP_DEFAULTS``), and after one failure no further
        call is tried."""
        if not self.mlflow_run_id or self._mlflow_failed:
            return
        try:
            from mlflow.entities import Metric
            from mlflow.tracking import MlflowClient

            from ..registry.store import bound_http_requests

            bound_http_requests()

            ts = int(time.time() * 1000)
            MlflowClient().log_batch(
                self.mlflow_run_id,
                metrics=[Metric(k, float(v), ts, step) for k, v in values.items()],
                synchronous=True,
            )
        except Exception as exc:  # noqa: BLE001  any client/server failure
            self._mlflow_failed = True
            self.info(
                f"warning: MLflow logging to run {self.mlflow_run_id} stopped "
                f"({type(exc).__name__}: {str(exc)[:200]}); metrics.json still has every value"
            )
