"""Does `odp train` learn from scratch on a CPU? Validation mAP per epoch, by recipe.

    .venv/bin/python benchmarks/learn.py                  # the recipes, 10 minutes each
    .venv/bin/python benchmarks/learn.py --data raccoon   # on real photos (../shared)
    .venv/bin/python benchmarks/learn.py --recipes recommended --budget 300
    .venv/bin/python benchmarks/learn.py --recipes recommended --set augmentation=flip \
        --epochs 20 --budget 0                            # a variant, by epochs instead of time

Every recipe trains mobilenet-0.25 at 300 from scratch (no pretrained weights) through the
real container contract (`odp train` in a subprocess) on the same dataset, within the same
time budget (`max_runtime_seconds`, which also lays the learning-rate schedule over the
time: ``pipeline_lib.training.budget``). ``--data shape`` (default): `odp synth --cue shape`,
500 images: 400 train / 100 validation, 3 classes that differ only by shape. ``--data
raccoon``: the 200 raccoon photos of ``../shared/datasets/raccoon`` imported with `odp import
voc` (160 train / 40 validation, one class; its 3 grayscale photos removed, as validation
refuses them). Recipes, all written as SageMaker hyperparameters (plus the documented extras
`augmentation`, `lr_schedule`, `lr_warmup_epochs`):

* ``recommended``: the from-scratch CPU recipe in the README, its schedule laid over the
  budget (``epochs`` only an upper bound);
* ``fixed-30-epochs``: the same recipe as it was before the time budget: a cosine over 30
  epochs, whatever the time;
* ``sagemaker-default``: SageMaker's documented defaults (sgd, lr 0.001, momentum 0.9,
  weight decay 0.0005, batch 32, GluonCV's SSD augmentation);
* ``gluoncv-default``: GluonCV's ``train_ssd.py`` defaults (the same optimizer settings, its
  lr steps at epochs 160 and 200, batch 32, SSD augmentation).

Prints the VOC07 mAP@0.5 after every epoch and the best, side by side, and writes the
curves as a PNG.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline_lib.cpus import available_cpus  # noqa: E402
from pipeline_lib.synthetic import SynthConfig, generate  # noqa: E402
from pipeline_lib.training.contract import prepare_ml_root  # noqa: E402
from pipeline_lib.training.recipes import FROM_SCRATCH_CPU  # noqa: E402

CHANNELS = ("train", "validation", "train_annotation", "validation_annotation")
_SGD_DEFAULTS = {"optimizer": "sgd", "learning_rate": 0.001, "momentum": 0.9}
RECIPES: dict[str, dict[str, object]] = {
    "recommended": {**FROM_SCRATCH_CPU, "epochs": 1000},
    "fixed-30-epochs": {**FROM_SCRATCH_CPU, "epochs": 30},
    "sagemaker-default": {**_SGD_DEFAULTS, "weight_decay": 0.0005, "mini_batch_size": 32},
    "gluoncv-default": {
        **_SGD_DEFAULTS,
        "weight_decay": 0.0005,
        "mini_batch_size": 32,
        "lr_scheduler_step": "160,200",
    },
}


def run_one(name: str, recipe: dict, dataset: Path, work: Path, args) -> dict:
    hp = {
        "num_classes": args.classes,
        "num_training_samples": len(list((dataset / "train").iterdir())),
        "base_network": "mobilenet-0.25",
        "use_pretrained_model": 0,
        "epochs": args.epochs or 1000,
        "image_shape": 300,
        "max_runtime_seconds": args.budget,
        "seed": 0,
        **recipe,
    }
    if args.epochs:
        hp["epochs"] = args.epochs
    paths = prepare_ml_root(work / name, {c: dataset / c for c in CHANNELS}, hp)
    cmd = [sys.executable, "-m", "pipeline_lib.cli", "train", "--ml-root", str(paths.root)]
    start = time.perf_counter()
    with open(work / f"{name}.log", "w") as log:
        rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)  # noqa: S603  argv list of our own CLI, no shell
    seconds = time.perf_counter() - start
    metrics = json.loads((paths.output / "metrics.json").read_text()) if rc == 0 else {}
    return {"name": name, "recipe": recipe, "rc": rc, "seconds": seconds, **metrics}


RACCOON = REPO.parent / "shared" / "datasets" / "raccoon"


def raccoon(dataset: Path) -> str:
    """The raccoon photos imported with `odp import voc`, without the 3 grayscale ones."""
    if not RACCOON.is_dir():
        sys.exit(f"no raccoon photos at {RACCOON}")
    cmd = [sys.executable, "-m", "pipeline_lib.cli", "import", "voc", str(RACCOON), str(dataset)]
    subprocess.run(cmd, check=True, cwd=REPO, stdout=subprocess.DEVNULL)  # noqa: S603  our own CLI
    from PIL import Image

    for channel in ("train", "validation"):
        for image in sorted((dataset / channel).iterdir()):
            with Image.open(image) as im:
                grey = im.mode != "RGB"
            if grey:
                image.unlink()
                (dataset / f"{channel}_annotation" / f"{image.stem}.json").unlink()
    n = {c: len(list((dataset / c).iterdir())) for c in ("train", "validation")}
    return f"raccoon photos ({n['train']} train / {n['validation']} validation)"


def _value(text: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        return text


def plot(results: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in results:
        if not r["rc"]:
            ax.plot([e["validation_mAP"] for e in r["epochs"]], marker=".", label=r["name"])
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation mAP (VOC07, IoU 0.5)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(f"mobilenet-0.25 SSD 300 from scratch, {title}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override")
    parser.add_argument("--budget", type=int, default=600, help="seconds per recipe (0: none)")
    parser.add_argument("--epochs", type=int, help="default: the recipe's, else 1000")
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--classes", type=int, default=3)
    parser.add_argument("--cue", default="shape", choices=["shape", "colour"])
    parser.add_argument("--data", default="shape", choices=["shape", "raccoon"])
    parser.add_argument("--work", default=None, help="keep outputs here (default: temp)")
    args = parser.parse_args()
    overrides = dict(kv.split("=", 1) for kv in args.set)
    work = Path(args.work or tempfile.mkdtemp(prefix="odp-learn-"))
    dataset = work / "dataset"
    if args.data == "raccoon":
        title = raccoon(dataset)
        args.classes = 1
    else:
        cfg = SynthConfig(images=args.images, classes=args.classes, seed=0, cue=args.cue)
        generate(dataset, cfg)
        title = f"odp synth --cue {args.cue}"
    print(f"dataset: {dataset} ({title}, {args.classes} classes)")
    print(f"machine: {available_cpus()} usable CPUs; budget {args.budget} s per recipe\n")
    results = []
    for name in args.recipes:
        recipe = {**RECIPES[name], **{k: _value(v) for k, v in overrides.items()}}
        results.append(run_one(name, recipe, dataset, work, args))
        r = results[-1]
        print(f"{name}: exit {r['rc']}, {r['seconds']:.0f} s, {json.dumps(recipe)}", flush=True)
    print(f"\n{'recipe':<20}{'seconds':>8}{'epochs':>8}{'best mAP':>10}{'at epoch':>10}")
    for r in results:
        if r["rc"]:
            print(f"{r['name']:<20} failed (exit {r['rc']}), see {work}/{r['name']}.log")
            continue
        print(
            f"{r['name']:<20}{r['seconds']:>8.0f}{r['epochs_completed']:>8}"
            f"{r['validation:mAP']:>10.3f}{r['best_epoch']:>10}"
        )
    print("\nvalidation mAP (VOC07, IoU 0.5) per epoch:")
    for r in results:
        if not r["rc"]:
            curve = " ".join(f"{e['validation_mAP']:.2f}" for e in r["epochs"])
            print(f"  {r['name']:<20}{curve}")
    plot(results, work / "learn.png", title)
    print(f"\ncurves: {work / 'learn.png'}")


if __name__ == "__main__":
    main()
