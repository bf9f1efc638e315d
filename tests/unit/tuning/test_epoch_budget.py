"""The epoch budget through a real SQLite study: never exceeded across trials (sequential,
two handles on one study, a race), pruned trials fund longer ones, a resumed study keeps
its budget; the search defaults scale with the trials."""

from __future__ import annotations

import optuna
import pytest

from pipeline_lib.tuning.budget import (
    TRIAL_EPOCHS_ATTR,
    BudgetSpent,
    EpochBudget,
    claim_epochs,
    exploring_trials,
    study_budget,
)
from pipeline_lib.tuning.report import TrialReporter
from pipeline_lib.tuning.space import SpaceError, parse_ranges
from pipeline_lib.tuning.study import (
    PRUNER_ATTR,
    PrunerSpec,
    make_sampler,
    open_study,
    plan_search,
)
from pipeline_lib.tuning.trials import JobOutcome, finish_trial, start_trial

SPACE = parse_ranges(
    {
        "ContinuousParameterRanges": [
            {"Name": "learning_rate", "MinValue": "0.0001", "MaxValue": "0.1"}
        ]
    }
)
STATIC = {"epochs": "4"}


@pytest.fixture
def url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'study.db'}"


def _open(url, budget=None, pruner=None, n_trials=12, name="s"):
    pruner = pruner or PrunerSpec("median", startup_trials=1, warmup_epochs=1)
    return open_study(
        name, SPACE, STATIC, storage_url=url, pruner=pruner, seed=0, n_trials=n_trials,
        budget=budget,
    )  # fmt: skip


def _train(plan, curve):
    """What ``odp train`` does: its ``epochs`` epochs, each reported, stopped when pruned."""
    reporter = TrialReporter.from_env(lambda _: None, plan.env)
    maps = []
    for epoch in range(int(plan.hyperparameters["epochs"])):
        maps.append(curve(epoch))
        if reporter(epoch, maps[-1]):
            return JobOutcome(0, {"status": "pruned", "validation:mAP": max(maps)})
    return JobOutcome(0, {"status": "completed", "validation:mAP": max(maps)})


def _spent(study) -> int:
    return sum(len(t.intermediate_values) for t in study.get_trials(deepcopy=False))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_trials_never_train_more_than_the_budget(url, seed):
    budget = EpochBudget(total_epochs=30, max_trial_epochs=12, min_trial_epochs=2)
    study = _open(url, budget)
    given = []
    for i in range(10):
        plan = start_trial(study, SPACE, STATIC, url, planned_trials=10)
        given.append(int(plan.hyperparameters["epochs"]))
        quality = (i * 7 + seed * 3) % 10 / 10  # some ahead, some behind: pruned
        finish_trial(study, plan, _train(plan, lambda e, q=quality: q * (1 - 0.7 ** (e + 1))))
        assert _spent(study) <= budget.total_epochs
    assert all(1 <= g <= budget.max_trial_epochs for g in given)
    assert len(study.trials) == 10  # every planned trial got its epochs


def test_the_first_trials_share_evenly_and_pruned_trials_fund_a_longer_one(url):
    budget = EpochBudget(total_epochs=12, max_trial_epochs=8, min_trial_epochs=2)
    study = _open(url, budget, n_trials=4)
    assert exploring_trials(4) == 2  # the sampler's random ones: an even share each
    given = []
    for quality in (0.5, 0.6, 0.1):  # the third falls behind and is pruned after 2 epochs
        plan = start_trial(study, SPACE, STATIC, url, planned_trials=4)
        given.append(int(plan.hyperparameters["epochs"]))
        result = finish_trial(study, plan, _train(plan, lambda e, q=quality: q * (e + 1)))
    assert given == [3, 3, 4]  # 12 - 6 spent - 2 kept for the one still to come
    assert result.state == "PRUNED" and _spent(study) == 8
    last = start_trial(study, SPACE, STATIC, url, planned_trials=4)
    assert last.hyperparameters["epochs"] == "4"  # the 2 epochs the pruned one left
    assert study.trials[-1].user_attrs[TRIAL_EPOCHS_ATTR] == 4


def test_a_spent_budget_starts_no_trial(url):
    study = _open(url, EpochBudget(total_epochs=4, max_trial_epochs=4), n_trials=2)
    for _ in range(2):
        plan = start_trial(study, SPACE, STATIC, url, planned_trials=2)
        finish_trial(study, plan, _train(plan, lambda e: 0.5))
    with pytest.raises(BudgetSpent, match="budget of 4 epochs is spent"):
        start_trial(study, SPACE, STATIC, url, planned_trials=3)
    assert len(study.trials) == 2


