"""Running the real DAG in-process (``dag.test()``) and reading what happened."""

from __future__ import annotations

from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def load_dag(dag_id: str = "object_detection_training"):
    """The DAG as Airflow's DagBag parses it from dags/."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert not bag.import_errors, bag.import_errors
    return bag.get_dag(dag_id)


def task_states(dagrun) -> dict[str, str]:
    """task_id -> state of one DAG run."""
    return {ti.task_id: str(ti.state) for ti in dagrun.get_task_instances()}


def tries(dagrun) -> dict[str, int]:
    """task_id -> how many times the task ran."""
    return {ti.task_id: ti.try_number for ti in dagrun.get_task_instances()}


def small_conf(dataset: Path, model_name: str, **overrides: Any) -> dict[str, Any]:
    """A run conf that trains for seconds."""
    return {
        "dataset_uri": str(dataset),
        "model_name": model_name,
        "epochs": 2,
        "mini_batch_size": 8,
        "base_network": "mobilenet-0.25",
        "use_pretrained_model": False,
        "hyperparameters": {"num_workers": "0"},
        **overrides,
    }
