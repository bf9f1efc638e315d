"""A killed conversion leaves nothing behind: its write-engine workers die with it, SIGTERM
removes its ``.part`` files, and after a SIGKILL the next conversion to the same outputs
removes the ``.part`` files no living process holds (real processes, real files)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from process_tree import start, wait_children, wait_gone

from pipeline_lib import storage
from pipeline_lib.recordio import write_engine
from pipeline_lib.recordio.convert import convert_to_recordio
from pipeline_lib.synthetic import SynthConfig, generate

# What the converter does around its write engine (convert._convert_local), with workers
# that block in their first chunk.
CONVERSION = """
import sys, time
from pipeline_lib import storage
from pipeline_lib.recordio import write_engine
def pack(task, arena):
    print("busy", flush=True)
    time.sleep(600)
outputs = [sys.argv[1] + ext for ext in (".lst", ".idx", ".rec")]
write_engine.remove_stale_parts(outputs)
restore = write_engine.sigterm_as_exit()
writers = [storage.atomic_writer(o, durable=False) for o in outputs]
pool = None
try:
    for w in writers:
        write_engine.hold_part(w.fileno())
    pool = write_engine.Workers(2, [0, 1], {"train": writers[2].fileno()}, False, pack)
    for _ in pool.run():
        pass
finally:
    if pool is not None:
        pool.close(ok=False)
    for w in writers:
        w.abort()
    restore()
"""


def _parts(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob(".*.part"))


def _started(prefix: Path):
    proc = start(CONVERSION, str(prefix))
    seen = ""
    while seen.count("busy") < 2:
        line = proc.stdout.readline()
        assert line, "the conversion ended early"
        seen += line
    return proc, wait_children(proc.pid, 2)


def test_sigkill_leaves_no_worker_and_the_next_run_removes_the_parts(tmp_path):
    prefix = tmp_path / "out"
    proc, workers = _started(prefix)
    try:
        assert len(_parts(tmp_path)) == 3
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        assert wait_gone(workers, timeout=5) == []
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(_parts(tmp_path)) == 3  # a SIGKILL cannot clean up ...
    live = storage.atomic_writer(f"{prefix}.rec", durable=False)  # ... a live writer's part
    write_engine.hold_part(live.fileno())
    removed = write_engine.remove_stale_parts([f"{prefix}{e}" for e in (".lst", ".idx", ".rec")])
    assert len(removed) == 3  # ... the next conversion removes the dead ones only
    assert _parts(tmp_path) == [Path(live.tmp).name]
    live.abort()


def test_sigterm_stops_the_workers_and_removes_the_parts(tmp_path):
    proc, workers = _started(tmp_path / "out")
    try:
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(30) == 128 + signal.SIGTERM
        assert wait_gone(workers, timeout=5) == []
    finally:
        if proc.poll() is None:
            proc.kill()
    assert _parts(tmp_path) == []


def test_conversion_removes_stale_parts_of_dead_owners(tmp_path):
    data = tmp_path / "data"
    generate(data, SynthConfig(images=6, classes=2, seed=1))
    prefix = tmp_path / "rec" / "out"
    prefix.parent.mkdir()
    stale = prefix.parent / ".out_train.rec.0123abcd.part"  # as a killed conversion left it
    stale.write_bytes(b"half a record")
    convert_to_recordio(data, prefix, workers=1, progress=False, durable=False)
    assert not stale.exists()
    assert _parts(prefix.parent) == []
    assert (prefix.parent / "out_train.rec").is_file()
