"""Tuning on the same epoch budget: random search vs TPE with pruning vs SageMaker's defaults.

    .venv/bin/python benchmarks/tune.py                    # 400 images, 12 trials x 6 epochs
    .venv/bin/python benchmarks/tune.py --images 60 --trials 2 --epochs 2   # smoke run

On one `odp synth --cue shape` dataset (default 400 images: 300 train / 100 validation;
classes told apart by shape only) and the same
total budget of training epochs (trials x epochs):

  (a) random search, no pruning: every trial trains all its epochs;
  (b) TPE with the median pruner and that budget as the study's epoch budget: a trial may
      train up to --trial-max-epochs (default 5 x epochs), bad trials stop early and the
      epochs they leave fund longer runs of the others; the pruner and the budget's
      reserve are the product's defaults for it (`plan_search`, as `odp tune` uses);
  (c) SageMaker's default hyperparameters, one run of trials x epochs epochs.

Every trial is a real `odp train` process on the /opt/ml contract, reporting each epoch's
validation mAP to the study (the same code as `odp tune`). Prints, side by side, the best
validation mAP each reached, the epochs each spent, and the epochs (b) needed to reach (a)'s
best. The issue's goal: (b) reaches (a)'s best with at most half of (a)'s epochs, and beats (c).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline_lib.synthetic import SynthConfig, generate  # noqa: E402
from pipeline_lib.training.contract import MLPaths, prepare_ml_root  # noqa: E402
from pipeline_lib.training.local_job import derive, run_job  # noqa: E402
from pipeline_lib.tuning.budget import EpochBudget  # noqa: E402
from pipeline_lib.tuning.config import parse_config  # noqa: E402
from pipeline_lib.tuning.job import TuneSettings, run_sequential  # noqa: E402
from pipeline_lib.tuning.study import PrunerSpec, plan_search  # noqa: E402
from pipeline_lib.tuning.trials import HYPER_ATTR  # noqa: E402

CHANNELS = ("train", "validation", "train_annotation", "validation_annotation")
# SageMaker's five tunables of Object Detection, in ranges a user would start from.
SPACE = {
    "ContinuousParameterRanges": [
        {
            "Name": "learning_rate",
            "MinValue": "0.00001",
            "MaxValue": "0.01",
            "ScalingType": "Logarithmic",
        },
        {
            "Name": "momentum",
            "MinValue": "0.5",
            "MaxValue": "0.99",
            "ScalingType": "ReverseLogarithmic",
        },
        {
            "Name": "weight_decay",
            "MinValue": "0.00001",
            "MaxValue": "0.001",
            "ScalingType": "Logarithmic",
        },
    ],
    "IntegerParameterRanges": [{"Name": "mini_batch_size", "MinValue": "8", "MaxValue": "32"}],
    "CategoricalParameterRanges": [
        {"Name": "optimizer", "Values": ["sgd", "adam", "rmsprop", "adadelta"]}
    ],
}


def epochs_to_reach(trials: list[dict], target: float) -> int | None:
    """Epochs spent, trial after trial, until some trial's mAP first reached ``target``."""
    spent = 0
    for t in sorted(trials, key=lambda t: t["number"]):
        for _epoch, value in sorted(t["mAP_by_epoch"].items()):
            spent += 1
            if value >= target - 1e-12:
                return spent
    return None


def best_so_far(trials: list[dict]) -> list[float]:
    """The best validation mAP reached after each epoch spent, trial after trial."""
    curve, best = [], 0.0
    for t in sorted(trials, key=lambda t: t["number"]):
        for _epoch, value in sorted(t["mAP_by_epoch"].items(), key=lambda kv: int(kv[0])):
            best = max(best, value)
            curve.append(best)
    return curve


