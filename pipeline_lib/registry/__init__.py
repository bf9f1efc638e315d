"""MLflow tracking and model registry: one run per trained model, versions, aliases, promotion.

Modules: :mod:`.store` (tracking URI, client, experiment), :mod:`.runs` (a job's run, live
while training), :mod:`.versions` (idempotent registration, aliases), :mod:`.promotion`
(the champion decision and applying it), :mod:`.resolve` (``models:/`` URIs to a local
``model.tar.gz``). The names below are the package's public API; importing it does not
import MLflow.
"""

from __future__ import annotations

from .promotion import PromotionDecision, decide_promotion, promote_if_better
from .resolve import resolve_model_uri
from .runs import (
    IDEMPOTENCY_TAG,
    LIVE_TAG,
    MODEL_ID_TAG,
    MODEL_SHA_TAG,
    flatten_metrics,
    start_run,
)
from .store import (
    DEFAULT_EXPERIMENT,
    ensure_experiment,
    get_client,
    resolve_tracking_uri,
    run_url,
    ui_url,
    version_url,
)
from .versions import (
    CANDIDATE_ALIAS,
    CHAMPION_ALIAS,
    check_model_name,
    get_candidate,
    get_champion,
    get_version_by_alias,
    register_model,
)

__all__ = [
    "CANDIDATE_ALIAS",
    "CHAMPION_ALIAS",
    "DEFAULT_EXPERIMENT",
    "IDEMPOTENCY_TAG",
    "LIVE_TAG",
    "MODEL_ID_TAG",
    "MODEL_SHA_TAG",
    "PromotionDecision",
    "decide_promotion",
    "ensure_experiment",
    "flatten_metrics",
    "get_candidate",
    "get_champion",
    "get_client",
    "get_version_by_alias",
    "promote_if_better",
    "check_model_name",
    "register_model",
    "resolve_model_uri",
    "resolve_tracking_uri",
    "run_url",
    "start_run",
    "ui_url",
    "version_url",
]
