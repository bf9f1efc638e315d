"""mAP evaluation speed: ours vs pycocotools, faster-coco-eval and GluonCV, same detections.

Random ground truth and detections (default 5,000 images x 80 classes, ~20,000 boxes and
~60,000 detections, all three COCO area ranges, 1% crowd boxes) are evaluated by:

* COCO: ``pipeline_lib.evaluation.coco`` (arrays in, 12 numbers out: everything counted)
  vs pycocotools ``COCOeval.evaluate() + accumulate()`` vs faster-coco-eval's
  ``COCOeval_faster.evaluate() + accumulate()`` (their COCO objects built beforehand, not
  counted; the time to build them is shown on its own line);
* VOC07 / VOC: ``VOCMetric`` vs GluonCV's ``VOC07MApMetric`` / ``VOCMApMetric``, both fed
  the same padded batches (as a validation loader would), then ``get()``.

Each measurement runs in a fresh forked process; "peak MB" is the growth of that process's
peak resident memory (VmHWM) during the measurement. Every competitor's numbers are
checked against ours ("max |diff|"). Run: ``.venv/bin/python benchmarks/evaluate.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import multiprocessing as mp
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline_lib.evaluation.coco import coco_from_columns  # noqa: E402
from pipeline_lib.evaluation.store import DetectionStore  # noqa: E402
from pipeline_lib.evaluation.voc import VOCMetric  # noqa: E402

# ------------------------------------------------------------------ data


def make_data(n_images: int, n_classes: int, seed: int) -> list[dict]:
    """Per image: gt (xmin, ymin, xmax, ymax pixels), classes, crowd; detections, scores."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n_images):
        ng = int(rng.poisson(4))
        side = rng.choice([16.0, 48.0, 160.0], ng) * rng.uniform(0.6, 1.6, ng)  # s / m / l
        wh = np.c_[side, side * rng.uniform(0.6, 1.6, ng)]
        xy = rng.uniform(0, 480, (ng, 2))
        gt = np.round(np.c_[xy, xy + wh], 1)
        gc = rng.integers(0, n_classes, ng)
        crowd = rng.random(ng) < 0.01
        nd = int(rng.poisson(12))
        src = rng.integers(0, max(ng, 1), nd)
        true_like = (rng.random(nd) < 0.6) & (ng > 0)
        rand_xy = rng.uniform(0, 480, (nd, 2))
        rand = np.c_[rand_xy, rand_xy + rng.uniform(8, 200, (nd, 2))]
        if ng:  # a true box moved by ~8% of its size, or a random box
            jitter = gt[src] + rng.normal(0, 0.08, (nd, 4)) * np.tile(wh[src], 2)
            det = np.where(true_like[:, None], jitter, rand)
        else:
            det = rand
        det[:, 2:] = np.maximum(det[:, 2:], det[:, :2] + 1)
        dc = np.where(
            true_like & (rng.random(nd) < 0.9), gc[src] if ng else 0, rng.integers(0, n_classes, nd)
        )
        images.append(
            {
                "gt": gt,
                "gc": gc,
                "crowd": crowd,
                "det": np.round(det, 2),
                "dc": dc,
                "score": rng.random(nd),
            }
        )
    return images


def padded_batches(images: list[dict], batch: int) -> list[tuple[np.ndarray, ...]]:
    """GluonCV-style (B, N, ...) arrays padded with -1, as a validation loader yields."""
    out = []
    for s in range(0, len(images), batch):
        chunk = images[s : s + batch]
        nd = max(1, max(len(im["score"]) for im in chunk))
        ng = max(1, max(len(im["gc"]) for im in chunk))
        pb, pc, ps = (
            -np.ones((len(chunk), nd, 4)),
            -np.ones((len(chunk), nd, 1)),
            -np.ones((len(chunk), nd, 1)),
        )
        gb, gc = -np.ones((len(chunk), ng, 4)), -np.ones((len(chunk), ng, 1))
        gd = np.zeros((len(chunk), ng, 1))
        for i, im in enumerate(chunk):
            n, m = len(im["score"]), len(im["gc"])
            pb[i, :n], pc[i, :n, 0], ps[i, :n, 0] = im["det"], im["dc"], im["score"]
            gb[i, :m], gc[i, :m, 0], gd[i, :m, 0] = im["gt"], im["gc"], im["crowd"]
        out.append((pb, pc, ps, gb, gc, gd))
    return out


# ------------------------------------------------------------------ competitors


class Competitor:
    """``prepare()`` (not measured: imports, building inputs) then ``run()`` -> numbers."""

    def prepare(self) -> None:
        return None

    def run(self) -> np.ndarray:
        raise NotImplementedError


