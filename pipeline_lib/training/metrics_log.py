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

    def _emit(self, line: str) -> None:
        print(line, file=self.stream, flush=True)

    def train_loss(self, epoch: int, batch: int, ce: float, l1: float) -> None:
        self._emit(
            f"#quality_metric: host={self.host}, epoch={epoch}, batch={batch} "
            f"train cross_entropy <loss>=({ce})"
        )
        self._emit(
            f"#quality_metric: host={self.host}, epoch={epoch}, batch={batch} "
            f"train smooth_l1 <loss>=({l1})"
        )

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
        """Remember one epoch's values (and send them to MLflow when a run is attached)."""
        self.history.append(record)
        if self.mlflow_run_id:
            from mlflow.tracking import MlflowClient

            client = MlflowClient()
            ts = int(time.time() * 1000)
            for key, value in record.items():
                if key != "epoch" and isinstance(value, int | float):
                    client.log_metric(self.mlflow_run_id, key, float(value), ts, record["epoch"])
