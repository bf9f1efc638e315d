"""The study: where trials are kept (a real database), how the next ones are chosen (sampler)
and when a running one is stopped (pruner).

The study lives in an SQLAlchemy database: SQLite under ``$ODP_HOME/tuning`` by default, any
URL (``postgresql://...``) in production, so trials on other workers or pods share it. The
pruner's settings and the search space are kept in the study itself (user attributes): a
training job anywhere rebuilds the same pruner from the storage URL and the study name
alone, and resuming a study with another space is refused instead of mixing two searches.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..settings import load_settings
from .budget import BUDGET_ATTR, EpochBudget, exploring_trials
from .space import SearchSpace, SpaceError

if TYPE_CHECKING:
    import optuna

SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "hyperband", "none")
PRUNER_ATTR = "odp.pruner"
SPACE_ATTR = "odp.space"
STATIC_ATTR = "odp.static_hyperparameters"
STORAGE_ENV = "ODP_TUNING_DB"
SQLITE_TIMEOUT_S = 60  # trials of several processes write to one SQLite file


@dataclass(frozen=True)
class PrunerSpec:
    """Which pruner and its knobs; steps are epochs (0-based, as training logs them)."""

    kind: str = "median"  # one of PRUNERS
    startup_trials: int = 2  # median: trials finished before any is pruned
    warmup_epochs: int = 1  # median: epochs a trial always runs
    min_epochs: int = 1  # hyperband: the smallest budget
    max_epochs: int | None = None  # hyperband: the full budget (the trials' epochs)
    reduction_factor: int = 3  # hyperband

    def __post_init__(self) -> None:
        if self.kind not in PRUNERS:
            raise SpaceError("pruner", f"{self.kind!r}: expected one of {', '.join(PRUNERS)}")

    @classmethod
    def for_epochs(
        cls,
        kind: str,
        max_epochs: int,
        typical_epochs: int | None = None,
        startup_trials: int | None = None,
        warmup_epochs: int | None = None,
    ) -> PrunerSpec:
        """The pruner for trials of at most ``max_epochs`` epochs, ``typical_epochs`` each
        (an even share of an epoch budget; default ``max_epochs``). The median pruner waits
        a quarter of the typical trial (1 to 5 epochs: the first mAPs are all near 0 and
        their order is noise) unless ``warmup_epochs`` says; Hyperband's budgets go from a
        ninth of ``max_epochs`` to all of it."""
        typical = typical_epochs or max_epochs
        warmup = max(1, min(5, typical // 4)) if warmup_epochs is None else warmup_epochs
        return cls(
            kind=kind,
            startup_trials=2 if startup_trials is None else startup_trials,
            warmup_epochs=warmup,
            min_epochs=max(1, max_epochs // 9),
            max_epochs=max_epochs,
        )

    @property
    def first_judged_epoch(self) -> int:
        """The epochs a trial trains before the pruner can stop it."""
        if self.kind == "median":
            return self.warmup_epochs + 1
        if self.kind == "hyperband":
            return self.min_epochs
        return 1

    def build(self) -> optuna.pruners.BasePruner:
        """The Optuna pruner this spec describes."""
        import optuna

        if self.kind == "median":
            return optuna.pruners.MedianPruner(
                n_startup_trials=self.startup_trials, n_warmup_steps=self.warmup_epochs
            )
        if self.kind == "hyperband":
            return optuna.pruners.HyperbandPruner(
                min_resource=self.min_epochs,
                max_resource=self.max_epochs or "auto",
                reduction_factor=self.reduction_factor,
            )
        return optuna.pruners.NopPruner()

    @classmethod
    def from_json(cls, text: str) -> PrunerSpec:
        return cls(**json.loads(text))


def default_storage() -> str:
    """``$ODP_TUNING_DB`` (e.g. ``postgresql://...``, shared by every worker and pod), else
    ``sqlite:///$ODP_HOME/tuning/studies.db`` (the folder is created)."""
    if url := os.environ.get(STORAGE_ENV):
        return url
    folder = load_settings().home / "tuning"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'studies.db'}"


def storage(url: str | None = None) -> optuna.storages.RDBStorage:
    """The RDB storage at ``url`` (default: :func:`default_storage`)."""
    import optuna

    url = url or default_storage()
    check_storage_url(url)
    return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs(url))


def check_storage_url(url: str) -> None:
    """Refuse, with one line naming the URL (password hidden), a storage URL that cannot
    work whatever the database does: not a URL, a driver that is not installed (the
    PostgreSQL one is ``psycopg`` or ``psycopg2-binary``), an SQLite file in a folder that does not exist."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception as exc:  # sqlalchemy.exc.ArgumentError, ValueError
        raise ValueError(f"storage {url!r} is not a database URL: {exc}") from None
    shown = parsed.render_as_string(hide_password=True)
    try:
        parsed.get_dialect().import_dbapi()
    except ImportError as exc:
        hint = (
            " (install it: psycopg, or psycopg2-binary for postgresql+psycopg2:// URLs)"
            if parsed.get_backend_name() == "postgresql"
            else ""
        )
        raise ValueError(
            f"storage {shown}: the {parsed.get_backend_name()} driver is not installed: {exc}{hint}"
        ) from None
    except Exception as exc:  # NoSuchModuleError: an unknown dialect
        raise ValueError(f"storage {shown}: unknown database kind: {exc}") from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        folder = Path(parsed.database).parent
        if not folder.is_dir():
            raise ValueError(f"storage {shown}: folder {folder} does not exist")


def engine_kwargs(url: str) -> dict[str, Any]:
    """SQLAlchemy engine options for the study's database (also the trial slots')."""
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
    return {"pool_pre_ping": True}


def make_sampler(
    kind: str, seed: int | None = None, n_trials: int | None = None
) -> optuna.samplers.BaseSampler:
    """TPE (the default) or random search. TPE models after :func:`~.budget.exploring_trials`
    random trials (a quarter of ``n_trials``), not Optuna's 10: tuning jobs have few trials."""
    import optuna

    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=exploring_trials(n_trials))
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise SpaceError("sampler", f"{kind!r}: expected one of {', '.join(SAMPLERS)}")