class OursCOCO(Competitor):
    def __init__(self, images: list[dict], n_classes: int):
        self.images, self.n_classes = images, n_classes

    def run(self) -> np.ndarray:
        store = DetectionStore()
        for im in self.images:
            store.add_image(
                im["det"], im["dc"], im["score"], im["gt"], im["gc"], gt_crowd=im["crowd"]
            )
        return coco_from_columns(store.columns(), list(range(self.n_classes))).stats_array()


def coco_dicts(images: list[dict], n_classes: int) -> tuple[dict, list[dict]]:
    """The same data as COCO dicts (x, y, w, h boxes; area = box area)."""
    anns, dets = [], []
    for i, im in enumerate(images):
        g = np.c_[im["gt"][:, :2], im["gt"][:, 2:] - im["gt"][:, :2]]
        for b, c, cr in zip(g.tolist(), im["gc"].tolist(), im["crowd"].tolist(), strict=True):
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": c + 1,
                    "bbox": b,
                    "area": b[2] * b[3],
                    "iscrowd": int(cr),
                }
            )
        d = np.c_[im["det"][:, :2], im["det"][:, 2:] - im["det"][:, :2]]
        for b, c, s in zip(d.tolist(), im["dc"].tolist(), im["score"].tolist(), strict=True):
            dets.append({"image_id": i + 1, "category_id": c + 1, "bbox": b, "score": s})
    gt = {
        "images": [{"id": i + 1, "width": 640, "height": 640} for i in range(len(images))],
        "annotations": anns,
        "categories": [{"id": k + 1, "name": str(k)} for k in range(n_classes)],
    }
    return gt, dets


def pycocotools_setup(gt: dict, dets: list[dict]):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes([dict(d) for d in dets])
        return COCOeval(coco_gt, coco_dt, "bbox")


def faster_setup(gt: dict, dets: list[dict]):
    from faster_coco_eval import COCO, COCOeval_faster

    quiet = lambda *a, **k: None  # noqa: E731
    coco_gt = COCO(print_function=quiet)
    coco_gt.dataset = gt
    coco_gt.createIndex()
    coco_dt = coco_gt.loadRes([dict(d) for d in dets])
    return COCOeval_faster(coco_gt, coco_dt, "bbox", print_function=quiet)


class CocoEval(Competitor):
    """``evaluate() + accumulate()`` measured; the 12 numbers from ``summarize()`` after."""

    def __init__(self, setup: Callable[[], object]):
        self.setup = setup

    def prepare(self) -> None:
        self.ev = self.setup()

    def run(self) -> np.ndarray:
        with contextlib.redirect_stdout(io.StringIO()):
            self.ev.evaluate()
            self.ev.accumulate()
        return np.zeros(0)

    def numbers(self) -> np.ndarray:
        with contextlib.redirect_stdout(io.StringIO()):
            self.ev.summarize()
        return np.asarray(self.ev.stats[:12], dtype=np.float64)


class OursVOC(Competitor):
    def __init__(self, batches, metric: str, n_classes: int):
        self.batches, self.metric, self.n_classes = batches, metric, n_classes

    def run(self) -> np.ndarray:
        m = VOCMetric(0.5, self.metric, class_names=[str(k) for k in range(self.n_classes)])
        for b in self.batches:
            m.update(*b)
        r = m.get()
        return np.array([r.mAP, *[np.nan if c.ap is None else c.ap for c in r.per_class.values()]])


class GluonCVVOC(OursVOC):
    def prepare(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from gluoncv.utils.metrics.voc_detection import VOC07MApMetric, VOCMApMetric
        self.cls = VOC07MApMetric if self.metric == "voc07" else VOCMApMetric

    def run(self) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = self.cls(0.5, [str(k) for k in range(self.n_classes)])
            for b in self.batches:
                m.update(*b)
            _, values = m.get()
        return np.array([values[-1], *values[:-1]])


# ------------------------------------------------------------------ measurement


def _vm(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) * 1024
    return 0


def _child(c: Competitor, conn) -> None:
    c.prepare()
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS mark
    base = _vm("VmRSS:")
    t, cpu = time.perf_counter(), time.process_time()
    values = c.run()
    elapsed, cpu = time.perf_counter() - t, time.process_time() - cpu
    peak = max(0, _vm("VmHWM:") - base)
    if isinstance(c, CocoEval):
        values = c.numbers()
    conn.send((elapsed, cpu, peak, values))
    conn.close()


@dataclass
class Measured:
    wall: float  # best of the runs
    cpu: float  # CPU seconds of the process (all threads) in that run
    peak: float  # largest peak-RSS growth, bytes
    values: np.ndarray


def measure(fn: Competitor, repeat: int) -> Measured:
    """Best wall time of ``repeat`` fresh forked runs, its CPU time, largest memory growth."""
    ctx = mp.get_context("fork")
    best = Measured(float("inf"), 0.0, 0.0, np.zeros(0))
    for _ in range(repeat):
        parent, child = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_child, args=(fn, child))
        p.start()
        elapsed, cpu, mem, values = parent.recv()
        p.join()
        if elapsed < best.wall:
            best = Measured(elapsed, cpu, max(best.peak, mem), values)
        else:
            best.peak = max(best.peak, mem)
    return best


