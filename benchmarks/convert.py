"""RecordIO conversion speed: ours vs MXNet's im2rec.py vs plain ``cat`` (the I/O limit).

Converts the same images (the ``train`` channel of an image+JSON dataset, >= 2,000 images):

  (a) ``odp convert recordio DATA OUT --channel train``   ours, defaults (pass-through; all
                                                           cores from 1,000 images; fsync)
  (b) ``im2rec.py PREFIX ROOT --pack-label``              MXNet defaults: decode + JPEG q95, 1 thread
  (c) ``im2rec.py PREFIX ROOT --pack-label --pass-through``
  (d) ``cat`` of the image files into one file
  plus im2rec with ``--num-thread N`` (b2, c2) and ours with ``--workers N`` (a2).

Durability is compared like with like. Ours fsyncs its outputs before publishing them (the
DAG's conversion cache must never hold a torn ``.rec``); im2rec and cat leave the data in
the page cache. So every method is timed both ways: ``*-pc`` rows end in the page cache
(ours with ``--no-fsync``), ``*-disk`` rows end on disk (im2rec and cat followed by an fsync
of their output, inside the timing). Each goal is checked against the same kind of row.

im2rec gets the ``.lst`` ours wrote (the SageMaker layout; untimed, users hand-write it), so
it does less than ours, which also reads every JSON and writes the ``.lst``. Every run is a
fresh process with all inputs in the page cache; best of ``--repeat``. Python code runs from
compiled bytecode, as installed code does (this script compiles ``pipeline_lib`` first;
``make venv`` compiles site-packages even under PYTHONDONTWRITEBYTECODE=1).

Two times per row: *wall*, the whole command as a user runs it, and *net*, measured inside
the process after the interpreter started and the tool's imports were done (``import mxnet``
alone takes seconds). The ratio columns say how many times faster ours is than the row,
against ours with the same durability.

    .venv/bin/python benchmarks/convert.py [--images 2000] [--data DIR] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from pipeline_lib.annotations import iter_channel  # noqa: E402
from pipeline_lib.synthetic import SynthConfig, generate  # noqa: E402

PY = sys.executable
MARK = "BENCH_NET_SECONDS="

# ours: the library call, timed after the imports
OURS_NET = f"""
import sys, time
from pipeline_lib.recordio.convert import convert_to_recordio
t0 = time.perf_counter()
convert_to_recordio(sys.argv[1], sys.argv[2], channel="train", workers=int(sys.argv[3]),
                    durable=sys.argv[4] == "1", progress=False)
print("{MARK}%f" % (time.perf_counter() - t0))
"""

# im2rec: its own script, run after the modules it imports are loaded
IM2REC_NET = f"""
import os, runpy, sys, time
import mxnet, cv2, argparse, multiprocessing, random, traceback
fsync, sys.argv = sys.argv[1], sys.argv[2:]
t0 = time.perf_counter()
runpy.run_path(sys.argv[0], run_name="__main__")
if fsync != "-":  # durable, like ours: the .rec on disk before the clock stops
    with open(fsync, "rb") as f:
        os.fsync(f.fileno())
print("{MARK}%f" % (time.perf_counter() - t0))
"""


def im2rec_path() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("mxnet")
    if spec is None or spec.origin is None:
        raise SystemExit("mxnet is not installed: im2rec.py ships in the mxnet wheel")
    return Path(spec.origin).parent / "tools" / "im2rec.py"


@dataclass
class Row:
    key: str  # "<method>-pc" (ends in the page cache) or "<method>-disk" (fsynced)
    label: str
    wall: float  # the whole command
    net: float  # inside the process, after start-up and imports


def run(cmd: list[str], env: dict) -> tuple[float, float | None]:
    """Wall time of ``cmd`` and the net time it reports (if it does)."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)  # noqa: S603  argv list of our own tools, no shell
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    net = [float(x[len(MARK) :]) for x in proc.stdout.splitlines() if x.startswith(MARK)]
    return wall, (net[-1] if net else None)


