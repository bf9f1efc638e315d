"""What a retraining run trains on, decided from its asset events or from the data's
content hash (no Airflow objects inside: events arrive as plain dicts).

* Events (one or several, from ``POST /api/v2/assets/events`` or a producer DAG): the newest
  one wins; its ``extra`` gives the data (``uri`` or any data Param, e.g. ``input_format``,
  ``train_rec_uri``) and ``content_hash``. The older ones are logged as superseded.
* No event (the cron schedule, or a manual run): the configured data is hashed and compared
  with the ``odp.content_hash`` tag of the champion's version; unchanged data ends the run
  early (nothing to retrain).

Either way training is seeded from ``models:/<model_name>@champion`` (the ``base_model``
input) when a champion exists and ``base_model`` is ``champion``.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

#: Event ``extra`` keys copied into the run's inputs (``uri`` is ``dataset_uri``).
DATA_KEYS = (
    "input_format",
    "dataset_uri",
    "train_rec_uri",
    "validation_rec_uri",
    "train_manifest_uri",
    "validation_manifest_uri",
    "attribute_names",
)
SEED_FROM_CHAMPION = "champion"


def newest_event(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The newest event (by timestamp); the others are logged as superseded."""
    if not events:
        return None
    ordered = sorted(events, key=lambda e: str(e.get("timestamp") or ""))
    for old in ordered[:-1]:
        log.info("superseded by a newer event: %s at %s", old.get("extra"), old.get("timestamp"))
    return ordered[-1]


def data_from_event(event: dict[str, Any]) -> dict[str, Any]:
    """The data Params an event's ``extra`` sets (``uri`` -> ``dataset_uri``)."""
    extra = dict(event.get("extra") or {})
    data = {k: extra[k] for k in DATA_KEYS if extra.get(k) not in (None, "")}
    if extra.get("uri") and "dataset_uri" not in data:
        uri = str(extra["uri"])
        data["dataset_uri"] = uri[len("file://") :] if uri.startswith("file://") else uri
    if not data:
        from .failure import StageFailed

        raise StageFailed(
            f"asset event {event.get('id')} has no data location in its extra "
            f"({extra!r}): give 'uri' (and 'content_hash')"
        )
    if extra.get("content_hash"):
        data["content_hash"] = str(extra["content_hash"])
    return data


def seed(params: dict[str, Any], champion: dict[str, Any] | None) -> str:
    """The ``base_model`` input: the champion's ``models:/`` URI, an explicit one, or ""."""
    wanted = str(params.get("base_model") or "").strip()
    if wanted != SEED_FROM_CHAMPION:
        return wanted
    if champion is None:
        log.info("no champion for %s yet: training from scratch", params["model_name"])
        return ""
    log.info("seeded from the champion, version %s", champion["version"])
    return f"models:/{params['model_name']}@champion"


def plan(
    params: dict[str, Any], events: list[dict[str, Any]], champion: dict[str, Any] | None
) -> dict[str, Any]:
    """Overrides of the run's Params for ``resolve_inputs``; ``{}`` when there is nothing
    to retrain (a run without events on data the champion was trained on)."""
    from .formats import content_hash, resolve_data

    event = newest_event(events)
    if event is not None:
        data = data_from_event(event)
        log.info("retraining on the data of asset event %s: %s", event.get("id"), data)
    else:
        configured = resolve_data(params)
        data = {"content_hash": content_hash(configured)}
        trained_on = ((champion or {}).get("tags") or {}).get("odp.content_hash")
        if trained_on == data["content_hash"]:
            log.info(
                "data unchanged since champion version %s was trained (content hash %s): "
                "nothing to retrain",
                champion["version"],
                trained_on,
            )
            return {}
        log.info(
            "content hash %s differs from the champion's (%s): retraining",
            data["content_hash"],
            trained_on or "none recorded",
        )
    return {**data, "base_model": seed(params, champion)}
