"""The tiny training job that training tests share: 20 synthetic images (16 train, 4
validation, 2 classes), mobilenet-0.25, batch 4, in-process data loading."""

from __future__ import annotations

from pathlib import Path

from pipeline_lib.synthetic import SynthConfig, generate
from pipeline_lib.training.contract import MLPaths, prepare_ml_root

CHANNELS = ("train", "validation", "train_annotation", "validation_annotation")


def make_dataset(root: Path) -> Path:
    generate(root, SynthConfig(images=20, classes=2, seed=3, max_objects=2))
    return root


def hyperparameters(**over) -> dict:
    """SageMaker hyperparameters of the job (2 epochs unless ``over`` says otherwise)."""
    return {
        "num_classes": 2,
        "num_training_samples": 16,
        "base_network": "mobilenet-0.25",
        "use_pretrained_model": 0,
        "epochs": 2,
        "mini_batch_size": 4,
        "optimizer": "adam",
        "learning_rate": 0.001,
        "num_workers": 0,
        **over,
    }


def channels(dataset: Path) -> dict[str, Path]:
    return {c: dataset / c for c in CHANNELS}


def layout(ml_root: Path, dataset: Path, **over) -> MLPaths:
    """An ``/opt/ml`` tree at ``ml_root`` for the job on ``dataset``."""
    return prepare_ml_root(ml_root, channels(dataset), hyperparameters(**over))
