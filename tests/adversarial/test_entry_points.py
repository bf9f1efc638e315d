"""Every ``odp`` entry point over every hostile input of the corpus, as a real subprocess.

Each run is bounded: address space (``RLIMIT_AS``, :data:`MEMORY_LIMIT`), file size
(``RLIMIT_FSIZE``) and wall-clock time. What must hold for every (case, entry point):

* exit code 1 or 2 (``refuse_or_warn`` cases: or 0 with a warning naming the input);
* nothing deleted or changed: every file that existed before the run (the marker outside
  included) is still there with the same size and modification time;
* stderr's last line is ``odp <command>: error: ...`` naming the input, and no traceback;
* the marker outside the dataset appears in no output file, stdout or stderr;
* nothing left behind: no ``.part`` file, nothing new in ``TMPDIR``, no live process in
  the command's process group, nothing created where a hostile archive aimed;
* done within the time bound.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from corpus import (
    CASES,
    CONVERT_JSON,
    CONVERT_MANIFEST,
    CONVERT_RECORDIO,
    EVALUATE,
    IMPORT_COCO,
    IMPORT_VOC,
    MAP,
    PREDICT,
    REGISTER,
    TRAIN,
    VALIDATE,
    Case,
    CaseUnavailable,
    Workspace,
    first_json,
    secret_jpeg,
)
from training_job import hyperparameters

from pipeline_lib.annotations import annotation_channel
from pipeline_lib.manifest import dataset_to_manifest
from pipeline_lib.synthetic import SynthConfig, generate
from pipeline_lib.training.contract import prepare_ml_root

REPO_ROOT = Path(__file__).resolve().parents[2]

# A normal `odp train` of the tiny job peaks at about 1.9 GiB of address space (MXNet maps
# large arenas up front; measured with this suite's baseline run); the rest stay far below.
MEMORY_LIMIT = 4 << 30
FILE_SIZE_LIMIT = 256 << 20  # no output of these tiny inputs comes near; a bomb would
# Wall-clock bounds, with room for CONCURRENCY runs sharing 2 cores (alone: training ~6 s,
# evaluate/predict ~4 s, the rest ~1 s).
TIME_LIMIT = {TRAIN: 40, EVALUATE: 30, PREDICT: 30, REGISTER: 30}
DEFAULT_TIME_LIMIT = 15
CONCURRENCY = 3

# (case, entry point) pairs allowed to fail: none. Every entry point refuses every case that
# targets it; add a pair here only as a strict xfail naming an open issue.
XFAIL: dict[tuple[str, str], str] = {}


# ------------------------------------------------------------------ the base workspace


# The limits are set by a tiny wrapper that then execs the CLI: preexec_fn is not safe with
# the threads that run the matrix concurrently.
_LIMITED = (
    "import os, resource, sys\n"
    f"resource.setrlimit(resource.RLIMIT_AS, ({MEMORY_LIMIT}, {MEMORY_LIMIT}))\n"
    f"fsize = int(os.environ.get('ODP_TEST_FSIZE') or {FILE_SIZE_LIMIT})\n"
    "resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))\n"
    "resource.setrlimit(resource.RLIMIT_CORE, (0, 0))\n"
    "os.execv(sys.executable, [sys.executable, '-m', 'pipeline_lib.cli', *sys.argv[1:]])\n"
)


def _env(ws_root: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "ODP_"))}
    env.update(
        PYTHONPATH=os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "plugins")]),
        TMPDIR=str(ws_root / "tmp"),
        MPLCONFIGDIR=str(ws_root / "mpl"),
        ODP_HOME=str(ws_root / "home"),
        MLFLOW_TRACKING_URI=f"sqlite:///{ws_root / 'mlflow.db'}",
        OMP_NUM_THREADS="1",
        PYTHONWARNINGS="ignore",
    )
    env.update(extra or {})
    return env


def _odp(argv: list[str], env: dict[str, str], timeout: float, cwd: Path):
    """Run ``odp argv`` bounded; ``(returncode, stdout, stderr, seconds, pgid_alive)``."""
    started = time.monotonic()
    proc = subprocess.Popen(  # noqa: S603  our own CLI, argv built by this test
        [sys.executable, "-c", _LIMITED, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=cwd,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    seconds = time.monotonic() - started
    try:
        os.killpg(proc.pid, 0)
        alive = True
    except ProcessLookupError:
        alive = False
    if alive:
        time.sleep(0.5)  # a worker may still be on its way out
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            alive = False
    return (
        proc.returncode,
        out.decode(errors="replace"),
        err.decode(errors="replace"),
        seconds,
        alive,
    )


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid workspace: dataset, trained model.tar.gz, manifest, VOC and COCO sources,
    detection files. Each test copies it."""
    root = tmp_path_factory.mktemp("adversarial-base")
    generate(root / "dataset", SynthConfig(images=10, classes=2, seed=3, max_objects=2))
    (root / "outside").mkdir()
    for name in ("tmp", "mpl", "home"):
        (root / name).mkdir()
    _train_model(root)
    dataset_to_manifest(root / "dataset", root / "manifest.jsonl")
    _voc_source(root)
    _coco_source(root)
    _detections(root)
    return root


