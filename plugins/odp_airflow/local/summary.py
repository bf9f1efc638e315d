"""What the local stack prints: the URLs and login, and the demo's result from MLflow."""

from __future__ import annotations

from typing import Any

from pipeline_lib.settings import load_settings

from .env import DAG_ID, local_env


def urls_text() -> str:
    """Human-readable URLs, login and locations of local state."""
    env = local_env()
    s = load_settings()
    return "\n".join(
        [
            f"Airflow UI   {env.airflow_url}   (login: {env.user} / {env.password})",
            f"MLflow UI    {env.mlflow_url}",
            "             (both started by `make ui`)",
            f"ODP_HOME     {s.home}",
            f"AIRFLOW_HOME {s.airflow_home}",
            f"MLflow store {s.mlflow_tracking_uri}",
            f"  artifacts  {s.mlflow_artifacts}",
        ]
    )


def _pick_map(metrics: dict[str, float]) -> tuple[str, float] | None:
    for key in ("mAP", "validation_mAP", "val_mAP", "validation:mAP"):
        if key in metrics:
            return key, metrics[key]
    for key in sorted(metrics):
        if key.lower().endswith("map"):
            return key, metrics[key]
    return None


def demo_summary(model_name: str, tracking_uri: str | None = None) -> dict[str, Any] | None:
    """The ``candidate`` version of ``model_name`` with its mAP, and the champion version."""
    from pipeline_lib import registry

    candidate = registry.get_candidate(model_name, tracking_uri)
    if candidate is None:
        return None
    picked = _pick_map(candidate["metrics"])
    champion = registry.get_champion(model_name, tracking_uri)
    return {
        "name": candidate["name"],
        "version": candidate["version"],
        "aliases": candidate["aliases"],
        "run_id": candidate["run_id"],
        "model_uri": candidate["model_uri"],
        "source": candidate["source"],
        "map_metric": picked[0] if picked else None,
        "mAP": picked[1] if picked else None,
        "champion_version": champion["version"] if champion else None,
        "created_ms": candidate.get("creation_timestamp"),
        "tracking_uri": registry.resolve_tracking_uri(tracking_uri),
    }


def format_demo_summary(summary: dict[str, Any]) -> str:
    """The text block printed at the end of ``make demo``."""
    env = local_env()
    m = summary["mAP"]
    map_text = f"{m:.4f}" if isinstance(m, int | float) else "not recorded"
    bar = "=" * 72
    return "\n".join(
        [
            bar,
            f" Demo finished: DAG {DAG_ID}",
            f"   validation mAP ({summary['map_metric'] or 'mAP'}): {map_text}",
            f"   registered model:  {summary['name']}  version {summary['version']}"
            f"  aliases: {', '.join(summary['aliases']) or '-'}",
            f"   champion version:  {summary['champion_version'] or '-'}",
            f"   MLflow run:        {summary['run_id']}",
            f"   model URI:         {summary['model_uri']}  (artifacts: {summary['source']})",
            f"   tracking store:    {summary['tracking_uri']}",
            "",
            " Where to look:",
            f"   make ui   -> Airflow {env.airflow_url}  (login {env.user} / {env.password})",
            f"                MLflow  {env.mlflow_url}/#/models/{summary['name']}"
            f"/versions/{summary['version']}",
            f"   logs      -> {load_settings().airflow_home}/logs/dag_id={DAG_ID}/",
            bar,
        ]
    )
