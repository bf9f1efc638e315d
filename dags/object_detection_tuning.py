"""
### Object detection hyperparameter tuning (SageMaker Automatic Model Tuning, self-hosted)

Searches SageMaker's tunable hyperparameters of the Object Detection algorithm on the
objective **validation:mAP** (maximize), then evaluates and registers the best model like
the training DAG (`candidate`; `champion` only when it beats the champion).

* **Search space**: SageMaker's `ParameterRanges` as `CreateHyperParameterTuningJob` takes
  it (`ContinuousParameterRanges`, `IntegerParameterRanges`, `CategoricalParameterRanges`,
  `ScalingType` Auto / Linear / Logarithmic / ReverseLogarithmic); a whole
  `HyperParameterTuningJobConfig` or request works too. Checked before any data work.
* **Trials**: the dataset is validated and converted once; then `max_trials` mapped
  `trial` tasks each ask the Optuna study (TPE or random) for hyperparameters when they
  start, train, and report every epoch's validation mAP; the
  pruner (median or Hyperband) stops trials that fall behind, keeping their best model.
  A trial that fails on its hyperparameters (e.g. diverges) is recorded as failed and the
  search goes on; other failures retry and resume the same trial.
* **Epoch budget**: `epoch_budget` (or the space's `ResourceLimits.MaxTotalTrainingEpochs`)
  caps the epochs of all trials together; a trial trains its share, up to
  `max_trial_epochs`, and pruned trials' unspent epochs fund longer ones. Kept in the study,
  shared by the parallel trials, never exceeded.
* **Trials at once**: `max_parallel_trials` (empty: the space's
  `ResourceLimits.MaxParallelTrainingJobs`, else 2; at most 16, the task's parse-time cap).
  Each trial takes one of the run's slots in the study's database when it starts and waits,
  asleep, while that many train; a crashed trial's slot is freed when its lease expires
  (2 minutes) or at once when its process on the same host is gone.
* **Study**: SQLite under `$ODP_HOME/tuning` (or `ODP_TUNING_DB`, any SQLAlchemy URL);
  name a `study_name` to continue an earlier study.
* **MLflow**: a parent run per study with a nested run per trial (params, per-epoch mAP,
  state), the optimization history and parameter importances as PNGs.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag

from odp_airflow.failure import RETRY_POLICY
from odp_airflow.params import tuning_dag_params
from odp_airflow.pipeline import convert, evaluate, register, resolve_inputs, validate
from odp_airflow.tuning_pipeline import select_best, start_study, trial, trial_slots


@dag(
    dag_id="object_detection_tuning",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=__doc__,
    tags=["object-detection", "tuning"],
    default_args=RETRY_POLICY,
    params=tuning_dag_params(),
)
def object_detection_tuning():
    inputs = resolve_inputs()
    study = start_study(inputs)
    validation = validate(inputs)
    study >> validation  # a bad space stops the run before any data work
    converted = convert(inputs, validation)
    trials = trial.partial(
        inputs=inputs, validation=validation, converted=converted, study=study
    ).expand(slot=trial_slots(study))
    best = select_best(study)
    trials >> best
    register(inputs, best, evaluate(inputs, best, converted))


object_detection_tuning()
