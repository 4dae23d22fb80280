"""The run store as the tracker and the views use it: a real SQLite file under tmp_path."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from carbon_jupyter.errors import StoreError
from carbon_jupyter.model import Run, Sample
from carbon_jupyter.store import (
    RunNotFoundError,
    Store,
    default_db_path,
    open_store,
)
from carbon_jupyter.store import iter_runs as module_iter_runs
from carbon_jupyter.store import runs as module_runs
from tests.test_store_support import INTENSITY, make_run, make_samples


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(tmp_path / "carbon.db")
    yield s
    s.close()


def test_a_finished_run_reads_back_equal(store: Store) -> None:
    run = make_run()
    store.begin_run(make_run(run.id, status="running"))
    store.finish_run(run)
    back = store.get_run(run.id)
    assert back == run
    assert [d.device.method for d in back.devices] == ["nvml-energy", "rapl", "ram-model"]
    assert back.samples == ()


@pytest.mark.parametrize("writer", ["same store", "another process's store"])
def test_a_live_run_shows_the_energy_flushed_so_far(store: Store, writer: str) -> None:
    run = make_run(status="running")
    store.begin_run(run)
    assert store.get_run(run.id).status == "running"
    # The store that began a run flushes from what it remembers; any other (a forwarder,
    # another process) recomputes the totals from the stored device rows. Both agree.
    flusher = store if writer == "same store" else Store(store.path)
    flusher.add_samples(run.id, make_samples(1, 2))
    flusher.add_samples(run.id, make_samples(3, 3))
    if flusher is not store:
        flusher.close()
    live = store.get_run(run.id)
    assert live.status == "running"
    assert live.duration_s == 5.0
    assert live.gpu_energy_j == 1500.0
    assert live.cpu_energy_j == 400.0
    expected_co2 = live.energy_j / 3.6e6 * INTENSITY.pue * INTENSITY.intensity_g_per_kwh
    assert live.co2_g == pytest.approx(expected_co2)
    gpu = next(d for d in live.devices if d.device.device_id == "gpu:0")
    assert gpu.process_energy_j == 750.0
    assert gpu.mean_power_w == pytest.approx(300.0)


def test_samples_are_numbered_without_gaps_for_live_cursors(store: Store) -> None:
    run = make_run(status="running")
    store.begin_run(run)
    store.add_samples(run.id, make_samples(1, 3))
    seen = store.samples(run.id)
    assert len(seen) == 6
    store.add_samples(run.id, make_samples(4, 2))
    new = store.samples(run.id, since_seq=len(seen))
    assert [s.t_s for s in new] == [4.0, 4.0, 5.0, 5.0]
    assert store.last_seq(run.id) == 10
    assert store.samples(run.id, since_seq=10) == []
    assert [s.t_s for s in store.samples(run.id, device_id="cpu:0")] == [1, 2, 3, 4, 5]
    assert new[0] == Sample(4.0, "gpu:0", 300.0, 1200.0, 95.0, 40 * 2**30, 600.0)


def test_finish_adds_samples_that_were_never_flushed(store: Store) -> None:
    run = make_run(status="running")
    store.begin_run(run)
    store.add_samples(run.id, make_samples(1, 3))
    final = make_run(run.id, samples=tuple(make_samples(1, 5)))
    store.finish_run(final)
    assert [s.t_s for s in store.samples(run.id)] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert store.get_run(run.id, samples=True).samples == tuple(store.samples(run.id))


def test_runs_come_newest_first_and_filter_as_documented(store: Store) -> None:
    now = datetime.now(timezone.utc)

    def at(hours_ago: float) -> str:
        return (now - timedelta(hours=hours_ago)).isoformat(timespec="milliseconds")

    old = make_run(started_at=at(48), label="bert-base", phase="train")
    mid = make_run(started_at=at(5), label="bert-large", phase="inference",
                   notebook="/srv/other/eval.ipynb", tags={"dataset": "sst2"})  # fmt: skip
    new = make_run(started_at=at(1), label="resnet", status="error", kernel="k-2",
                   tags={"execution_count": "12"})  # fmt: skip
    for r in (old, mid, new):
        store.finish_run(r)

    def ids(runs: list[Run]) -> list[str]:
        return [r.id for r in runs]

    assert ids(store.runs()) == [new.id, mid.id, old.id]
    assert ids(store.runs(limit=2)) == [new.id, mid.id]
    assert ids(store.runs(label="bert-*")) == [mid.id, old.id]
    assert ids(store.runs(label="bert-base")) == [old.id]
    assert ids(store.runs(phase="inference")) == [mid.id]
    assert ids(store.runs(notebook="train.ipynb")) == [new.id, old.id]
    assert ids(store.runs(notebook="/srv/other/eval.ipynb")) == [mid.id]
    assert ids(store.runs(kernel="k-2")) == [new.id]
    assert ids(store.runs(since="24h")) == [new.id, mid.id]
    assert ids(store.runs(since=timedelta(hours=3))) == [new.id]
    assert ids(store.runs(since=now - timedelta(hours=6))) == [new.id, mid.id]
    assert ids(store.runs(status="error")) == [new.id]
    assert ids(store.runs(status=["ok", "error"])) == [new.id, mid.id, old.id]
    assert ids(store.runs(tag="dataset")) == [mid.id, old.id]
    assert ids(store.runs(tag="dataset=sst2")) == [mid.id]
    assert ids(store.runs(tag={"execution_count": "12"})) == [new.id]
    assert ids(store.runs(label="bert-*", phase="train", since="7d")) == [old.id]


def test_since_that_is_not_a_time_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="since='yesterday-ish'"):
        store.runs(since="yesterday-ish")


def test_iter_runs_streams_what_runs_lists() -> None:
    import carbon_jupyter

    store = open_store()  # the default store, as carbon_jupyter.iter_runs reads it
    for day in range(1, 6):
        label = "sweep-a" if day % 2 else "sweep-b"
        store.finish_run(make_run(label=label, started_at=f"2024-05-0{day}T10:00:00+00:00"))

    def ids(runs: Iterable[Run]) -> list[str]:
        return [r.id for r in runs]

    assert list(store.iter_runs()) == store.runs(limit=None)
    assert ids(store.iter_runs(since="2024-05-02", limit=2)) == ids(store.runs(limit=2))
    assert ids(carbon_jupyter.iter_runs(label="sweep-a")) == ids(store.runs(label="sweep-a"))
    assert ids(module_iter_runs(label="sweep-?", limit=1)) == ids(store.runs(limit=1))
    with pytest.raises(ValueError, match="since='soon'"):
        store.iter_runs(since="soon")  # refused when asked, not at the first run


def test_runs_as_frame_has_one_row_per_run_with_every_column(store: Store) -> None:
    pytest.importorskip("pandas")
    for label in ("a", "b"):
        store.finish_run(make_run(label=label))
    frame = store.runs(as_frame=True)
    assert len(frame) == 2
    assert set(frame["label"]) == {"a", "b"}
    assert frame["execution_count"].tolist() == [7, 7]
    assert frame["hardware"][0]["gpus"] == ["NVIDIA H100 80GB HBM3"]
    assert "python" in frame["versions"][0]
    assert str(frame["started_at"].dt.tz) == "UTC"


def test_get_run_takes_a_unique_prefix_and_says_when_none_matches(store: Store) -> None:
    a = make_run("aaaa1111-0000-0000-0000-000000000000")
    b = make_run("aaaa2222-0000-0000-0000-000000000000")
    store.finish_run(a)
    store.finish_run(b)
    assert store.get_run("aaaa1").id == a.id
    with pytest.raises(RunNotFoundError, match="several runs"):
        store.get_run("aaaa")
    with pytest.raises(RunNotFoundError, match=r"No run with id 'ffff'.*carbon.db") as info:
        store.get_run("ffff")
    assert isinstance(info.value, StoreError)
    assert isinstance(info.value, KeyError)


def test_totals_group_by_label_notebook_phase_and_day(store: Store) -> None:
    store.finish_run(make_run(label="a", phase="train", started_at="2024-05-01T10:00:00+00:00"))
    store.finish_run(make_run(label="a", phase="train", started_at="2024-05-02T10:00:00+00:00"))
    store.finish_run(make_run(label="b", phase="inference", gpu_j=100.0,
                              started_at="2024-05-02T11:00:00+00:00"))  # fmt: skip
    by_label = {t["label"]: t for t in store.totals("label")}
    assert by_label["a"]["count"] == 2
    assert by_label["a"]["energy_j"] == pytest.approx(2 * 3900.0)
    assert by_label["b"]["energy_j"] == pytest.approx(1000.0)
    assert by_label["a"]["duration_s"] == 20.0
    days = store.totals("day")
    assert [(d["day"], d["count"]) for d in days] == [("2024-05-01", 1), ("2024-05-02", 2)]
    assert {t["phase"] for t in store.totals("phase")} == {"train", "inference"}
    assert store.totals("notebook")[0]["count"] == 3
    assert store.totals("label", since="2024-05-02")[0]["count"] == 1
    with pytest.raises(ValueError, match="not one of"):
        store.totals("colour")


def test_timestamps_are_stored_in_utc(store: Store) -> None:
    run = make_run(started_at="2024-05-01T14:00:00.000+02:00")
    store.finish_run(run)
    assert store.get_run(run.id).started_at == "2024-05-01T12:00:00.000+00:00"


def test_threads_write_and_read_at_once(store: Store) -> None:
    run = make_run(status="running")
    store.begin_run(run)
    errors: list[BaseException] = []

    def sampler() -> None:
        try:
            for batch in range(20):
                store.add_samples(run.id, make_samples(batch * 5 + 1, 5))
        except BaseException as exc:
            errors.append(exc)

    def reader() -> None:
        try:
            for _ in range(50):
                store.runs()
                store.samples(run.id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=f, name=f"store-test-{i}")
               for i, f in enumerate((sampler, reader, reader))]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.finish_run(make_run(run.id))
    assert errors == []
    assert store.last_seq(run.id) == 200


def test_file_is_created_owner_only_with_its_folders(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "carbon.db"
    with open_store(path) as s:
        s.finish_run(make_run())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for sidecar in path.parent.glob("carbon.db-*"):
        assert stat.S_IMODE(sidecar.stat().st_mode) == 0o600


def test_default_file_is_under_the_jupyter_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CARBON_JUPYTER_DB")
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "data"))
    expected = tmp_path / "data" / "carbon_jupyter" / "carbon.db"
    assert default_db_path() == expected
    run = make_run()
    open_store().finish_run(run)
    assert expected.exists()
    assert [r.id for r in module_runs()] == [run.id]
    monkeypatch.setenv("CARBON_JUPYTER_DB", str(tmp_path / "elsewhere.db"))
    assert default_db_path() == tmp_path / "elsewhere.db"
    with pytest.raises(StoreError, match="no run store"):
        module_runs()  # reading never creates a store


def test_runs_of_live_processes_and_other_hosts_stay_running(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "carbon.db"
    mine = make_run(status="running")
    theirs = make_run(status="running")
    with open_store(path) as s:
        s.begin_run(mine)
        s.begin_run(theirs)
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(
            "UPDATE runs SET pid_host = 'another-host', pid = 999999999 WHERE id = ?", (theirs.id,)
        )
    conn.close()
    with open_store(path) as s:
        assert s.mark_lost_runs() == []
        assert {r.status for r in s.runs()} == {"running"}


def test_a_run_left_by_a_dead_process_is_lost_with_what_was_flushed(tmp_path: Path) -> None:
    import sqlite3
    import subprocess
    import sys

    path = tmp_path / "carbon.db"
    run = make_run(status="running", started_at="2024-05-01T12:00:00.000+00:00")
    with open_store(path) as s:
        s.begin_run(run)
        s.add_samples(run.id, make_samples(1, 4))
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE runs SET pid = ? WHERE id = ?", (int(gone.stdout), run.id))
    conn.close()
    with open_store(path) as s:
        lost = s.get_run(run.id)
    assert lost.status == "lost"
    assert lost.duration_s == 4.0
    assert lost.ended_at == "2024-05-01T12:00:04.000+00:00"
    assert lost.gpu_energy_j == 1200.0
    assert lost.co2_g == pytest.approx(lost.energy_j / 3.6e6 * 1.2 * 380.0)
    assert "ended before the run finished" in (lost.error or "")


def test_a_failed_write_raises_store_error_and_keeps_what_was_stored(store: Store) -> None:
    kept = make_run()
    store.finish_run(kept)
    run = make_run(status="running")
    store.begin_run(run)
    # Cap the file at its current size: SQLite then reports the disk as full.
    conn = store._conn()
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(StoreError, match=r"disk holding the run store .*carbon.db is full"):
        store.add_samples(run.id, make_samples(1, 5000))
    conn.execute("PRAGMA max_page_count = 1073741823")
    assert store.get_run(kept.id) == kept
    assert store.samples(run.id) == []
    store.add_samples(run.id, make_samples(1, 2))
    assert store.last_seq(run.id) == 4


def test_store_survives_close_and_reuse(tmp_path: Path) -> None:
    s = open_store(tmp_path / "carbon.db")
    s.close()
    run = make_run()
    s.finish_run(run)
    assert s.get_run(run.id) == run
    s.close()
    assert os.path.exists(tmp_path / "carbon.db")
