"""The trial's side of training: report each epoch's validation mAP to the study, ask
whether to stop.

A training job is a trial when its environment names the study (:data:`ENV_STORAGE`,
:data:`ENV_STUDY`, :data:`ENV_TRIAL`); it talks to the study's database directly, so this
works the same from a local subprocess, another worker or a Kubernetes pod. Light on
purpose: Optuna is imported only when a trial reports.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna

ENV_STORAGE = "ODP_TUNING_STORAGE"
ENV_STUDY = "ODP_TUNING_STUDY"
ENV_TRIAL = "ODP_TUNING_TRIAL"


def trial_env(storage_url: str, study: str, number: int) -> dict[str, str]:
    """The environment that makes ``odp train`` report to trial ``number`` of ``study``."""
    return {ENV_STORAGE: storage_url, ENV_STUDY: study, ENV_TRIAL: str(number)}


class TrialReporter:
    """``reporter(epoch, mAP)`` reports to the trial; returns why to stop, or ``None``."""

    def __init__(self, storage_url: str, study: str, number: int, info: Callable[[str], None]):
        self.storage_url, self.study_name, self.number, self.info = storage_url, study, number, info
        self._trial: optuna.Trial | None = None
        self._broken = False

    @classmethod
    def from_env(
        cls, info: Callable[[str], None], env: Mapping[str, str] | None = None
    ) -> TrialReporter | None:
        """The reporter the environment asks for; ``None`` outside a tuning job."""
        env = os.environ if env is None else env
        if not env.get(ENV_STUDY):
            return None
        try:
            number = int(env.get(ENV_TRIAL, ""))
        except ValueError:
            raise ValueError(
                f"{ENV_TRIAL}={env.get(ENV_TRIAL)!r}: expected a trial number"
            ) from None
        return cls(env.get(ENV_STORAGE, ""), env[ENV_STUDY], number, info)

    def _open(self) -> optuna.Trial:
        import optuna

        from .study import load_for_reporting, storage

        rdb = storage(self.storage_url)
        study = load_for_reporting(self.study_name, rdb)
        study_id = rdb.get_study_id_from_name(self.study_name)
        trial_id = rdb.get_trial_id_from_study_id_trial_number(study_id, self.number)
        return optuna.Trial(study, trial_id)

    def __call__(self, epoch: int, value: float) -> str | None:
        if self._broken:
            return None
        try:
            if self._trial is None:
                self._trial = self._open()
            self._trial.report(value, epoch)
            prune = self._trial.should_prune()
        except Exception as exc:  # noqa: BLE001  a study out of reach must not cost the training
            self._broken = True
            self.info(
                f"warning: reporting to study {self.study_name!r} trial {self.number} stopped "
                f"({type(exc).__name__}: {str(exc)[:200]}); training goes on without pruning"
            )
            return None
        if prune:
            return (
                f"trial {self.number} pruned by study {self.study_name!r} after epoch {epoch} "
                f"(validation mAP {value:.4f} behind the other trials)"
            )
        return None