def _train_model(root: Path) -> None:
    """The model every model-reading case starts from: one epoch of the tiny job, through
    `odp train` under the same limits (so the memory bound is measured, not assumed)."""
    from pipeline_lib.artifact import package

    ml = root / "baseline-ml"
    n = len(list((root / "dataset" / "train_annotation").glob("*.json")))
    channels = {
        c: root / "dataset" / c
        for c in ("train", "validation", "train_annotation", "validation_annotation")
    }
    prepare_ml_root(ml, channels, hyperparameters(epochs=1, num_training_samples=n))
    rc, out, err, seconds, alive = _odp(["train", "--ml-root", str(ml)], _env(root), 240, root)
    assert rc == 0 and not alive, err[-3000:]
    package(ml / "model", root / "model.tar.gz")
    shutil.rmtree(ml)
    shutil.rmtree(root / "tmp")
    (root / "tmp").mkdir()


def _voc_source(root: Path) -> None:
    voc = root / "voc"
    (voc / "Annotations").mkdir(parents=True)
    (voc / "JPEGImages").mkdir()
    for path in sorted((root / "dataset" / "train_annotation").glob("*.json")):
        ann = json.loads(path.read_text())
        size = ann["image_size"][0]
        shutil.copy(root / "dataset" / "train" / ann["file"], voc / "JPEGImages" / ann["file"])
        objects = "".join(
            f"<object><name>c{b['class_id']}</name><difficult>0</difficult><bndbox>"
            f"<xmin>{int(b['left']) + 1}</xmin><ymin>{int(b['top']) + 1}</ymin>"
            f"<xmax>{int(b['left'] + b['width'])}</xmax><ymax>{int(b['top'] + b['height'])}"
            f"</ymax></bndbox></object>"
            for b in ann["annotations"]
        )
        (voc / "Annotations" / f"{path.stem}.xml").write_text(
            f"<annotation><filename>{ann['file']}</filename><size><width>{size['width']}"
            f"</width><height>{size['height']}</height><depth>3</depth></size>{objects}"
            f"</annotation>"
        )


def _coco_source(root: Path) -> None:
    coco_dir = root / "coco"
    (coco_dir / "images").mkdir(parents=True)
    images, annotations = [], []
    for i, path in enumerate(sorted((root / "dataset" / "train_annotation").glob("*.json"))):
        ann = json.loads(path.read_text())
        size = ann["image_size"][0]
        shutil.copy(root / "dataset" / "train" / ann["file"], coco_dir / "images" / ann["file"])
        images.append(
            {
                "id": i + 1,
                "file_name": ann["file"],
                "width": size["width"],
                "height": size["height"],
            }
        )
        for b in ann["annotations"]:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": b["class_id"] + 1,
                    "bbox": [b["left"], b["top"], b["width"], b["height"]],
                    "area": b["width"] * b["height"],
                    "iscrowd": 0,
                }
            )
    categories = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    coco = {"images": images, "annotations": annotations, "categories": categories}
    (coco_dir / "instances_train.json").write_text(json.dumps(coco))


def _detections(root: Path) -> None:
    dets = root / "dets"
    dets.mkdir()
    for path in sorted((root / "dataset" / annotation_channel("validation")).glob("*.json")):
        ann = json.loads(path.read_text())
        found = [{**b, "score": 0.9} for b in ann["annotations"]]
        body = {"file": ann["file"], "image_size": ann["image_size"], "annotations": found}
        (dets / path.name).write_text(json.dumps(body))


# ------------------------------------------------------------------ one run