def plot(results: dict, path: Path) -> None:
    """Best mAP so far against epochs spent, one line per arm (a PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    labels = {
        "random": "(a) random search, no pruning",
        "tpe_pruned": "(b) TPE + median pruning",
        "defaults": "(c) SageMaker defaults, one run",
    }
    for key, label in labels.items():
        curve = best_so_far(results[key]["trials"])
        ax.plot(range(1, len(curve) + 1), curve, label=f"{label}: {results[key]['best']:.3f}")
    reach = results.get("b_epochs_to_a_best")
    if reach:
        ax.axvline(reach, color="grey", linestyle=":", linewidth=1)
        ax.annotate(f"(b) reaches (a)'s best\nafter {reach} epochs", (reach, 0.05), fontsize=8)
    ax.set_xlabel("training epochs spent")
    ax.set_ylabel("best validation mAP so far")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def search(
    name: str,
    base: MLPaths,
    work: Path,
    args,
    sampler: str,
    pruner: PrunerSpec,
    budget: EpochBudget | None = None,
) -> dict:
    config = parse_config(SPACE, "benchmark space")
    settings = TuneSettings(
        study=name,
        storage_url=f"sqlite:///{work / f'{name}.db'}",  # one per arm: arms run side by side
        n_trials=args.trials,
        sampler=sampler,
        pruner=pruner,
        seed=args.seed,
        budget=budget,
        mlflow=False,
    )
    log_path = work / f"{name}.log"

    def launch(plan, env):
        paths = derive(base, f"{name}-{plan.number}", plan.hyperparameters)
        with open(log_path, "a") as log:
            return run_job(paths, {**plan.env, **env}, output=log)

    start = time.perf_counter()
    summary = run_sequential(
        config, settings, launch, work / name, lambda m: print(f"  [{name}] {m}", flush=True)
    )
    seconds = time.perf_counter() - start
    import optuna

    study = optuna.load_study(study_name=name, storage=settings.storage_url)
    trials = [
        {
            "number": t.number,
            "state": t.state.name,
            "epochs_given": t.user_attrs.get(HYPER_ATTR, {}).get("epochs"),
            "hyperparameters": {
                k: v for k, v in t.user_attrs.get(HYPER_ATTR, {}).items() if k in config.space.names
            },
            "mAP_by_epoch": dict(t.intermediate_values),
        }
        for t in study.trials
    ]
    best = max((v for t in trials for v in t["mAP_by_epoch"].values()), default=0.0)
    return {
        "name": name,
        "best": best,
        "epochs": summary["epochs"],
        "seconds": seconds,
        "counts": summary["counts"],
        "longest": max((len(t["mAP_by_epoch"]) for t in trials), default=0),
        "trials": trials,
    }


def defaults_run(base: MLPaths, work: Path, budget: int) -> dict:
    paths = derive(base, "sagemaker-defaults", {"epochs": str(budget)})
    start = time.perf_counter()
    with open(work / "defaults.log", "w") as log:
        outcome = run_job(paths, {}, output=log)
    metrics = outcome.metrics or {}
    by_epoch = {r["epoch"]: r["validation_mAP"] for r in metrics.get("epochs", [])}
    return {
        "name": "defaults",
        "best": metrics.get("validation:mAP", 0.0),
        "epochs": len(by_epoch),
        "longest": len(by_epoch),
        "seconds": time.perf_counter() - start,
        "rc": outcome.exit_code,
        "trials": [{"number": 0, "mAP_by_epoch": by_epoch}],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400, help="total (75%% train)")
    parser.add_argument("--classes", type=int, default=3)
    parser.add_argument(
        "--cue",
        default="shape",
        choices=("shape", "colour"),
        help="what tells the classes apart (`odp synth --cue`): shape (default) is the set on "
        "which SageMaker's defaults barely learn, so the search has something to find",
    )
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=6, help="epochs of one trial of (a)")
    parser.add_argument(
        "--trial-max-epochs",
        type=int,
        help="(b): the most epochs one trial may train out of the budget (default 5 x --epochs)",
    )
    parser.add_argument("--network", default="mobilenet-0.25")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, help="keep everything here (default: a temp folder)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--plot", type=Path, help="draw best mAP vs epochs spent here (PNG)")
    parser.add_argument(
        "--replot", type=Path, metavar="JSON", help="only draw --plot from an earlier --json"
    )
    parser.add_argument(
        "--static",
        nargs="*",
        default=["augmentation=flip", "overlap_threshold=0.4"],
        metavar="KEY=VALUE",
        help="hyperparameters every arm shares, (c) included (default: the README's "
        "from-scratch recipe's data settings, so a few epochs learn enough to compare)",
    )
    args = parser.parse_args()
    if args.replot:
        plot(json.loads(args.replot.read_text()), args.plot or args.replot.with_suffix(".png"))
        return

    work = args.work or Path(tempfile.mkdtemp(prefix="odp-bench-tune-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("ODP_HOME", str(work / "home"))
    dataset = work / f"dataset-{args.cue}"
    if not (dataset / "train").is_dir():
        generate(
            dataset,
            SynthConfig(
                images=args.images,
                classes=args.classes,
                seed=args.seed,
                val_fraction=0.25,
                cue=args.cue,
            ),
        )
    n_train = len(list((dataset / "train_annotation").glob("*.json")))
    n_val = len(list((dataset / "validation_annotation").glob("*.json")))
    # SageMaker's defaults for everything the searches do not tune.
    base = prepare_ml_root(
        work / "ml",
        {c: dataset / c for c in CHANNELS},
        {
            "num_classes": args.classes,
            "num_training_samples": n_train,
            "base_network": args.network,
            "use_pretrained_model": 0,
            "epochs": args.epochs,
            "image_shape": 300,
            "seed": args.seed,
            **dict(kv.split("=", 1) for kv in args.static),
        },
    )
    budget = args.trials * args.epochs
    print(
        f"dataset: {n_train} train / {n_val} validation images; budget {budget} epochs "
        f"({args.trials} trials x {args.epochs}); {args.network}; shared {args.static}; "
        f"work folder {work}",
        flush=True,
    )

    pruner, epoch_budget = plan_search(
        "median",
        args.epochs,
        args.trials,
        epoch_budget=budget,
        max_trial_epochs=args.trial_max_epochs or 5 * args.epochs,
    )
    print(f"(b): {pruner}; {epoch_budget}", flush=True)
    # The arms are independent and counted in epochs: they run at once (threads waiting on
    # their training processes), so the comparison takes the longest arm's time, not the sum.
    with ThreadPoolExecutor(max_workers=3) as pool:
        arms = [
            pool.submit(search, "random", base, work, args, "random", PrunerSpec("none")),
            pool.submit(search, "tpe-pruned", base, work, args, "tpe", pruner, epoch_budget),
            pool.submit(defaults_run, base, work, budget),
        ]
        a, b, c = (arm.result() for arm in arms)
    reach = epochs_to_reach(b["trials"], a["best"])

    print()
    print(f"{'':22}{'(a) random':>14}{'(b) TPE+prune':>16}{'(c) defaults':>14}")
    print(f"{'best validation mAP':22}{a['best']:>14.4f}{b['best']:>16.4f}{c['best']:>14.4f}")
    print(f"{'epochs spent':22}{a['epochs']:>14}{b['epochs']:>16}{c['epochs']:>14}")
    print(f"{'wall seconds':22}{a['seconds']:>14.0f}{b['seconds']:>16.0f}{c['seconds']:>14.0f}")
    print(f"{'longest trial':22}{a['longest']:>14}{b['longest']:>16}{c['longest']:>14}")
    print(f"{'trials pruned':22}{a['counts']['pruned']:>14}{b['counts']['pruned']:>16}{'-':>14}")
    print(f"{'trials failed':22}{a['counts']['fail']:>14}{b['counts']['fail']:>16}{'-':>14}")
    print()
    if reach is None:
        print(f"(b) never reached (a)'s best mAP {a['best']:.4f}")
    else:
        print(
            f"(b) reached (a)'s best mAP {a['best']:.4f} after {reach} epochs = "
            f"{reach / max(1, a['epochs']):.2f} of (a)'s {a['epochs']} (goal: <= 0.50)"
        )
    if c.get("rc"):
        print(f"(c) failed (exit {c['rc']}): see {work / 'defaults.log'}")
    print(
        f"(b) vs (c): {b['best']:.4f} vs {c['best']:.4f} ({'beats' if b['best'] > c['best'] else 'does not beat'} the defaults)"
    )
    results = {"random": a, "tpe_pruned": b, "defaults": c, "b_epochs_to_a_best": reach}
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    if args.plot:
        plot(results, args.plot)
        print(f"curves: {args.plot}")


if __name__ == "__main__":
    main()
