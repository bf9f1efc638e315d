"""The dags/ folder parses cleanly, cheaply and without side effects.

Parsing happens in a fresh interpreter (the way Airflow's DAG processor does it), so the
modules it imports can be checked without interference from other tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from odp_airflow.local.config import render_config

REPO_ROOT = Path(__file__).resolve().parents[2]
DAGS = REPO_ROOT / "dags"
HEAVY_MODULES = ("mxnet", "gluoncv", "mlflow", "cv2", "great_expectations", "optuna")
MAIN_DAG = "object_detection_training"

_PARSE_SCRIPT = r"""
import inspect, json, socket, sys

HEAVY = set(sys.argv[2].split(","))
connects = []
_orig_connect = socket.socket.connect
_orig_connect_ex = socket.socket.connect_ex

def _record(self, address):
    if self.family != getattr(socket, "AF_UNIX", None):
        connects.append(repr(address))
    raise OSError("network access while parsing DAGs")

socket.socket.connect = _record
socket.socket.connect_ex = _record

try:
    from airflow.dag_processing.dagbag import DagBag
except ImportError:  # older layout
    from airflow.models.dagbag import DagBag

already = {m for m in sys.modules if m.split(".")[0] in HEAVY}
kwargs = {"dag_folder": sys.argv[1]}
if "include_examples" in inspect.signature(DagBag.__init__).parameters:
    kwargs["include_examples"] = False
bag = DagBag(**kwargs)
loaded = sorted({m.split(".")[0] for m in sys.modules if m.split(".")[0] in HEAVY} - {m.split(".")[0] for m in already})
dags = {
    dag_id: {
        "params": sorted(dag.params.keys()),
        "doc_md": bool(dag.doc_md),
        "tasks": sorted(dag.task_ids),
        "edges": sorted([t.task_id, d] for t in dag.tasks for d in t.downstream_task_ids),
        "timeouts": {t.task_id: t.execution_timeout and t.execution_timeout.total_seconds() for t in dag.tasks},
        "retries": {t.task_id: t.retries for t in dag.tasks},
        "tags": sorted(dag.tags),
        "catchup": dag.catchup,
        "max_active_runs": dag.max_active_runs,
        "owners": sorted({t.owner for t in dag.tasks}),
        "task_docs": {t.task_id: bool(t.doc_md) for t in dag.tasks},
    }
    for dag_id, dag in bag.dags.items()
}
# Every Airflow component (scheduler, dag-processor, api-server, workers) loads plugins/.
from airflow import plugins_manager

plugin_errors = {str(k): v for k, v in plugins_manager.get_import_errors().items()}
global_links = sorted(link.name for link in plugins_manager.get_global_operator_extra_links())
plugin_heavy = sorted({m.split(".")[0] for m in sys.modules if m.split(".")[0] in HEAVY} - set(loaded))

print("ODP-RESULT " + json.dumps({
    "plugin_import_errors": plugin_errors,
    "plugin_heavy_modules": plugin_heavy,
    "global_links": global_links,
    "dags": dags,
    "import_errors": {str(k): v for k, v in bag.import_errors.items()},
    "heavy_modules": loaded,
    "heavy_before": sorted(already),
    "connects": connects,
}))
"""


@pytest.fixture(scope="module")
def parsed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Parse dags/ in a clean subprocess against a throw-away AIRFLOW_HOME."""
    home = tmp_path_factory.mktemp("dagbag-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ODP_HOME", str(home))
        mp.setenv("AIRFLOW_HOME", str(home / "airflow"))
        render_config()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
    env.update(
        ODP_HOME=str(home),
        AIRFLOW_HOME=str(home / "airflow"),
        MLFLOW_TRACKING_URI=f"sqlite:///{home / 'mlflow.db'}",
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
    )
    proc = subprocess.run(  # noqa: S603  test-built argv, no shell
        [sys.executable, "-c", _PARSE_SCRIPT, str(DAGS), ",".join(HEAVY_MODULES)],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("ODP-RESULT ")]
    assert proc.returncode == 0 and lines, f"DagBag subprocess failed:\n{proc.stderr[-5000:]}"
    return json.loads(lines[-1][len("ODP-RESULT ") :])


def test_no_import_errors(parsed: dict) -> None:
    assert parsed["import_errors"] == {}