def ensure_dataset(images: int) -> Path:
    root = REPO_ROOT / ".local" / "bench" / f"convert-synth-{images}"
    marker = root / ".complete"
    if not marker.exists():
        shutil.rmtree(root, ignore_errors=True)
        print(f"generating {images} synthetic images in {root} (once) ...", file=sys.stderr)
        # ~all images in train; the validation channel keeps the layout valid
        generate(root, SynthConfig(images=images + 2, classes=4, seed=2024, val_fraction=0.001))
        marker.write_text("ok\n")
    return root


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--images", type=int, default=2000, help="synthetic train images (>= 2000)")
    ap.add_argument("--data", type=Path, help="an existing image+JSON dataset (its train channel)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workdir", type=Path, help="where outputs go (default: a temp folder)")
    ap.add_argument("--threads", type=int, default=2, help="N for the im2rec/ours pool rows")
    args = ap.parse_args(argv)

    data = args.data.resolve() if args.data else ensure_dataset(args.images)
    files = [p for p, _ in iter_channel(data, "train")]
    n = len(files)
    total_mb = sum(p.stat().st_size for p in files) / 2**20
    im2rec = str(im2rec_path())
    work = Path(args.workdir or tempfile.mkdtemp(prefix="odp-bench-convert-"))
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    # Start-up as installed code has it: bytecode compiled once (``make venv`` compiles
    # site-packages; this compiles ours), not recompiled by every process.
    subprocess.run([PY, "-m", "compileall", "-q", str(REPO_ROOT / "pipeline_lib")], check=True)  # noqa: S603  argv list of our own tools, no shell
    cores = len(os.sched_getaffinity(0))
    k = args.threads
    out = str(work / "out")

    def clean(lst: bool = False) -> None:  # no outputs left over, every input in page cache
        for p in work.glob("out*"):
            p.unlink()
        for p in files:
            p.read_bytes()
        for p in (data / "train_annotation").glob("*.json"):
            p.read_bytes()
        if lst:
            shutil.copy(work / "ref.lst", work / "out.lst")

    def best(cmd_wall: list[str], cmd_net: list[str] | None, lst: bool = False) -> tuple:
        walls, nets = [], []
        for _ in range(args.repeat):
            clean(lst)
            wall, net = run(cmd_wall, env)
            walls.append(wall)
            if net is not None:
                nets.append(net)
            if cmd_net is not None:
                clean(lst)
                nets.append(run(cmd_net, env)[1])
        return min(walls), min(nets) if nets else min(walls)

    rows: list[Row] = []
    cli = [
        PY,
        "-m",
        "pipeline_lib.cli",
        "convert",
        "recordio",
        str(data),
        out,
        "--channel",
        "train",
    ]
    net_cmd = [PY, "-c", OURS_NET, str(data), out]
    wall, net = best(cli, [*net_cmd, "0", "1"])
    rows.append(Row("a-disk", "ours: odp convert recordio (defaults)", wall, net))
    shutil.copy(work / "out.lst", work / "ref.lst")
    reference = (work / "out.rec").read_bytes()
    wall, net = best([*cli, "--no-fsync"], [*net_cmd, "0", "0"])
    rows.append(Row("a-pc", "ours, --no-fsync", wall, net))
    wall, net = best([*cli, "--workers", str(k)], [*net_cmd, str(k), "1"])
    rows.append(Row("a2-disk", f"ours, --workers {k}", wall, net))

    rec = str(work / "out.rec")
    identical = None
    for key, label, flags, durable in (
        ("b-pc", "im2rec --pack-label (default: decode + JPEG q95, 1 thread)", [], False),
        ("b2-pc", f"im2rec --pack-label --num-thread {k}", ["--num-thread", str(k)], False),
        ("c-pc", "im2rec --pack-label --pass-through", ["--pass-through"], False),
        ("c-disk", "im2rec --pack-label --pass-through, then fsync", ["--pass-through"], True),
        ("c2-pc", f"im2rec --pack-label --pass-through --num-thread {k}",
         ["--pass-through", "--num-thread", str(k)], False),
    ):  # fmt: skip
        argv_ = [out, str(data / "train"), "--pack-label", *flags]
        cmd = [PY, im2rec, *argv_]
        if durable:
            cmd = ["sh", "-c", '"$@" && sync -d "$0"', rec, *cmd]
        net_cmd = [PY, "-c", IM2REC_NET, rec if durable else "-", im2rec, *argv_]
        wall, net = best(cmd, net_cmd, lst=True)
        rows.append(Row(key, label, wall, net))
        if key == "c-pc":
            identical = (work / "out.rec").read_bytes() == reference

    for key, label, script in (
        ("d-pc", "cat of the image bytes into one file (the I/O limit)", 'cat "$@" > "$0"'),
        ("d-disk", "cat of the image bytes, then fsync", 'cat "$@" > "$0" && sync -d "$0"'),
    ):
        walls = []
        for _ in range(args.repeat):
            clean()
            wall, _ = run(["sh", "-c", script, str(work / "out.cat"), *map(str, files)], env)
            walls.append(wall)
        rows.append(Row(key, label, min(walls), min(walls)))

    ours = {"disk": rows[0], "pc": rows[1]}
    load = os.getloadavg()
    print(f"\nRecordIO conversion of {n} images ({total_mb:.1f} MiB): {data}")
    print(
        f"{cores} cores, load average {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}, "
        f"Python {sys.version.split()[0]}, best of {args.repeat}, inputs in the page cache"
    )
    print(f"ours == im2rec --pack-label --pass-through, byte for byte: {identical}\n")
    head = (
        f"{'':9}{'method':<56}{'wall s':>8}{'img/s':>8}{'net s':>8}{'img/s':>8}"
        f"{'ours x faster: wall':>21}{'net':>6}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        base = ours[r.key.rsplit("-", 1)[1]]
        print(
            f"{'(' + r.key + ')':<9}{r.label:<56}{r.wall:8.2f}{n / r.wall:8.0f}{r.net:8.3f}"
            f"{n / r.net:8.0f}{r.wall / base.wall:20.2f}x{r.net / base.net:5.2f}x"
        )
    print("\ngoals: ours >= 3x (b), >= 1x (c), >= 0.5x (d), same durability on both sides")
    for key, goal in (
        ("b-pc", 3.0),
        ("c-pc", 1.0),
        ("c-disk", 1.0),
        ("d-pc", 0.5),
        ("d-disk", 0.5),
    ):
        r = next(r for r in rows if r.key == key)
        base = ours[key.rsplit("-", 1)[1]]
        w, nt = r.wall / base.wall, r.net / base.net
        verdict = "met" if min(w, nt) >= goal else ("met net" if nt >= goal else "not met")
        print(f"  ({key:<6}) wall {w:6.2f}x   net {nt:6.2f}x   {verdict}")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
