"""Promotion: whether a candidate version takes the ``champion`` alias, and applying that.

:func:`decide_promotion` is the decision, a pure function of the two figures and the margin
(plus the two version numbers for the wording), testable without MLflow.
:func:`promote_if_better` reads the figures from the registry, decides, and moves the alias.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .store import get_client
from .versions import CHAMPION_ALIAS


@dataclass(frozen=True)
class PromotionDecision:
    """Whether to promote, and why (the text is put on the version as ``odp.promotion``)."""

    promote: bool
    reason: str


def decide_promotion(
    candidate_value: float | None,
    champion_value: float | None,
    margin: float = 0.0,
    *,
    candidate_version: int,
    champion_version: int | None,
    metric: str = "mAP",
    greater_is_better: bool = True,
) -> PromotionDecision:
    """Decide on promoting ``candidate_version`` over ``champion_version`` (``None``: no
    champion yet).

    Promote when there is no champion, when the champion has no value, or when
    ``candidate > champion + margin`` (``candidate < champion - margin`` with
    ``greater_is_better=False``); never when the candidate is the champion already or has
    no value while a champion exists.
    """
    if champion_version is not None and champion_version == candidate_version:
        return PromotionDecision(False, f"version {candidate_version} is already the champion")
    if champion_version is None:
        return PromotionDecision(True, "no champion yet")
    if candidate_value is None:
        return PromotionDecision(False, f"version {candidate_version} has no {metric!r} metric")
    if champion_value is None:
        return PromotionDecision(True, f"champion v{champion_version} has no {metric!r} metric")
    better = (
        candidate_value > champion_value + margin
        if greater_is_better
        else candidate_value < champion_value - margin
    )
    cmp = f"{metric} {candidate_value:.4f} vs champion v{champion_version} {champion_value:.4f}"
    return PromotionDecision(
        better, f"{cmp} ({'beats' if better else 'does not beat'} margin {margin})"
    )


def promote_if_better(
    name: str,
    version: int | str,
    metric: str = "mAP",
    margin: float = 0.0,
    tracking_uri: str | None = None,
    *,
    greater_is_better: bool = True,
    champion_value: float | None = None,
) -> dict:
    """Move the ``champion`` alias to ``version`` when it beats the current champion.

    ``champion_value``, when given, is the champion's ``metric`` measured on the same data
    as the candidate (like with like); otherwise the value logged with its run is used.

    ``version`` is promoted when there is no champion, when the champion has no value for
    ``metric``, or when ``candidate > champion + margin`` (``<  champion - margin`` with
    ``greater_is_better=False``). A version without the metric is never promoted over an
    existing champion. Calling it again is harmless.

    Returns:
        ``{"promoted", "reason", "name", "version", "metric", "candidate_value",
        "champion_value", "previous_champion", "champion"}`` where ``champion`` is the
        version holding the alias afterwards.
    """
    from mlflow.exceptions import MlflowException

    client = get_client(tracking_uri)
    mv = client.get_model_version(name, str(version))
    value = client.get_run(mv.run_id).data.metrics.get(metric) if mv.run_id else None
    try:
        current = client.get_model_version_by_alias(name, CHAMPION_ALIAS)
    except MlflowException:
        current = None
    result: dict[str, Any] = {
        "name": name,
        "version": int(mv.version),
        "metric": metric,
        "margin": margin,
        "candidate_value": value,
        "champion_value": None,
        "previous_champion": int(current.version) if current else None,
    }
    champ_value = None
    if current is not None and int(current.version) != int(mv.version):
        # the champion's figure matters only when there is another version to beat
        champ_value = champion_value
        if champ_value is None and current.run_id:
            try:
                champ_value = client.get_run(current.run_id).data.metrics.get(metric)
            except MlflowException:
                champ_value = None
        result["champion_value"] = champ_value
    decision = decide_promotion(
        value,
        champ_value,
        margin,
        candidate_version=int(mv.version),
        champion_version=result["previous_champion"],
        metric=metric,
        greater_is_better=greater_is_better,
    )
    if decision.promote:
        client.set_registered_model_alias(name, CHAMPION_ALIAS, mv.version)
    client.set_model_version_tag(name, mv.version, "odp.promotion", decision.reason[:5000])
    result.update(
        promoted=decision.promote,
        reason=decision.reason,
        champion=int(mv.version) if decision.promote else result["previous_champion"],
    )
    return result