def open_study(
    name: str,
    space: SearchSpace,
    static: dict[str, str],
    *,
    storage_url: str | None = None,
    sampler: str = "tpe",
    pruner: PrunerSpec | None = None,
    seed: int | None = None,
    n_trials: int | None = None,
    budget: EpochBudget | None = None,
) -> optuna.Study:
    """Create the study, or load it to resume; a resumed study must have the same space,
    static hyperparameters, pruner and epoch budget (``budget=None`` keeps the study's, and
    a study with a budget keeps its pruner's settings).
    ``n_trials``: the trials planned in all (the sampler's startup scales with it)."""
    import optuna

    pruner = pruner or PrunerSpec()
    study = optuna.create_study(
        study_name=name,
        storage=storage(storage_url),
        sampler=make_sampler(sampler, seed, n_trials),
        pruner=pruner.build(),
        direction="maximize",
        load_if_exists=True,
    )
    if seed is not None:
        # Every process opening the study (a trial task, a resumed job) must not replay the
        # same random draws: the seed moves on with the trials already in the study.
        study.sampler = make_sampler(
            sampler, seed + len(study.get_trials(deepcopy=False)), n_trials
        )
    wanted = {
        SPACE_ATTR: space.to_json(),
        STATIC_ATTR: static,
        PRUNER_ATTR: json.dumps(asdict(pruner), sort_keys=True),
    }
    attrs = study.user_attrs
    if budget is not None:
        wanted[BUDGET_ATTR] = budget.to_json()
    elif PRUNER_ATTR not in attrs:  # new: a study without a budget stays so
        wanted[BUDGET_ATTR] = ""
    if attrs.get(BUDGET_ATTR) and PRUNER_ATTR in attrs:
        # A budgeted study keeps the pruner it was planned with (its warm-up was sized for
        # the even share of the trials planned then): only the kind must match.
        kept = PrunerSpec.from_json(attrs[PRUNER_ATTR])
        if kept.kind == pruner.kind:
            wanted[PRUNER_ATTR] = attrs[PRUNER_ATTR]
    for key, value in wanted.items():
        if key not in attrs:
            study.set_user_attr(key, value)
        elif attrs[key] != value:
            raise SpaceError(
                f"study {name!r}",
                f"it was started with another {key.removeprefix('odp.').replace('_', ' ')} "
                f"({json.dumps(attrs[key])[:300]}); resume it with the same settings or "
                "name a new study",
            )
    return study


def load_for_reporting(name: str, rdb: optuna.storages.BaseStorage) -> optuna.Study:
    """The study as a training job sees it: with the pruner the study was created with."""
    import optuna

    spec = optuna.load_study(study_name=name, storage=rdb).user_attrs.get(PRUNER_ATTR)
    pruner = PrunerSpec.from_json(spec).build() if spec else optuna.pruners.NopPruner()
    return optuna.load_study(study_name=name, storage=rdb, pruner=pruner)


def plan_search(
    pruner: str,
    epochs: int,
    n_trials: int,
    *,
    epoch_budget: int | None = None,
    max_trial_epochs: int | None = None,
    startup_trials: int | None = None,
    warmup_epochs: int | None = None,
) -> tuple[PrunerSpec, EpochBudget | None]:
    """The pruner and the epoch budget of a tuning job whose trials train ``epochs`` each.

    With ``epoch_budget`` (total epochs of all trials), a trial trains up to
    ``max_trial_epochs`` (default ``epochs``), the pruner is sized for the even share
    (``epoch_budget / n_trials``), and every trial still to come keeps the epochs the pruner
    needs to judge it."""
    if epoch_budget is None:
        if max_trial_epochs is not None:
            raise SpaceError("max trial epochs", "applies with an epoch budget only")
        spec = PrunerSpec.for_epochs(
            pruner, epochs, startup_trials=startup_trials, warmup_epochs=warmup_epochs
        )
        return spec, None
    longest = epochs if max_trial_epochs is None else max_trial_epochs
    even = max(1, epoch_budget // max(1, n_trials))
    spec = PrunerSpec.for_epochs(
        pruner, longest, even, startup_trials=startup_trials, warmup_epochs=warmup_epochs
    )
    budget = EpochBudget(epoch_budget, longest, spec.first_judged_epoch)
    budget.check(n_trials)
    return spec, budget