def _workspace(base: Path, dest: Path) -> Workspace:
    shutil.copytree(base, dest, symlinks=True)
    marker = f"ODP-SECRET-{uuid.uuid4().hex}".encode()
    ws = Workspace(root=dest, marker=marker, model=dest / "model.tar.gz")
    ws.secret.write_bytes(secret_jpeg(marker))
    return ws


def _argv(target: str, ws: Workspace) -> list[str]:
    out = ws.out
    if target == VALIDATE:
        report = ["--report", str(out / "report"), "--no-great-expectations"]
        return ["validate", str(ws.dataset), "--workers", "1", *report]
    if target == CONVERT_RECORDIO:
        return ["convert", "recordio", str(ws.dataset), str(out / "data"), "--workers", "1"]
    if target == CONVERT_MANIFEST:
        # a manifest lives in or above the folder its local source-refs point into
        return ["convert", "manifest", str(ws.dataset), str(ws.out.parent / "train.jsonl")]
    if target == CONVERT_JSON:
        return ["convert", "json", str(ws.manifest), str(out / "ds")]
    if target == IMPORT_VOC:
        return ["import", "voc", str(ws.voc), str(out / "ds")]
    if target == IMPORT_COCO:
        return ["import", "coco", str(ws.coco_json), str(out / "ds")]
    if target == TRAIN:
        return ["train", "--ml-root", str(_ml_root(ws))]
    if target == EVALUATE:
        return ["evaluate", str(ws.model), str(ws.dataset), str(out / "eval")]
    if target == MAP:
        return ["map", str(ws.dataset), str(ws.root / "dets")]
    if target == PREDICT:
        image = ws.image or ws.dataset / "validation" / first_json(ws, "validation")[1]["file"]
        output = [str(ws.predict_output)] if ws.predict_output else []
        return ["predict", str(ws.model), str(image), *output]
    if target == REGISTER:
        return ["register", str(ws.model), "--name", "adversarial"]
    raise AssertionError(target)


def _ml_root(ws: Workspace) -> Path:
    ml = ws.root / "ml"
    n = len(list((ws.dataset / "train_annotation").glob("*.json")))
    channels = {
        c: ws.dataset / c
        for c in ("train", "validation", "train_annotation", "validation_annotation")
    }
    if ws.model_channel is not None:
        channels["model"] = ws.model_channel
    hp = hyperparameters(**{"epochs": 1, "num_training_samples": n, **ws.hp_over})
    paths = prepare_ml_root(ml, channels, hp)
    if ws.hp_text is not None:
        (paths.config / "hyperparameters.json").write_text(ws.hp_text)
    if ws.hp_fifo:
        (paths.config / "hyperparameters.json").unlink()
        os.mkfifo(paths.config / "hyperparameters.json")
    return ml


def _output_files(ws: Workspace) -> list[Path]:
    """Every regular file under the workspace that a command may have written (the marker's
    own folder excepted; symlinks not followed)."""
    found = []
    for folder, dirs, files in os.walk(ws.root):
        if Path(folder) == ws.outside:
            dirs[:] = []
            continue
        for name in files:
            path = Path(folder, name)
            if stat.S_ISREG(path.lstat().st_mode):
                found.append(path)
    return found


# State a command may change (scratch, caches, the tracking store): not the user's files.
_MUTABLE = ("tmp", "mpl", "home", "mlflow.db")


def _snapshot(ws: Workspace) -> dict[Path, tuple[int, int]]:
    """(size, mtime) of every file and symlink under the workspace but its mutable state."""
    found = {}
    for folder, dirs, files in os.walk(ws.root):
        if Path(folder) == ws.root:
            dirs[:] = [d for d in dirs if d not in _MUTABLE]
        for name in files:
            path = Path(folder, name)
            if Path(folder) == ws.root and name.startswith(_MUTABLE):
                continue
            st = path.lstat()
            found[path] = (st.st_size, st.st_mtime_ns)
    return found


def _assert_nothing_lost(run: Run) -> None:
    lost = []
    for path, before in run.snapshot.items():
        try:
            st = path.lstat()
        except FileNotFoundError:
            lost.append(f"{path} (deleted)")
            continue
        if (st.st_size, st.st_mtime_ns) != before:
            lost.append(f"{path} (changed)")
    assert not lost, f"the command deleted or changed files it did not own: {lost[:5]}"


