"""Does `odp train` learn? Validation mAP per epoch on a synthetic dataset, from scratch.

    .venv/bin/python benchmarks/learn.py                         # mobilenet-0.25, 10 minutes
    .venv/bin/python benchmarks/learn.py --networks mobilenet-0.25 vgg-16 resnet-50 \
        --budget 600 600 600 --lr 0.003 0.0005 0.0005

Each network trains through the real container contract (`odp train` in a subprocess) on
the same `odp synth` dataset (default 500 images: 400 train / 100 validation, 3 classes),
from scratch (no pretrained weights), until its time budget (`max_runtime_seconds`) ends.
Prints the VOC07 mAP@0.5 after every epoch and the best, side by side per network.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline_lib.synthetic import SynthConfig, generate  # noqa: E402
from pipeline_lib.training.contract import prepare_ml_root  # noqa: E402

CHANNELS = ("train", "validation", "train_annotation", "validation_annotation")


def run_one(network: str, dataset: Path, work: Path, budget: int, lr: float, args) -> dict:
    hp = {
        "num_classes": args.classes,
        "num_training_samples": int(args.images * 0.8),
        "base_network": network,
        "use_pretrained_model": 0,
        "epochs": 1000,
        "mini_batch_size": args.batch,
        "optimizer": "adam",
        "learning_rate": lr,
        "image_shape": 300,
        "max_runtime_seconds": budget,
        "seed": 0,
    }
    paths = prepare_ml_root(work / network, {c: dataset / c for c in CHANNELS}, hp)
    cmd = [sys.executable, "-m", "pipeline_lib.cli", "train", "--ml-root", str(paths.root)]
    start = time.perf_counter()
    with open(work / f"{network}.log", "w") as log:
        rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)  # noqa: S603  argv list of our own CLI, no shell
    seconds = time.perf_counter() - start
    metrics = json.loads((paths.output / "metrics.json").read_text()) if rc == 0 else {}
    return {"network": network, "lr": lr, "rc": rc, "seconds": seconds, **metrics}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", default=["mobilenet-0.25"])
    parser.add_argument("--budget", nargs="+", type=int, default=[600])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--classes", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", nargs="+", type=float, default=[0.003], help="one, or per network")
    parser.add_argument("--work", default=None, help="keep outputs here (default: temp)")
    args = parser.parse_args()
    budgets = args.budget * len(args.networks) if len(args.budget) == 1 else args.budget
    lrs = args.lr * len(args.networks) if len(args.lr) == 1 else args.lr
    work = Path(args.work or tempfile.mkdtemp(prefix="odp-learn-"))
    dataset = work / "dataset"
    generate(dataset, SynthConfig(images=args.images, classes=args.classes, seed=0))
    print(f"dataset: {dataset} ({args.images} images, {args.classes} classes); logs in {work}")
    print(f"machine: {os.cpu_count()} CPUs\n")
    results = [
        run_one(n, dataset, work, b, lr, args)
        for n, b, lr in zip(args.networks, budgets, lrs, strict=True)
    ]
    print(f"{'network':<16}{'lr':>8}{'budget s':>9}{'epochs':>8}{'best mAP':>10}{'at epoch':>10}")
    for r in results:
        if r["rc"]:
            print(f"{r['network']:<16} failed (exit {r['rc']}), see {work}/{r['network']}.log")
            continue
        print(
            f"{r['network']:<16}{r['lr']:>8g}{r['seconds']:>9.0f}{r['epochs_completed']:>8}"
            f"{r['validation:mAP']:>10.3f}{r['best_epoch']:>10}"
        )
    print("\nvalidation mAP (VOC07, IoU 0.5) per epoch:")
    for r in results:
        if not r["rc"]:
            curve = " ".join(f"{e['validation_mAP']:.2f}" for e in r["epochs"])
            print(f"  {r['network']:<16}{curve}")


if __name__ == "__main__":
    main()
