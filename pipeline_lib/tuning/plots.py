"""The study's optimization history and hyperparameter importances as PNGs.

Drawn with matplotlib's object API and the Agg renderer (no pyplot, no global backend
change), like :mod:`pipeline_lib.evaluation.plots`; importances are Optuna's (fANOVA).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna

HISTORY_PNG = "optimization_history.png"
IMPORTANCES_PNG = "param_importances.png"
DPI = 100
MIN_TRIALS_FOR_IMPORTANCE = 2  # completed trials: one alone says nothing about any parameter


def _save(fig, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    return path


def optimization_history(study: optuna.Study, path: Path) -> Path:
    """Each finished trial's validation mAP (pruned ones at their last epoch) and the best so far."""
    from matplotlib.figure import Figure
    from optuna.trial import TrialState

    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    best, best_x, best_y = None, [], []
    for state, marker, color in (
        (TrialState.COMPLETE, "o", "tab:blue"),
        (TrialState.PRUNED, "x", "tab:gray"),
    ):
        trials = study.get_trials(deepcopy=False, states=(state,))
        points = [(t.number, _last_value(t)) for t in trials if _last_value(t) is not None]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.scatter(xs, ys, marker=marker, color=color, label=state.name.lower())
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        if t.state == TrialState.COMPLETE and t.value is not None:
            best = t.value if best is None else max(best, t.value)
        if best is not None:
            best_x.append(t.number)
            best_y.append(best)
    if best_x:
        ax.step(best_x, best_y, where="post", color="tab:red", label="best so far")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel("validation mAP")
    ax.set_title(f"Optimization history: {study.study_name}")
    ax.legend(loc="lower right")
    return _save(fig, path)


def _last_value(trial: optuna.trial.FrozenTrial) -> float | None:
    if trial.value is not None:
        return trial.value
    steps = trial.intermediate_values
    return steps[max(steps)] if steps else None


def param_importances(study: optuna.Study, path: Path) -> Path | None:
    """fANOVA importance of each tuned hyperparameter over the completed trials; ``None``
    when the study cannot tell yet (fewer than two completed trials, or nothing varied)."""
    import optuna
    from matplotlib.figure import Figure
    from optuna.trial import TrialState

    if (
        len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        < MIN_TRIALS_FOR_IMPORTANCE
    ):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            importances = optuna.importance.get_param_importances(study)
        except (ValueError, RuntimeError):
            return None
    if not importances:
        return None
    names = list(importances)[::-1]
    fig = Figure(figsize=(7, 1 + 0.5 * len(names)))
    ax = fig.add_subplot()
    ax.barh(names, [importances[n] for n in names], color="tab:blue")
    ax.set_xlabel("importance for validation mAP")
    ax.set_title(f"Hyperparameter importances: {study.study_name}")
    return _save(fig, path)


def write_plots(study: optuna.Study, folder: Path) -> list[Path]:
    """Both PNGs into ``folder``: the ones that could be drawn."""
    folder.mkdir(parents=True, exist_ok=True)
    out = [optimization_history(study, folder / HISTORY_PNG)]
    importances = param_importances(study, folder / IMPORTANCES_PNG)
    return out + ([importances] if importances else [])