def _assert_contained(ws: Workspace, texts: list[str], before: set[Path]) -> None:
    for text in texts:
        assert ws.marker.decode() not in text, "the marker outside the dataset was printed"
    for path in _output_files(ws):
        if path in before:
            continue
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                assert ws.marker not in chunk, f"the marker outside the dataset is in {path}"


@dataclass
class Run:
    """One entry point over one case: the workspace and what the command did."""

    case: Case
    target: str
    ws: Workspace | None = None
    names: tuple[str, ...] = ()
    argv: list[str] = field(default_factory=list)
    before: set[Path] = field(default_factory=set)
    snapshot: dict[Path, tuple[int, int]] = field(default_factory=dict)
    limit: float = DEFAULT_TIME_LIMIT
    rc: int | None = None
    out: str = ""
    err: str = ""
    seconds: float = 0.0
    alive: bool = False
    skip: str | None = None

    @property
    def context(self) -> str:
        return f"odp {' '.join(self.argv)} -> exit {self.rc}\nstderr tail: {self.err[-1500:]}"


def _execute(case: Case, target: str, base: Path, dest: Path) -> Run:
    run = Run(case, target, limit=TIME_LIMIT.get(target, DEFAULT_TIME_LIMIT))
    ws = run.ws = _workspace(base, dest)
    try:
        run.names = case.build(ws)
    except CaseUnavailable as exc:
        run.skip = str(exc)
        return run
    run.argv = [*_argv(target, ws), *ws.extra_args]
    run.before = set(_output_files(ws))
    run.snapshot = _snapshot(ws)
    run.rc, run.out, run.err, run.seconds, run.alive = _odp(
        run.argv, _env(ws.root, ws.env), run.limit, ws.root
    )
    return run


def _check(run: Run) -> None:
    ws, err, out, context = run.ws, run.err, run.out, run.context
    assert run.seconds < run.limit, f"still running after {run.limit} s (killed): {context}"
    assert "Traceback" not in err, context
    last = next((line for line in reversed(err.splitlines()) if line.strip()), "")
    rc_ok = run.rc == 0 and run.case.outcome == "refuse_or_warn"
    warned = rc_ok and "warn" in (out + err).lower()
    if warned:
        assert any(n in out + err for n in run.names), context
    else:
        assert run.rc in (1, 2), context
        assert last.startswith(f"odp {run.target}: error: "), context
        assert any(n in last for n in run.names), f"the line names none of {run.names}: {context}"
    _assert_contained(ws, [out, err], run.before)
    _assert_nothing_lost(run)
    leftovers = [p for p in _output_files(ws) if ".part" in p.name]
    assert not leftovers, f"left behind: {leftovers}"
    assert not list((ws.root / "tmp").iterdir()), f"scratch left in TMPDIR: {context}"
    assert not [p for p in ws.must_not_exist if os.path.lexists(p)], context
    assert not run.alive, f"processes outlived the command: {context}"


_SLOW_FIRST = {TRAIN: 0, REGISTER: 1, EVALUATE: 2, PREDICT: 3}


@pytest.fixture(scope="module")
def runs(
    request: pytest.FixtureRequest, base: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Future]:
    """Every selected (case, entry point) run, CONCURRENCY at a time (most of a hostile run
    is waiting: on a FIFO, a closed port, a time limit)."""
    selected = [
        (item.callspec.params["case"], item.callspec.params["target"])
        for item in request.session.items
        if getattr(item, "originalname", "") == "test_entry_point_refuses_hostile_input"
    ]
    selected.sort(key=lambda ct: _SLOW_FIRST.get(ct[1], 9))
    pool = ThreadPoolExecutor(CONCURRENCY)
    futures = {
        f"{c.name}-{t}": pool.submit(_execute, c, t, base, tmp_path_factory.mktemp(c.name) / "ws")
        for c, t in selected
    }
    yield futures
    pool.shutdown(wait=True)


def _params() -> list:
    params = []
    for case in CASES:
        for target in case.targets:
            marks = []
            owner = XFAIL.get((case.name, target))
            if owner:
                marks.append(pytest.mark.xfail(strict=True, reason=owner))
            params.append(pytest.param(case, target, id=f"{case.name}-{target}", marks=marks))
    return params