def _diff(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    both_nan = np.isnan(a) & np.isnan(b)
    if (np.isnan(a) != np.isnan(b)).any():
        return float("inf")
    return float(np.max(np.abs(np.where(both_nan, 0, a - b)), initial=0.0))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--classes", type=int, default=80)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3, help="runs of the fast methods (best kept)")
    ap.add_argument("--batch", type=int, default=32, help="images per batch for the VOC metrics")
    ap.add_argument("--skip-pycocotools", action="store_true")
    args = ap.parse_args(argv)

    images = make_data(args.images, args.classes, args.seed)
    n_gt = sum(len(im["gc"]) for im in images)
    n_det = sum(len(im["score"]) for im in images)
    print(
        f"{args.images} images x {args.classes} classes: {n_gt} ground-truth boxes "
        f"({sum(int(im['crowd'].sum()) for im in images)} crowd), {n_det} detections; "
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, numpy {np.__version__}"
    )
    gt, dets = coco_dicts(images, args.classes)
    batches = padded_batches(images, args.batch)

    rows: list[tuple[str, str, Measured | float, float | None]] = []
    ours = measure(OursCOCO(images, args.classes), args.repeat)
    rows.append(("COCO", "ours (numpy; arrays in, 12 numbers out)", ours, None))
    r = measure(CocoEval(lambda: faster_setup(gt, dets)), args.repeat)
    rows.append(("COCO", "faster-coco-eval evaluate+accumulate", r, _diff(r.values, ours.values)))
    t0 = time.perf_counter()
    faster_setup(gt, dets)
    rows.append(("COCO", "  (its COCO + loadRes setup, not above)", time.perf_counter() - t0, None))
    if not args.skip_pycocotools:
        r = measure(CocoEval(lambda: pycocotools_setup(gt, dets)), 1)
        rows.append(("COCO", "pycocotools evaluate+accumulate", r, _diff(r.values, ours.values)))
        t0 = time.perf_counter()
        pycocotools_setup(gt, dets)
        rows.append(
            ("COCO", "  (its COCO + loadRes setup, not above)", time.perf_counter() - t0, None)
        )
    base = {"COCO": ours}
    for metric in ("voc07", "voc"):
        o = measure(OursVOC(batches, metric, args.classes), args.repeat)
        rows.append((metric, f"ours VOCMetric (batches of {args.batch})", o, None))
        r = measure(GluonCVVOC(batches, metric, args.classes), 1)
        name = "VOC07MApMetric" if metric == "voc07" else "VOCMApMetric"
        rows.append((metric, f"GluonCV {name} (same batches)", r, _diff(r.values, o.values)))
        base[metric] = o

    print()
    head = f"{'metric':<7} {'implementation':<42} {'wall s':>7} {'x ours':>7} {'cpu s':>7} {'x ours':>7} {'peak MB':>8} {'max|diff|':>10}"
    print(head)
    print("-" * len(head))
    for metric, name, m, diff in rows:
        b = base[metric]
        if isinstance(m, Measured):
            cells = f"{m.wall:7.3f} {m.wall / b.wall:7.2f} {m.cpu:7.3f} {m.cpu / b.cpu:7.2f} {m.peak / 2**20:8.1f}"
        else:
            cells = f"{m:7.3f} {m / b.wall:7.2f} {'':>7} {'':>7} {'':>8}"
        print(f"{metric:<7} {name:<42} {cells} {'' if diff is None else f'{diff:.1e}':>10}")
    print(
        "\n'x ours' = time / our time for the same metric (> 1: ours is faster); wall = best of "
        "the runs, cpu = that run's process CPU time (robust on a busy machine); peak MB = "
        "growth of the measuring process's peak RSS; max|diff| = largest difference of the "
        "competitor's numbers from ours (12 COCO numbers; VOC mAP and per-class AP)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
