"""Several processes on one store file: concurrent writers and readers, a killed writer."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from carbon_jupyter.store import open_store
from tests.test_store_support import python_env

WRITERS = 8
RUNS_PER_WRITER = 20
BATCHES = 5
TICKS_PER_BATCH = 5  # two devices a tick: 10 samples a batch, 50 a run

WRITER = f"""
import sys
from carbon_jupyter.store import open_store
from tests.test_store_support import make_run, make_samples

path, writer = sys.argv[1], int(sys.argv[2])
store = open_store(path)
for n in range({RUNS_PER_WRITER}):
    run_id = f"{{writer:02d}}-{{n:03d}}-" + "0" * 20
    store.begin_run(make_run(run_id, status="running", label=f"writer-{{writer}}"))
    for batch in range({BATCHES}):
        store.add_samples(run_id, make_samples(batch * {TICKS_PER_BATCH} + 1, {TICKS_PER_BATCH}))
    store.finish_run(make_run(run_id, label=f"writer-{{writer}}"))
store.close()
"""

READER = """
import os, sys
from carbon_jupyter.store import open_store

path, stop = sys.argv[1], sys.argv[2]
store = open_store(path)
loops = 0
while not os.path.exists(stop) or loops < 3:
    for run in store.runs(limit=50):
        store.samples(run.id)
    store.totals("label")
    loops += 1
print(loops)
"""


def _spawn(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        env=python_env(),
        cwd=str(Path(__file__).resolve().parents[1]),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_eight_writers_and_a_reader_share_one_new_file(tmp_path: Path) -> None:
    path = tmp_path / "carbon.db"
    stop = tmp_path / "writers-done"
    reader = _spawn(READER, str(path), str(stop))
    writers = [_spawn(WRITER, str(path), str(n)) for n in range(WRITERS)]
    results = [(w.wait(timeout=90), *w.communicate()) for w in writers]
    stop.touch()
    reader_rc = reader.wait(timeout=60)
    reader_out, reader_err = reader.communicate()
    for rc, _out, err in results:
        assert rc == 0, err
        assert "locked" not in err
    assert reader_rc == 0, reader_err
    assert int(reader_out) >= 3

    with open_store(path) as store:
        runs = store.runs(limit=None)
        assert len(runs) == WRITERS * RUNS_PER_WRITER
        assert {r.status for r in runs} == {"ok"}
        per_run = BATCHES * TICKS_PER_BATCH * 2
        for run in runs:
            assert len(store.samples(run.id)) == store.last_seq(run.id) == per_run
        assert {t["label"]: t["count"] for t in store.totals("label")} == {
            f"writer-{n}": RUNS_PER_WRITER for n in range(WRITERS)
        }
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT COUNT(*), COUNT(DISTINCT run_id) FROM samples").fetchone() == (
        WRITERS * RUNS_PER_WRITER * per_run,
        WRITERS * RUNS_PER_WRITER,
    )
    conn.close()


KILLED = """
import sys, time
from carbon_jupyter.store import open_store
from tests.test_store_support import make_run, make_samples

path, run_id = sys.argv[1], sys.argv[2]
store = open_store(path)
store.begin_run(make_run(run_id, status="running", started_at="2024-05-01T12:00:00.000+00:00"))
tick = 1
while True:
    store.add_samples(run_id, make_samples(tick, 2, interval_s=0.5))
    tick += 2
    time.sleep(0.2)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_killed_writer_keeps_its_flushed_samples_and_is_marked_lost(tmp_path: Path) -> None:
    path = tmp_path / "carbon.db"
    run_id = "dead0000-0000-0000-0000-000000000000"
    child = _spawn(KILLED, str(path), run_id)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if path.exists():
                with open_store(path) as watcher:
                    if watcher.runs() and watcher.last_seq(run_id) >= 12:
                        assert watcher.get_run(run_id).status == "running"
                        break
            assert child.poll() is None, child.communicate()[1]
            time.sleep(0.1)
        else:
            pytest.fail("the child never flushed its samples")
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        child.communicate()

    conn = sqlite3.connect(path)
    flushed = conn.execute(
        "SELECT COUNT(*), MAX(t_s) FROM samples WHERE run_id = ?", (run_id,)
    ).fetchone()
    last_gpu_j = conn.execute(
        "SELECT energy_j FROM samples WHERE run_id = ? AND device_id = 'gpu:0' "
        "ORDER BY seq DESC LIMIT 1",
        (run_id,),
    ).fetchone()[0]
    conn.close()
    count, last_t_s = flushed
    assert count >= 12

    with open_store(path) as store:
        run = store.get_run(run_id, samples=True)
    assert run.status == "lost"
    assert len(run.samples) == count
    assert run.duration_s == last_t_s
    assert run.gpu_energy_j == last_gpu_j == pytest.approx(300.0 * last_t_s)
    assert run.cpu_energy_j == pytest.approx(80.0 * last_t_s)
    assert run.energy_j == pytest.approx(run.gpu_energy_j + run.cpu_energy_j)
    assert run.co2_g == pytest.approx(run.energy_j / 3.6e6 * 1.2 * 380.0)
    assert run.ended_at is not None
    from datetime import datetime

    ended = datetime.fromisoformat(run.ended_at) - datetime.fromisoformat(run.started_at)
    assert ended.total_seconds() == pytest.approx(last_t_s, abs=0.001)
    assert f"pid {child.pid}" in (run.error or "")