def test_running_trials_on_two_handles_share_one_budget(url):
    """Two workers' trials at once (the DAG's parallel trials): each counts what the other
    was given, not only what it trained."""
    budget = EpochBudget(total_epochs=10, max_trial_epochs=8, min_trial_epochs=1)
    one, two = _open(url, budget, n_trials=3), _open(url, n_trials=3)  # the second: resumed
    assert study_budget(two) == budget
    first = start_trial(one, SPACE, STATIC, url, "run/0", planned_trials=3)
    second = start_trial(two, SPACE, STATIC, url, "run/1", planned_trials=3)
    third = start_trial(one, SPACE, STATIC, url, "run/2", planned_trials=3)
    given = [int(p.hyperparameters["epochs"]) for p in (first, second, third)]
    assert sum(given) <= budget.total_epochs and min(given) >= 1
    retry = start_trial(two, SPACE, STATIC, url, "run/0", planned_trials=3)
    assert retry.resumed and retry.hyperparameters == first.hyperparameters  # same epochs


def test_a_racing_claim_gives_the_excess_back(url, monkeypatch):
    """Two trials that computed their share before either wrote it: the later writer finds
    the total exceeded and gives the excess back."""
    budget = EpochBudget(total_epochs=10, max_trial_epochs=8, min_trial_epochs=1)
    study = _open(url, budget, n_trials=2)
    a, b = study.ask(), study.ask()
    assert claim_epochs(study, a, budget, 2) == 5  # exploring: an even share
    monkeypatch.setattr(EpochBudget, "trial_epochs", lambda *_: 8)  # stale: saw a at 0
    assert claim_epochs(study, b, budget, 2) == 5
    committed = [t.user_attrs[TRIAL_EPOCHS_ATTR] for t in study.get_trials(deepcopy=False)]
    assert sum(committed) == 10
    c = study.ask()
    with pytest.raises(BudgetSpent):
        claim_epochs(study, c, budget, 3)
    assert study.trials[c.number].state == optuna.trial.TrialState.FAIL


def test_a_resumed_study_keeps_its_budget_and_refuses_another(url):
    budget = EpochBudget(total_epochs=20, max_trial_epochs=8, min_trial_epochs=2)
    plan = start_trial(_open(url, budget), SPACE, STATIC, url, planned_trials=5)
    resumed = _open(url)  # no budget given: the study's own
    assert study_budget(resumed) == budget
    assert int(plan.hyperparameters["epochs"]) <= 8
    with pytest.raises(SpaceError, match="another epoch budget"):
        _open(url, EpochBudget(total_epochs=40, max_trial_epochs=8, min_trial_epochs=2))
    # resumed with more trials: the pruner planned for the old even share is kept
    more = _open(url, pruner=PrunerSpec("median", warmup_epochs=3), n_trials=20)
    assert PrunerSpec.from_json(more.user_attrs[PRUNER_ATTR]).warmup_epochs == 1
    with pytest.raises(SpaceError, match="another pruner"):
        _open(url, pruner=PrunerSpec("hyperband"))
    _open(url, budget=None, name="plain")
    with pytest.raises(SpaceError, match="another epoch budget"):
        _open(url, budget, name="plain")  # started without one: stays without


def test_without_a_budget_trials_keep_their_epochs(url):
    study = _open(url)
    plan = start_trial(study, SPACE, STATIC, url, planned_trials=3)
    assert plan.hyperparameters["epochs"] == "4" and study_budget(study) is None


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"epoch_budget": 5}, "5 epochs for 12 trials"),
        ({"max_trial_epochs": 8}, "epoch budget only"),
        ({"epoch_budget": 48, "max_trial_epochs": 0}, "max_trial_epochs: 0"),
    ],
)
def test_bad_budgets_are_refused(kwargs, words):
    with pytest.raises(SpaceError, match=words):
        plan_search("median", 4, 12, **kwargs)


def test_search_defaults_scale_with_the_trials_and_their_epochs():
    assert [exploring_trials(n) for n in (None, 4, 12, 100)] == [3, 2, 3, 10]
    assert make_sampler("tpe", 0, 12)._n_startup_trials == 3
    pruner, budget = plan_search("median", 30, 8)
    assert (pruner.warmup_epochs, pruner.max_epochs, budget) == (5, 30, None)
    assert plan_search("median", 8, 8)[0].warmup_epochs == 2
    pruner, budget = plan_search("median", 4, 12, epoch_budget=48, max_trial_epochs=20)
    assert pruner.warmup_epochs == 1  # sized for the even share (4), not the longest trial
    assert budget == EpochBudget(48, 20, 2)  # kept for each trial: what the pruner judges
    hyperband = plan_search("hyperband", 30, 8)[0]
    assert (hyperband.min_epochs, hyperband.max_epochs) == (3, 30)
    assert plan_search("median", 6, 4, warmup_epochs=0)[0].warmup_epochs == 0  # as asked