def test_main_dag_exists_with_params_and_docs(parsed: dict) -> None:
    assert MAIN_DAG in parsed["dags"], sorted(parsed["dags"])
    dag = parsed["dags"][MAIN_DAG]
    assert dag["doc_md"], "the DAG should carry doc_md (from the module docstring)"
    assert dag["params"], "the DAG should declare typed Params for the trigger form"
    assert dag["tasks"]


def test_main_dag_wiring(parsed: dict) -> None:
    """Each stage hands its result to the next; every stage reads the resolved inputs."""
    dag = parsed["dags"][MAIN_DAG]
    chain = ["resolve_inputs", "validate", "convert", "train", "evaluate", "register"]
    kubernetes = ["train_plan", "train_service", "train_pod", "train_service_delete"]
    assert dag["tasks"] == sorted(chain + kubernetes)
    expected = {(a, b) for a, b in zip(chain, chain[1:], strict=False)}
    expected |= {("resolve_inputs", t) for t in chain[2:]}  # inputs go to every stage
    expected |= {("validate", "train"), ("train", "register")}  # validation summary, model
    # compute=kubernetes: plan -> pods (mapped per host) -> train, inside a Service set-up
    # and torn down around the pods
    expected |= {("resolve_inputs", t) for t in ("train_plan", "train_service")}
    expected |= {("resolve_inputs", "train_service_delete"), ("validate", "train_plan")}
    expected |= {("convert", "train_plan"), ("train_plan", "train_pod")}
    expected |= {("train_service", "train_pod"), ("train_service", "train_service_delete")}
    expected |= {("train_pod", "train_service_delete"), ("train_pod", "train")}
    expected |= {("convert", "evaluate")}  # what evaluation reads (eval_uri)
    assert {tuple(e) for e in dag["edges"]} == expected


def test_every_task_has_a_timeout_and_retries(parsed: dict) -> None:
    dag = parsed["dags"][MAIN_DAG]
    assert all(seconds and seconds > 0 for seconds in dag["timeouts"].values()), dag["timeouts"]
    assert all(r >= 1 for r in dag["retries"].values()), dag["retries"]


def test_parsing_imports_no_heavy_modules(parsed: dict) -> None:
    assert parsed["heavy_before"] == []  # the check itself starts clean
    assert parsed["heavy_modules"] == [], (
        "DAG files must import mxnet/gluoncv/mlflow/... inside tasks, not at module level"
    )


def test_parsing_opens_no_connections(parsed: dict) -> None:
    assert parsed["connects"] == []


def test_plugins_load_without_errors_or_heavy_imports(parsed: dict) -> None:
    """Airflow imports every .py file under plugins/ as a top-level module.

    A package in plugins/ that uses relative imports must be listed in
    ``plugins/.airflowignore`` (it is still importable, as plugins/ is on sys.path).
    """
    assert parsed["plugin_import_errors"] == {}
    assert parsed["global_links"] == ["MLflow"]  # plugins/odp_links.py
    assert parsed["plugin_heavy_modules"] == []


DAG_IDS = ["object_detection_training", "object_detection_retraining"]


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_dag_policy(parsed: dict, dag_id: str) -> None:
    """What every DAG of the project carries: tags, an owner, docs on the DAG and on each
    task, no catch-up, retries (transient I/O failures) and a timeout on every task."""
    dag = parsed["dags"][dag_id]
    assert "object-detection" in dag["tags"], dag["tags"]
    assert dag["owners"] == ["ml-platform"], dag["owners"]
    assert dag["doc_md"]
    assert all(dag["task_docs"].values()), dag["task_docs"]
    assert dag["catchup"] is False
    assert all(seconds and seconds > 0 for seconds in dag["timeouts"].values()), dag["timeouts"]
    assert all(r >= 1 for r in dag["retries"].values()), dag["retries"]


def test_retraining_dag_runs_the_training_tasks_after_its_plan(parsed: dict) -> None:
    """The same task code as the training DAG (no copy), behind the retraining plan."""
    dag = parsed["dags"]["object_detection_retraining"]
    training = parsed["dags"][MAIN_DAG]
    assert dag["tasks"] == sorted([*training["tasks"], "plan_retraining"])
    assert ["plan_retraining", "resolve_inputs"] in dag["edges"]
    assert dag["max_active_runs"] == 1
    assert "base_model" in dag["params"]
