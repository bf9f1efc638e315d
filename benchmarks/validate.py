"""Validation throughput: ours (header-only, all cores) vs a naive full PIL decode of every image.

Datasets: ``--images`` (default 2,000) and ``--memory-images`` (default 10,000) image+JSON
datasets replicated from a pool: the 197 RGB raccoon photos of ../shared (real JPEGs, about
470x370 px, as in VOC) when present, else 400 synthetic images (400-640 px, JPEG and PNG).
Copies get a unique JPEG comment / PNG tEXt chunk, so every file has distinct bytes (no
duplicate findings) while decoding costs exactly what the original costs.

Validators, each in a fresh interpreter (timed around the call, imports excluded), after a
warm-up read of every file (page cache):

* naive x1: for every JSON, ``json.load`` + ``PIL.Image.open(...).convert("RGB")`` (a full
  decode) + mode and size checks, one process: what a hand-written check usually does;
* naive xN: the same over N processes (the same parallelism as ours);
* ours: ``validate(DATA, ValidationOptions(great_expectations=False))``: every rule, header-only
  image inspection, end markers, content hashing, all cores;
* ours + GX: the same with the Great Expectations suites run and Data Docs written (includes
  importing GX, several seconds).

Peak memory: VmHWM of the measuring process and the largest worker's max RSS (forked workers
share pages with their parent, so main + N x worker is an upper bound).

    .venv/bin/python benchmarks/validate.py [--images 2000] [--memory-images 10000]
        [--pool raccoon|synthetic] [--workdir DIR] [--repeat 2] [--no-gx] [--baseline REV]

``--baseline REV`` adds a row "ours at REV": the same measurement run from a temporary
``git worktree`` of REV (e.g. the commit before a change), interleaved with ours run by run,
and prints ours / REV, so a change's cost is measured in one run on the same machine state.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from contextlib import contextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from PIL import Image  # noqa: E402

from pipeline_lib.synthetic import SynthConfig, generate  # noqa: E402
from pipeline_lib.validation import ValidationOptions, validate  # noqa: E402

CHANNELS = ("train", "validation")
RACCOON = REPO_ROOT.parent / "shared" / "datasets" / "raccoon"


# ----------------------------------------------------------------------------- data


def _unique(data: bytes, key: int) -> bytes:
    """The same image with a unique comment: distinct bytes, identical pixels."""
    payload = f"odp-bench {key}".encode()
    if data[:2] == b"\xff\xd8":  # JPEG: COM segment right after SOI
        return data[:2] + b"\xff\xfe" + struct.pack(">H", len(payload) + 2) + payload + data[2:]
    body = b"Comment\x00" + payload  # PNG: tEXt chunk after IHDR
    chunk = struct.pack(">I", len(body)) + b"tEXt" + body
    chunk += struct.pack(">I", zlib.crc32(b"tEXt" + body))
    return data[:33] + chunk + data[33:]


def _pool(work: Path, kind: str) -> Path:
    """A folder of valid image+JSON pairs to replicate: raccoon photos or synthetic images."""
    pool_dir = work / f".pool-{kind}"
    if (pool_dir / ".complete").exists():
        return pool_dir
    shutil.rmtree(pool_dir, ignore_errors=True)
    if kind == "raccoon":
        from pipeline_lib.importers import import_voc

        import_voc(str(RACCOON), str(pool_dir), val_fraction=0.2, seed=0)
        for ch in CHANNELS:  # keep the RGB photos only (3 of the 200 are grayscale)
            for p in (pool_dir / f"{ch}_annotation").glob("*.json"):
                ann = json.loads(p.read_text())
                if ann["image_size"][0]["depth"] != 3:
                    (pool_dir / ch / ann["file"]).unlink()
                    p.unlink()
    else:
        cfg = SynthConfig(images=400, classes=5, seed=7, max_objects=4, min_size=400, max_size=640)
        generate(pool_dir, cfg)
    (pool_dir / ".complete").touch()
    return pool_dir


def build_dataset(work: Path, n: int, kind: str) -> Path:
    """An image+JSON dataset of ``n`` images (80/20 split), cached under ``work``."""
    root = work / f"{kind}-{n}"
    if (root / ".complete").exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    pool_dir = _pool(work, kind)
    pool = []
    for ch in CHANNELS:
        for p in sorted((pool_dir / f"{ch}_annotation").glob("*.json")):
            ann = json.loads(p.read_text())
            pool.append((ann, pool_dir / ch / ann["file"]))
    n_val = n // 5
    for i in range(n):
        ch = "validation" if i < n_val else "train"
        ann, src = pool[i % len(pool)]
        ext = Path(ann["file"]).suffix
        stem = f"img_{i:06d}"
        (root / ch).mkdir(parents=True, exist_ok=True)
        (root / f"{ch}_annotation").mkdir(parents=True, exist_ok=True)
        (root / ch / f"{stem}{ext}").write_bytes(_unique(src.read_bytes(), i))
        (root / f"{ch}_annotation" / f"{stem}.json").write_text(
            json.dumps({**ann, "file": f"{stem}{ext}"})
        )
    (root / ".complete").touch()
    return root


def warm(root: Path) -> None:
    for p in root.rglob("*"):
        if p.is_file():
            p.read_bytes()


# ----------------------------------------------------------------------------- validators


def _naive_one(item: tuple[str, str]) -> int:
    root, rel = item
    ann = json.loads(Path(root, rel).read_text())
    channel = rel.split("_annotation/")[0]
    im = Image.open(Path(root, channel, ann["file"]))
    ok = im.mode == "RGB"
    rgb = im.convert("RGB")  # full decode
    size = ann["image_size"][0]
    ok = ok and rgb.size == (size["width"], size["height"])
    return int(not ok)


def _items(root: Path) -> list[tuple[str, str]]:
    return [
        (str(root), p.relative_to(root).as_posix())
        for ch in CHANNELS
        for p in sorted((root / f"{ch}_annotation").glob("*.json"))
    ]


def naive(root: Path, workers: int) -> int:
    items = _items(root)
    if workers <= 1:
        return sum(map(_naive_one, items))
    with mp.get_context("fork").Pool(workers) as pool:
        return sum(pool.imap(_naive_one, items, chunksize=32))


def ours(root: Path, workers: int, gx: bool = False) -> int:
    opts = ValidationOptions(great_expectations=gx, workers=workers)
    with tempfile.TemporaryDirectory() as tmp:
        report = validate(str(root), opts, report_dir=tmp if gx else None)
    assert report.ok, report.human_summary()  # noqa: S101  a benchmark's sanity check
    return len(report.findings)


# ----------------------------------------------------------------------------- measuring


def _vmhwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _run_measurement(kind: str, data: str, workers: int) -> None:
    """In a fresh interpreter: run one validator, print seconds and peak memory as JSON."""
    root = Path(data)
    fn = {
        "naive": lambda: naive(root, workers),
        "ours": lambda: ours(root, workers),
        "ours_gx": lambda: ours(root, workers, gx=True),
    }[kind]
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mb": _vmhwm_mb(), "workers_peak_mb": kids}))


def _measure_once(kind: str, data: Path, workers: int, tree: Path) -> tuple[float, float, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(  # noqa: S603  argv list of our own CLI, no shell
        [sys.executable, str(tree / "benchmarks" / "validate.py"), "--measure", kind, str(data)]
        + ["--workers", str(workers)],
        check=True,
        capture_output=True,
        text=True,
        cwd=tree,
        env=env,
    ).stdout
    r = json.loads(out.strip().splitlines()[-1])
    return (r["seconds"], r["peak_mb"], r["workers_peak_mb"])


def measure(
    kind: str, data: Path, workers: int, repeat: int, trees: tuple[Path, ...] = (REPO_ROOT,)
) -> list[tuple[float, float, float]]:
    """Best-of-``repeat`` seconds (and that run's peak memory) per code tree, each run a
    fresh process; the trees take turns, so a passing disturbance hits them alike."""
    best: list = [None] * len(trees)
    for _ in range(repeat):
        for i, tree in enumerate(trees):
            result = _measure_once(kind, data, workers, tree)
            if best[i] is None or result[0] < best[i][0]:
                best[i] = result
    return best


@contextmanager
def _baseline_tree(rev: str | None):
    """A temporary ``git worktree`` of ``rev`` (nothing when ``rev`` is None)."""
    if rev is None:
        yield None
        return
    tmp = Path(tempfile.mkdtemp(prefix="odp-bench-baseline-"))
    tree = tmp / "tree"
    git = ["git", "-C", str(REPO_ROOT), "worktree"]
    subprocess.run([*git, "add", "--detach", str(tree), rev], check=True, capture_output=True)  # noqa: S603
    try:
        yield tree
    finally:
        subprocess.run([*git, "remove", "--force", str(tree)], check=False, capture_output=True)  # noqa: S603
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--memory-images", type=int, default=10000)
    ap.add_argument(
        "--pool",
        choices=["raccoon", "synthetic"],
        default=None,
        help="images to replicate (default: raccoon photos when ../shared has them)",
    )
    ap.add_argument("--workdir", default=str(REPO_ROOT / ".local" / "bench" / "validate"))
    ap.add_argument("--workers", type=int, default=0, help="0 = one per core")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--no-gx", action="store_true", help="skip the GX + Data Docs row")
    ap.add_argument("--skip-naive-large", action="store_true")
    ap.add_argument("--baseline", metavar="REV", help="also time ours at this git revision")
    ap.add_argument("--measure", nargs=2, metavar=("KIND", "DATA"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    workers = args.workers or len(os.sched_getaffinity(0))
    if args.measure:
        _run_measurement(args.measure[0], args.measure[1], workers)
        return
    kind = args.pool or ("raccoon" if RACCOON.is_dir() else "synthetic")
    work = Path(args.workdir)
    print(
        f"pool: {kind}; cores: {len(os.sched_getaffinity(0))}, workers: {workers}, "
        f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )

    with _baseline_tree(args.baseline) as base:
        rows = _run(args, work, kind, workers, base)
    _print_ratios(args, rows, workers)


def _run(args, work: Path, kind: str, workers: int, base: Path | None) -> list[tuple]:
    rows = []
    sizes = list(dict.fromkeys([args.images, args.memory_images]))
    for n in sizes:
        t0 = time.perf_counter()
        data = build_dataset(work, n, kind)
        print(f"dataset {data} ({n} images) ready in {time.perf_counter() - t0:.1f} s")
        warm(data)
        cases = []
        if n == args.images or not args.skip_naive_large:
            cases.append(("naive PIL full decode x1", "naive", 1))
            cases.append((f"naive PIL full decode x{workers}", "naive", workers))
        cases.append((f"ours (header-only, {workers} workers)", "ours", workers))
        if n == args.images and not args.no_gx:
            cases.append(("ours + GX suites + Data Docs", "ours_gx", workers))
        for name, what, w in cases:
            trees = (REPO_ROOT, base) if base is not None and what == "ours" else (REPO_ROOT,)
            repeat = args.repeat if n <= 5000 or len(trees) > 1 else 1
            results = measure(what, data, w, repeat, trees)
            names = [name, f"ours at {args.baseline}"]
            for label, (seconds, peak, kids) in zip(names, results, strict=False):
                rows.append((n, label, seconds, n / seconds, peak, kids))
                print(
                    f"  {n:>6}  {label:<38} {seconds:8.2f} s  {n / seconds:9.0f} images/s  "
                    f"peak {peak:6.0f} MB (largest worker {kids:5.0f} MB)",
                    flush=True,
                )
    return rows


def _print_ratios(args, rows: list[tuple], workers: int) -> None:
    sizes = list(dict.fromkeys([args.images, args.memory_images]))
    print("\nratios (ours / naive, same images):")
    for n in sizes:
        by = {name: ips for m, name, _, ips, _, _ in rows if m == n}
        mine = next((v for k, v in by.items() if k.startswith("ours (")), None)
        for k, v in by.items():
            if (k.startswith("naive") or k.startswith("ours at")) and mine:
                print(f"  {n:>6}  ours / {k:<30} {mine / v:6.2f}x")
    big = [r for r in rows if r[0] == args.memory_images and r[1].startswith("ours (")]
    if big:
        n, _, _, _, peak, kids = big[0]
        print(
            f"\npeak memory, ours, {n} images: main process {peak:.0f} MB, largest worker "
            f"{kids:.0f} MB, upper bound {peak + workers * kids:.0f} MB"
        )


if __name__ == "__main__":
    main()