@pytest.mark.parametrize(("case", "target"), _params())
def test_entry_point_refuses_hostile_input(case: Case, target: str, runs: dict[str, Future]):
    run = runs[f"{case.name}-{target}"].result()
    if run.skip:
        pytest.skip(run.skip)
    _check(run)


def test_the_corpus_covers_every_issue_class_and_entry_point() -> None:
    classes = {c.issue for c in CASES}
    assert classes >= {"outside", "exhaust", "wrong", "traceback", "dataloss"}  # leftovers: all
    assert set(XFAIL) <= {(c.name, t) for c in CASES for t in c.targets}, "stale xfail"
    targets = {t for c in CASES for t in c.targets}
    assert targets == {
        VALIDATE, CONVERT_RECORDIO, CONVERT_MANIFEST, CONVERT_JSON, IMPORT_VOC, IMPORT_COCO,
        TRAIN, EVALUATE, MAP, PREDICT, REGISTER,
    }  # fmt: skip


def test_a_valid_workspace_passes_every_entry_point(base: Path, tmp_path: Path) -> None:
    """The corpus is hostile, not the harness: the untouched workspace succeeds everywhere
    under the same limits (only the cheap entry points, training ran in ``base``)."""
    ws = _workspace(base, tmp_path / "ws")
    for target in (VALIDATE, CONVERT_RECORDIO, CONVERT_MANIFEST, CONVERT_JSON, MAP):
        rc, out, err, _, alive = _odp(_argv(target, ws), _env(ws.root), 60, ws.root)
        assert rc == 0 and not alive, f"{target}: {err[-2000:]}"
    assert not list((ws.root / "tmp").iterdir())


# ------------------------------------------------------------------ a disk that fills up
#
# A real small file system: a tmpfs of a few hundred KB mounted for the test (when the
# tests run as root). Where mounting is not allowed they fall back to RLIMIT_FSIZE (a
# real kernel limit, per file: EFBIG instead of ENOSPC) and the predict case, whose files
# are small, is skipped. Each case: one line, exit 1, the earlier output left whole, no
# ``.part`` and nothing in TMPDIR.


