"""pipeline_lib.registry.promotion: the champion alias against a throw-away SQLite store."""

from __future__ import annotations

from pathlib import Path

from registry_testdata import make_model_dir

from pipeline_lib import registry
from pipeline_lib.registry import PromotionDecision, decide_promotion


def test_candidate_moves_and_champion_follows_the_metric(store: Path, tmp_path: Path) -> None:
    name = "reg-promote"
    model_dir = make_model_dir(tmp_path / "model")

    def reg(value: float | None) -> int:
        metrics = {"mAP": value} if value is not None else None
        return registry.register_model(model_dir, name, metrics=metrics)["version"]

    assert registry.get_champion(name) is None
    v1 = reg(0.40)
    first = registry.promote_if_better(name, v1)
    assert first["promoted"] is True and first["reason"] == "no champion yet"
    assert registry.get_champion(name)["version"] == v1
    assert registry.promote_if_better(name, v1)["promoted"] is False  # already champion

    v2 = reg(0.35)
    assert registry.get_candidate(name)["version"] == v2
    worse = registry.promote_if_better(name, v2)
    assert worse["promoted"] is False
    assert (worse["candidate_value"], worse["champion_value"]) == (0.35, 0.40)
    assert worse["champion"] == v1

    v3 = reg(0.42)
    assert registry.promote_if_better(name, v3, margin=0.05)["promoted"] is False
    better = registry.promote_if_better(name, v3, margin=0.01)
    assert better["promoted"] is True and better["previous_champion"] == v1
    champion = registry.get_champion(name)
    assert champion["version"] == v3
    assert champion["aliases"] == ["candidate", "champion"]
    assert champion["metrics"]["mAP"] == 0.42

    v4 = reg(None)  # no metric: never replaces a champion that has one
    assert registry.promote_if_better(name, v4)["promoted"] is False

    client = registry.get_client()
    versions = {v: client.get_model_version(name, str(v)) for v in (v1, v2, v3, v4)}
    assert versions[v1].aliases == []
    assert versions[v3].aliases == ["champion"]
    assert versions[v4].aliases == ["candidate"]
    assert all(v.current_stage in ("None", None) for v in versions.values())  # no stages


# ------------------------------------------------------------------ the pure decision


def _decide(candidate, champion, margin=0.0, **kw):
    kw.setdefault("candidate_version", 3)
    kw.setdefault("champion_version", 1)
    return decide_promotion(candidate, champion, margin, **kw)


def test_decision_without_champion_promotes_even_without_a_figure() -> None:
    decision = _decide(None, None, champion_version=None)
    assert decision == PromotionDecision(True, "no champion yet")


def test_decision_for_the_champion_itself_is_no() -> None:
    decision = _decide(0.9, 0.1, champion_version=3)
    assert decision == PromotionDecision(False, "version 3 is already the champion")


def test_decision_needs_the_candidate_figure() -> None:
    assert _decide(None, 0.4) == PromotionDecision(False, "version 3 has no 'mAP' metric")


def test_decision_promotes_over_a_champion_without_figure() -> None:
    assert _decide(0.1, None) == PromotionDecision(True, "champion v1 has no 'mAP' metric")


def test_decision_compares_beyond_the_margin() -> None:
    better = _decide(0.42, 0.40, 0.01)
    assert better.promote is True
    assert better.reason == "mAP 0.4200 vs champion v1 0.4000 (beats margin 0.01)"
    within = _decide(0.42, 0.40, 0.05)
    assert within.promote is False
    assert within.reason == "mAP 0.4200 vs champion v1 0.4000 (does not beat margin 0.05)"
    assert _decide(0.40, 0.40).promote is False  # equal is not better
    assert _decide(0.35, 0.40).promote is False


def test_decision_lower_is_better() -> None:
    kw = {"metric": "loss", "greater_is_better": False}
    assert _decide(0.30, 0.40, 0.05, **kw).promote is True
    assert _decide(0.36, 0.40, 0.05, **kw).promote is False
    assert _decide(0.30, 0.40, **kw).reason.startswith("loss 0.3000 vs champion v1 0.4000")
