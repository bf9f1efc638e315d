"""Training throughput of `odp train` vs a minimal GluonCV reference loop, side by side.

    .venv/bin/python benchmarks/train_throughput.py [--network vgg-16] [--images 96] [--batch 8]

Both train the same SSD (same base network, input size, classes, anchors), with the same
batch size, GluonCV SSD training transform, SSDMultiBoxLoss and SGD optimizer, on the same
RecordIO file, on this machine. The reference is the structure of GluonCV's
``scripts/detection/ssd/train_ssd.py`` (RecordFileDetection -> SSDDefaultTrainTransform in
DataLoader workers -> forward/backward/step); ours is the real `odp train` subprocess through
the container contract. Samples/s are measured over the second and later epochs (the first
pays for graph building); ours also reports the share of step time spent waiting for data.
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

from pipeline_lib.recordio.convert import convert_to_recordio  # noqa: E402
from pipeline_lib.synthetic import SynthConfig, generate  # noqa: E402
from pipeline_lib.training.contract import prepare_ml_root  # noqa: E402


def reference_loop(rec: Path, network: str, classes: list[str], args) -> float:
    """GluonCV train_ssd.py structure; returns samples/s over epochs 2..N."""
    import mxnet as mx
    from gluoncv.data import RecordFileDetection
    from gluoncv.data.batchify import Stack, Tuple
    from gluoncv.data.transforms.presets.ssd import SSDDefaultTrainTransform
    from gluoncv.loss import SSDMultiBoxLoss
    from mxnet import autograd, gluon

    from pipeline_lib.training.model import anchors_for, build_ssd

    mx.random.seed(0)
    net = build_ssd(network, classes, args.image_shape)
    net.initialize()
    anchors = anchors_for(net, args.image_shape)
    dataset = RecordFileDetection(str(rec), coord_normalized=True)
    loader = gluon.data.DataLoader(
        dataset.transform(SSDDefaultTrainTransform(args.image_shape, args.image_shape, anchors)),
        args.batch,
        shuffle=True,
        batchify_fn=Tuple(Stack(), Stack(), Stack()),
        last_batch="rollover",
        num_workers=args.workers,
    )
    trainer = gluon.Trainer(
        net.collect_params(), "sgd", {"learning_rate": 0.001, "wd": 0.0005, "momentum": 0.9}
    )
    mbox_loss = SSDMultiBoxLoss()
    net.hybridize(static_alloc=True, static_shape=True)
    samples, seconds = 0, 0.0
    for epoch in range(args.epochs):
        start = time.perf_counter()
        n = 0
        for batch in loader:
            data, cls_t, box_t = (
                gluon.utils.split_and_load(b, ctx_list=[mx.cpu()], batch_axis=0)[0] for b in batch
            )
            with autograd.record():
                cls_pred, box_pred, _ = net(data)
                sum_loss, _, _ = mbox_loss([cls_pred], [box_pred], [cls_t], [box_t])
                autograd.backward(sum_loss)
            trainer.step(1)
            mx.nd.waitall()
            n += batch[0].shape[0]
        if epoch > 0:
            samples += n
            seconds += time.perf_counter() - start
    return samples / seconds


def ours(data: Path, rec_dir: Path, network: str, args, work: Path) -> tuple[float, float]:
    """`odp train` through the container contract; (samples/s, data-wait share)."""
    hp = {
        "num_classes": args.classes,
        "num_training_samples": args.images,
        "base_network": network,
        "use_pretrained_model": 0,
        "epochs": args.epochs,
        "mini_batch_size": args.batch,
        "optimizer": "sgd",
        "learning_rate": 0.001,
        "image_shape": args.image_shape,
        "num_workers": args.workers,
    }
    channels = {"train": rec_dir, "validation": rec_dir}
    paths = prepare_ml_root(work / "ml", channels, hp, "recordio")
    cmd = [sys.executable, "-m", "pipeline_lib.cli", "train", "--ml-root", str(paths.root)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=REPO)  # noqa: S603  argv list of our own CLI, no shell
    epochs = json.loads((paths.output / "metrics.json").read_text())["epochs"][1:]
    rate = len(epochs) / sum(1 / e["throughput"] for e in epochs)  # equal-sized epochs
    wait = sum(e["data_wait_fraction"] for e in epochs) / len(epochs)
    return rate, wait


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", default="vgg-16")
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--classes", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--image-shape", type=int, default=300)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="odp-throughput-"))
    data = work / "data"
    generate(
        data, SynthConfig(images=args.images + 2, classes=args.classes, seed=0, val_fraction=0.02)
    )
    rec_dir = work / "rec"
    convert_to_recordio(str(data), str(rec_dir / "train"), channel="train", progress=False)
    names = ["circle", "square", "triangle", "diamond", "cross"][: args.classes]
    (rec_dir / "class_map.json").write_text(json.dumps(dict(enumerate(names))))
    print(
        f"{args.network} {args.image_shape}x{args.image_shape}, batch {args.batch}, "
        f"{args.images} images, {args.epochs} epochs (first not timed), "
        f"{args.workers} data workers, {os.cpu_count()} CPUs"
    )
    ref = reference_loop(rec_dir / "train.rec", args.network, names, args)
    rate, wait = ours(data, rec_dir, args.network, args, work)
    print(f"{'loop':<34}{'samples/s':>10}{'x reference':>13}")
    print(f"{'GluonCV reference (train_ssd.py)':<34}{ref:>10.2f}{1.0:>13.2f}")
    print(f"{'odp train':<34}{rate:>10.2f}{rate / ref:>13.2f}")
    print(f"odp train waited for data {100 * wait:.1f}% of its step time")


if __name__ == "__main__":
    main()