@contextlib.contextmanager
def _small_disk(path: Path, size: int) -> Iterator[bool]:
    """A tmpfs of ``size`` bytes at ``path`` (True), or False where mounting is refused."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(  # noqa: S603  fixed argv
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],  # noqa: S607
            check=True,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError):
        yield False
        return
    try:
        yield True
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)  # noqa: S603,S607


def _fill(folder: Path, leave: int) -> None:
    """Fill the file system of ``folder`` until ``leave`` bytes are free."""
    free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
    if free > leave:
        with open(folder / "filler", "wb") as f:
            f.write(b"\0" * (free - leave))


def _digests(folder: Path) -> dict[str, str]:
    import hashlib

    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "filler"
    }


def _one_line_failure(rc: int, err: str, command: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 1 and "Traceback" not in err, err[-2000:]
    assert lines[-1].startswith(f"odp {command}: error: "), err[-2000:]
    assert "No space left on device" in lines[-1] or "File too large" in lines[-1], lines[-1]


def test_disk_full_conversion_keeps_the_earlier_output(base: Path, tmp_path: Path) -> None:
    ws = _workspace(base, tmp_path / "ws")
    disk = tmp_path / "disk"
    prefix = disk / "data"
    argv = ["convert", "recordio", str(ws.dataset), str(prefix), "--workers", "1"]
    data = sum(p.stat().st_size for p in ws.dataset.rglob("*") if p.is_file())
    with _small_disk(disk, 3 * data // 2 + (64 << 10)) as mounted:
        rc, _, err, _, _ = _odp(argv, _env(ws.root), 60, ws.root)
        assert rc == 0, err[-2000:]
        before = _digests(disk)
        size = (prefix.parent / "data_train.rec").stat().st_size
        env = _env(ws.root, None if mounted else {"ODP_TEST_FSIZE": str(size // 2)})
        if mounted:
            _fill(disk, size // 2)
        rc, _, err, _, alive = _odp([*argv, "--overwrite"], env, 60, ws.root)
        _one_line_failure(rc, err, "convert recordio")
        assert _digests(disk) == before and not alive
        assert not [p for p in disk.iterdir() if ".part" in p.name]
    assert not list((ws.root / "tmp").iterdir())


def test_disk_full_predict_keeps_the_earlier_output(base: Path, tmp_path: Path) -> None:
    ws = _workspace(base, tmp_path / "ws")
    disk = tmp_path / "disk"
    out = disk / "pred"
    argv = ["predict", str(ws.model), str(ws.dataset / "validation"), str(out)]
    with _small_disk(disk, 256 << 10) as mounted:
        if not mounted:
            pytest.skip("no tmpfs here (not root): predict's small files fit any RLIMIT_FSIZE")
        rc, _, err, _, _ = _odp(argv, _env(ws.root), 60, ws.root)
        assert rc == 0, err[-2000:]
        before = _digests(disk)
        _fill(disk, 1024)
        rc, _, err, _, alive = _odp([*argv, "--overwrite"], _env(ws.root), 60, ws.root)
        _one_line_failure(rc, err, "predict")
        assert _digests(disk) == before and not alive
        assert sorted(p.name for p in disk.iterdir()) == ["filler", "pred"]  # no .part
    assert not list((ws.root / "tmp").iterdir())


_PACKAGE = """
import sys
from pipeline_lib.artifact import package
package(sys.argv[1], sys.argv[2])
"""

_CHECKPOINT = """
import sys
import mxnet as mx
from pipeline_lib.training.checkpoints import Checkpointer, LoopState
net = mx.gluon.nn.Dense(int(sys.argv[2]), in_units=64)
net.initialize()
trainer = mx.gluon.Trainer(net.collect_params(), "adam")
Checkpointer(sys.argv[1]).save(net, trainer, LoopState(epoch=int(sys.argv[3])))
"""


def _script(code: str, args: list[str], root: Path, fsize: int | None = None):
    env = _env(root, {"ODP_TEST_FSIZE": str(fsize)} if fsize else None)
    limited = _LIMITED.replace(
        "os.execv(sys.executable, [sys.executable, '-m', 'pipeline_lib.cli', *sys.argv[1:]])",
        "os.execv(sys.executable, [sys.executable, '-c', *sys.argv[1:]])",
    )
    return subprocess.run(  # noqa: S603  this interpreter and a test script
        [sys.executable, "-c", limited, code, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        timeout=120,
        check=False,
    )


def test_disk_full_packaging_keeps_the_earlier_archive(base: Path, tmp_path: Path) -> None:
    import tarfile

    model_dir = tmp_path / "model"
    with tarfile.open(base / "model.tar.gz") as tar:
        tar.extractall(model_dir, filter="data")
    disk = tmp_path / "disk"
    with _small_disk(disk, 2 * (base / "model.tar.gz").stat().st_size) as mounted:
        shutil.copy(base / "model.tar.gz", disk / "model.tar.gz")
        before = _digests(disk)
        if mounted:
            _fill(disk, 64 << 10)
        fsize = None if mounted else 64 << 10
        out = _script(_PACKAGE, [str(model_dir), str(disk / "model.tar.gz")], tmp_path, fsize)
        assert out.returncode != 0
        assert "No space left on device" in out.stderr or "File too large" in out.stderr
        assert _digests(disk) == before
        assert sorted(p.name for p in disk.iterdir()) == (
            ["filler", "model.tar.gz"] if mounted else ["model.tar.gz"]
        )


def test_disk_full_checkpoint_keeps_the_earlier_one(tmp_path: Path) -> None:
    """The three files of a checkpoint are one commit: a disk that fills up while the new one
    is written leaves the previous weights, optimizer state and loop state together."""
    (tmp_path / "tmp").mkdir()
    disk = tmp_path / "disk"
    with _small_disk(disk, 2 << 20) as mounted:
        ckpt = disk / "checkpoints"
        out = _script(_CHECKPOINT, [str(ckpt), "8", "3"], tmp_path)
        assert out.returncode == 0, out.stderr[-2000:]
        before = _digests(ckpt)
        if mounted:
            _fill(disk, 40 << 10)  # room for the new weights, not for the optimizer state too
        fsize = None if mounted else 40 << 10
        out = _script(_CHECKPOINT, [str(ckpt), "128", "4"], tmp_path, fsize)
        assert out.returncode != 0
        assert "No space left on device" in out.stderr or "File too large" in out.stderr
        assert _digests(ckpt) == before
        assert json.loads((ckpt / "state.json").read_text())["epoch"] == 3
        assert sorted(p.name for p in ckpt.iterdir()) == [
            "last.params",
            "last.states",
            "state.json",
        ]
