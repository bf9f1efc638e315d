"""Hyperparameter tuning on ``validation:mAP``: SageMaker's ParameterRanges, an Optuna study
in a real database, per-epoch pruning, the best trial.

Modules: :mod:`.space` (ParameterRanges, ScalingType), :mod:`.config` (the tuning job file
in SageMaker's shapes), :mod:`.study` (storage, sampler, pruner), :mod:`.report` (the
training job's per-epoch hook), :mod:`.trials` (ask and tell one trial), :mod:`.job` (the
sequential job of ``odp tune``, the best trial, the summary), :mod:`.tracking` (MLflow
parent and nested runs), :mod:`.plots` (history and importances PNGs), :mod:`.slots` (at
most P trials of a run at once).
Importing the package imports neither Optuna nor MLflow.
"""
