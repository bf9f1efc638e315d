"""Training throughput of `odp train` against the machine's limit and a GluonCV reference.

    .venv/bin/python benchmarks/train_throughput.py [--network mobilenet-0.25] [--images 400]
        [--batch 16] [--augmentation flip] [--model-format gluoncv|sagemaker]

Three rows, same network, input size, classes, anchors and batch, on this machine:

(a) `odp train`, the real subprocess through the container contract;
(b) the GluonCV reference loop (``scripts/detection/ssd/train_ssd.py``'s structure, run as
    GluonCV users run it: MXNet's default threading);
(c) the compute limit: forward + backward + optimizer step of the same network on random
    tensors already in memory (no data loading, no decoding): what no loop can beat. Two
    layouts of the CPUs, both measured: (c1) one replica whose operators get every usable
    CPU (OpenMP threads), (c2) the layout `odp train` chooses (``pipeline_lib.cpus``
    ``plan_cpu_training``: a replica per core on its share of the batch, gradients summed);
    the faster of the two is (c), the column the ratios divide by.

``--model-format sagemaker`` runs every row on SageMaker's own graph (MXNet example/ssd's,
``vgg-16`` or ``resnet-50``): (a) is `odp train` with ``model_format=sagemaker``, (b) and (c)
the same loops over the same block (:class:`~pipeline_lib.sagemaker_ssd.network.SageMakerSSD`).

Goals (issue 12): (a) >= 0.9x (c), (a) >= 1.3x (b), (a)'s CPU time / wall >= 0.9 x CPUs.
The three rows run interleaved, ``--repeat`` rounds (default 3); each row reports its best
round (the machine's capacity, not its worst moment); every round is printed as it ends.

(a) and (b) train the same SSD (same base network, input size, classes, anchors), with the same
batch size, training transform (``--augmentation``: ``flip``, the README's recommended recipe,
by default; ``ssd`` is GluonCV's SSDDefaultTrainTransform), SSDMultiBoxLoss and SGD optimizer,
on the same RecordIO file, on this machine. The reference is the structure of GluonCV's
``scripts/detection/ssd/train_ssd.py`` (RecordFileDetection -> the transform per image in
DataLoader workers -> forward/backward/step); ours is the real `odp train` subprocess through
the container contract. Samples/s are measured over the second and later epochs (the first
pays for graph building); ours also reports the share of step time spent waiting for data.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline_lib.cpus import apply_cpu_plan, available_cpus, plan_cpu_training  # noqa: E402
from pipeline_lib.recordio.convert import convert_to_recordio  # noqa: E402
from pipeline_lib.synthetic import SynthConfig, generate  # noqa: E402
from pipeline_lib.training.contract import prepare_ml_root  # noqa: E402


def _cpu_seconds() -> float:
    from pipeline_lib.training.engine import process_tree_cpu_seconds

    return process_tree_cpu_seconds()


def reference_loop(rec: Path, network: str, classes: list[str], args) -> tuple[float, float]:
    """GluonCV train_ssd.py structure; (samples/s, CPU seconds per wall second) over
    epochs 2..N."""
    import mxnet as mx
    from gluoncv.data import RecordFileDetection
    from gluoncv.data.batchify import Stack, Tuple
    from gluoncv.loss import SSDMultiBoxLoss
    from mxnet import autograd, gluon

    from pipeline_lib.training.model import anchors_for
    from pipeline_lib.training.transforms import train_transform

    mx.random.seed(0)
    net = _network(network, classes, args, [mx.cpu()])
    anchors = anchors_for(net, args.image_shape)
    dataset = RecordFileDetection(str(rec), coord_normalized=True)
    loader = gluon.data.DataLoader(
        dataset.transform(train_transform(args.augmentation, args.image_shape, anchors, 0.5)),
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
    samples, seconds, cpu = 0, 0.0, 0.0
    for epoch in range(args.epochs):
        start, cpu_start = time.perf_counter(), _cpu_seconds()
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
            cpu += _cpu_seconds() - cpu_start
    return samples / seconds, cpu / seconds


def compute_limit(network: str, classes: list[str], args) -> tuple[float, float]:
    """(c): forward/backward/step on random in-memory tensors over ``args.streams`` CPU
    replicas; (samples/s, CPU/wall)."""
    import mxnet as mx
    import numpy as np
    from gluoncv.loss import SSDMultiBoxLoss
    from mxnet import autograd, gluon

    from pipeline_lib.training.model import anchors_for

    mx.random.seed(0)
    ctx = [mx.cpu(i) for i in range(args.streams)]
    net = _network(network, classes, args, ctx)
    n_anchors = anchors_for(net, args.image_shape).shape[1]
    rng = np.random.default_rng(0)
    size = (args.batch, 3, args.image_shape, args.image_shape)
    split = functools.partial(gluon.utils.split_and_load, ctx_list=ctx)
    data = split(mx.nd.array(rng.normal(size=size)))
    cls_t = split(mx.nd.array(rng.integers(0, len(classes) + 1, size=(args.batch, n_anchors))))
    box_t = split(mx.nd.array(rng.normal(scale=0.1, size=(args.batch, n_anchors, 4))))
    trainer = gluon.Trainer(
        net.collect_params(),
        "sgd",
        {"learning_rate": 0.001, "wd": 0.0005, "momentum": 0.9},
        kvstore="device" if args.streams > 1 else "local",  # as odp train's kv_store_type
    )
    mbox_loss = SSDMultiBoxLoss()
    net.hybridize(static_alloc=True, static_shape=True)

    def step() -> None:
        with autograd.record():
            preds = [net(x) for x in data]
            sum_loss, _, _ = mbox_loss([p[0] for p in preds], [p[1] for p in preds], cls_t, box_t)
            autograd.backward(sum_loss)
        trainer.step(1)

    for _ in range(3):  # graph building, memory planning
        step()
    mx.nd.waitall()
    iterations = max(3, args.images // args.batch * (args.epochs - 1))
    start, cpu_start = time.perf_counter(), _cpu_seconds()
    for _ in range(iterations):
        step()
    mx.nd.waitall()
    seconds = time.perf_counter() - start
    return iterations * args.batch / seconds, (_cpu_seconds() - cpu_start) / seconds


def _network(network: str, classes: list[str], args, ctx: list):
    """The network every row trains, initialised on ``ctx``: GluonCV's SSD, or SageMaker's
    graph with ``--model-format sagemaker``."""
    if getattr(args, "model_format", "gluoncv") == "sagemaker":
        from pipeline_lib.training.model import build_sagemaker_ssd

        return build_sagemaker_ssd(network, classes, args.image_shape, ctx, log=lambda _: None)
    from pipeline_lib.training.model import build_ssd

    net = build_ssd(network, classes, args.image_shape)
    net.initialize(ctx=ctx)
    return net


def ours(
    data: Path, rec_dir: Path, network: str, args, work: Path
) -> tuple[float, float, float, list[float]]:
    """`odp train` through the container contract; (samples/s, data-wait share, CPU/wall,
    every epoch's samples/s, the untimed first included)."""
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
        "augmentation": args.augmentation,
        "model_format": args.model_format,
    }
    channels = {"train": rec_dir, "validation": rec_dir}
    paths = prepare_ml_root(work / "ml", channels, hp, "recordio")
    cmd = [sys.executable, "-m", "pipeline_lib.cli", "train", "--ml-root", str(paths.root)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=REPO)  # noqa: S603  argv list of our own CLI, no shell
    every = json.loads((paths.output / "metrics.json").read_text())["epochs"]
    epochs = every[1:]
    rate = len(epochs) / sum(1 / e["throughput"] for e in epochs)  # equal-sized epochs
    wait = sum(e["data_wait_fraction"] for e in epochs) / len(epochs)
    busy = sum(e["cpu_utilisation"] for e in epochs) / len(epochs) * available_cpus()
    return rate, wait, busy, [e["throughput"] for e in every]


