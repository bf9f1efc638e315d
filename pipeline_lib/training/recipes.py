"""Named hyperparameter recipes (SageMaker hyperparameters plus the documented extras).

SageMaker's documented defaults stay the defaults of every hyperparameter; a recipe is what
the README, ``make demo``, the benchmarks and the tests that need a model that has learned
use instead.
"""

from __future__ import annotations

#: The README's from-scratch CPU recipe (``benchmarks/learn.py`` found and measures it):
#: mobilenet-0.25 at 300 reaches >= 0.8 validation mAP on ``odp synth --cue shape`` in
#: 10 minutes on 2 cores; it climbs steadily, where SageMaker's sgd 0.001 barely moves and
#: sgd 0.01 from scratch swings between 0.05 and 0.5 with the smallest perturbation.
#: The Makefile's DEMO_CONF spells out the same values for ``make demo``: keep them in step.
FROM_SCRATCH_CPU: dict[str, str | int | float] = {
    "optimizer": "adam",
    "learning_rate": 0.003,
    "mini_batch_size": 8,
    "weight_decay": 0.0005,
    "augmentation": "flip",
    "overlap_threshold": 0.4,
    "lr_schedule": "cosine",
    "lr_warmup_epochs": 2,
    "epochs": 30,
}
