"""Augmented manifest as DAG input: train from its images, or convert to RecordIO first?

    .venv/bin/python benchmarks/manifest_input.py [--images 400] [--epochs 10]

The DAG converts a manifest (image+JSON, then RecordIO, cached by content hash) before
training. This measures, on the same synthetic images, one pass of the training data
reader over (a) the manifest (``ManifestDetection``: one image file per item) and (b) the
converted ``.rec`` (``RecordIODetection``: one sequential file), plus the one-time conversion,
and prints the epochs after which converting has paid for itself. Reading is what the
training loop's data workers do each epoch before augmentation (decode included).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline_lib.manifest import ManifestDetection, dataset_to_manifest, manifest_to_dataset  # noqa: E402
from pipeline_lib.recordio.convert import convert_to_recordio  # noqa: E402
from pipeline_lib.synthetic import SynthConfig, generate  # noqa: E402


def read_all(dataset) -> float:
    """Seconds to read and decode every item once."""
    start = time.perf_counter()
    for i in range(len(dataset)):
        dataset[i]
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=10, help="epochs of a typical run")
    args = parser.parse_args()
    from pipeline_lib.recordio.reader import RecordIODetection

    with tempfile.TemporaryDirectory(prefix="odp-bench-manifest-") as tmp:
        root = Path(tmp)
        data = root / "dataset"
        generate(data, SynthConfig(images=args.images, classes=3, seed=1))
        manifest = data / "train.manifest"
        dataset_to_manifest(data, manifest, channel="train")

        start = time.perf_counter()
        manifest_to_dataset(manifest, root / "as-json", channel="train", progress=False)
        convert_to_recordio(
            root / "as-json", root / "rec" / "train", channel="train", progress=False
        )
        convert_s = time.perf_counter() - start

        from_manifest = read_all(ManifestDetection(str(manifest)))
        from_rec = read_all(RecordIODetection(str(root / "rec" / "train.rec")))

    n = args.images - round(args.images * 0.2)
    saved = from_manifest - from_rec
    print(f"train images: {n}")
    print(f"one epoch of reads, manifest: {from_manifest:.3f} s ({n / from_manifest:.0f} images/s)")
    print(f"one epoch of reads, RecordIO: {from_rec:.3f} s ({n / from_rec:.0f} images/s)")
    print(f"ratio manifest/RecordIO: {from_manifest / from_rec:.2f}x")
    print(f"conversion (manifest -> image+JSON -> RecordIO), once: {convert_s:.3f} s")
    if saved > 0:
        print(f"conversion pays for itself after {convert_s / saved:.1f} epochs")
    else:
        print("RecordIO reads are not faster here: conversion never pays for itself")
    print(
        f"{args.epochs} epochs: manifest {args.epochs * from_manifest:.2f} s, "
        f"convert + RecordIO {convert_s + args.epochs * from_rec:.2f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