def _in_subprocess(
    fn: str, args, omp_threads: int | None, streams: int = 1, **extra_env: str
) -> tuple[float, float]:
    """Run ``fn`` (reference or limit) in a fresh interpreter: MXNet reads its thread
    settings once, at import."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if omp_threads:
        env["OMP_NUM_THREADS"] = str(omp_threads)
    env.update(extra_env)
    child_args = {**vars(args), "streams": streams}
    argv = [sys.executable, __file__, "--_run", fn, "--_args", json.dumps(child_args)]
    out = subprocess.run(argv, env=env, check=True, capture_output=True, text=True, cwd=REPO)  # noqa: S603  our own script
    return tuple(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", default="mobilenet-0.25")
    parser.add_argument(
        "--images",
        type=int,
        default=400,
        help="training images: 400, the learn benchmark's set size (25 steps of 16 per "
        "epoch: a steadier figure than a few steps, for every row)",
    )
    parser.add_argument("--classes", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--image-shape", type=int, default=300)
    parser.add_argument("--workers", type=int, default=available_cpus())
    parser.add_argument("--augmentation", choices=("flip", "light", "ssd"), default="flip")
    parser.add_argument(
        "--model-format",
        choices=("gluoncv", "sagemaker"),
        default="gluoncv",
        help="sagemaker: every row on SageMaker's own graph (vgg-16 or resnet-50)",
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="rounds of all three rows; each keeps its best"
    )
    parser.add_argument("--_run", help=argparse.SUPPRESS)
    parser.add_argument("--_args", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._run:
        _child(args._run, argparse.Namespace(**json.loads(args._args)))
        return
    with tempfile.TemporaryDirectory(prefix="odp-throughput-") as tmp:
        _compare(Path(tmp), args)


def _compare(work: Path, args: argparse.Namespace) -> None:
    """Every row in interleaved rounds (data, records and runs under ``work``), the table
    and the goals."""
    data = work / "data"
    generate(
        data,
        SynthConfig(
            images=args.images + 2, classes=args.classes, seed=0, val_fraction=0.02, cue="shape"
        ),
    )
    rec_dir = work / "rec"
    convert_to_recordio(str(data), str(rec_dir / "train"), channel="train", progress=False)
    names = SynthConfig(classes=args.classes, cue="shape").class_names
    (rec_dir / "class_map.json").write_text(json.dumps(dict(enumerate(names))))
    print(
        f"{args.network} ({args.model_format} graph) {args.image_shape}x{args.image_shape}, "
        f"batch {args.batch}, "
        f"augmentation {args.augmentation}, "
        f"{args.images} images, {args.epochs} epochs (first not timed), "
        f"{args.workers} data workers, {available_cpus()} usable CPUs"
    )
    args.rec = str(rec_dir / "train.rec")
    args.names = names
    # Rounds interleave the three rows, so a slow spell of the machine (a neighbour on a
    # shared host) hits each row in some round and not in others; each row keeps its best.
    plan = plan_cpu_training(args.batch, env={})  # what odp train does with no overrides
    layout = {"OMP_NUM_THREADS": str(plan.threads)}
    apply_cpu_plan(plan, layout)
    print(plan.describe(args.batch))
    runs: dict[str, list[tuple[float, ...]]] = {
        "one": [],
        "plan": [],
        "reference": [],
        "ours": [],
    }
    for round_ in range(args.repeat):
        runs["one"].append(_in_subprocess("limit", args, available_cpus()))
        runs["plan"].append(_in_subprocess("limit", args, None, plan.streams, **layout))
        runs["reference"].append(_in_subprocess("reference", args, None))
        runs["ours"].append(ours(data, rec_dir, args.network, args, work / f"round-{round_}"))
        print(
            f"round {round_ + 1}/{args.repeat}: samples/s (a) {runs['ours'][-1][0]:.2f}, "
            f"(b) {runs['reference'][-1][0]:.2f}, (c1) {runs['one'][-1][0]:.2f}, "
            f"(c2) {runs['plan'][-1][0]:.2f}",
            flush=True,
        )
    one, one_cpu = max(runs["one"])
    planned, planned_cpu = max(runs["plan"])
    limit = max(one, planned)
    ref, ref_cpu = max(runs["reference"])
    rate, wait, busy, per_epoch = max(runs["ours"])
    cpus = available_cpus()
    print(f"{'':<44}{'samples/s':>10}{'x (c)':>8}{'x (b)':>8}{'CPU/wall':>10}")
    rows = [
        ("(a) odp train", rate, busy),
        ("(b) GluonCV reference (train_ssd.py)", ref, ref_cpu),
        ("(c1) compute limit, one replica", one, one_cpu),
        (f"(c2) compute limit, {plan.streams} replica(s) (as (a))", planned, planned_cpu),
    ]
    for name, value, cpu in rows:
        print(f"{name:<44}{value:>10.2f}{value / limit:>8.2f}{value / ref:>8.2f}{cpu:>10.2f}")
    print(f"odp train waited for data {100 * wait:.1f}% of its step time")
    print("odp train samples/s by epoch (its best round):", " ".join(f"{r:.1f}" for r in per_epoch))
    goals = [
        ("(a) >= 0.9x (c)", rate / limit, 0.9),
        ("(a) >= 1.3x (b)", rate / ref, 1.3),
        (f"(a) CPU/wall >= 0.9 x {cpus} CPUs", busy / cpus, 0.9),
    ]
    for name, value, goal in goals:
        print(f"goal {name:<32} {value:6.2f}  {'met' if value >= goal else 'NOT met'}")


def _child(fn: str, args: argparse.Namespace) -> None:
    if fn == "limit":
        result = compute_limit(args.network, args.names, args)
    else:
        result = reference_loop(Path(args.rec), args.network, args.names, args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
