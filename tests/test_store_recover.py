"""``carbon-jupyter store check`` and ``store recover`` on real damaged files.

Each store is written by the store's own writer (runs with devices and
samples), then damaged on disk: its 100-byte header overwritten, or pages in
the middle of the file overwritten. The commands run as a user runs them, in a
subprocess.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from carbon_jupyter.model import Run
from carbon_jupyter.store import open_store
from tests.test_cli import cli
from tests.test_store_support import make_run, make_samples

RUNS = 6
TICKS = 150  # per run, two devices each: 300 samples a run
PAGE_SIZE = 4096


def write_store(path: Path, runs: int = RUNS) -> dict[str, Run]:
    """A store with ``runs`` finished runs, each with its samples; returns them as stored."""
    written: dict[str, Run] = {}
    with open_store(path) as store:
        for n in range(runs):
            run = make_run(status="running", label=f"run-{n}",
                           started_at=f"2024-05-0{n + 1}T12:00:00.000+00:00")  # fmt: skip
            store.begin_run(run)
            for tick in range(1, TICKS + 1, 50):
                store.add_samples(run.id, make_samples(tick, 50))
            store.finish_run(make_run(run.id, label=f"run-{n}", started_at=run.started_at))
        for run in store.runs(limit=None):
            written[run.id] = store.get_run(run.id, samples=True)
    return written


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def counts(output: str, *, exact: bool = True) -> dict[str, tuple[int, int]]:
    """``{"runs": (copied, lost), ...}`` from the report of ``store recover``.

    ``exact=False`` also accepts a lost count given as a lower bound ("lost at least 5").
    """
    found = {}
    bound = "(?:at least )?" if not exact else ""
    for table in ("runs", "devices", "samples"):
        pattern = rf"^\s*{table}\s+copied ([\d,]+), lost {bound}([\d,]+)$"
        match = re.search(pattern, output, re.M)
        assert match, output
        found[table] = (int(match[1].replace(",", "")), int(match[2].replace(",", "")))
    return found


def sample_pages_near_the_middle(path: Path, count: int) -> list[int]:
    """The numbers of ``count`` pages that hold samples, nearest the middle of the file."""
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        pages = [
            int(row[0])
            for row in conn.execute(
                "SELECT pageno FROM dbstat WHERE name = 'samples' AND pagetype = 'leaf'"
            )
        ]
    except sqlite3.OperationalError:
        pytest.skip("this SQLite has no dbstat table to find the pages of samples with")
    finally:
        conn.close()
    middle = path.stat().st_size // PAGE_SIZE // 2
    return sorted(pages, key=lambda page: abs(page - middle))[:count]


def moved_aside(folder: Path) -> Path:
    pattern = r"carbon\.db\.damaged-\d{8}T\d{6}Z"
    [damaged] = [p for p in folder.iterdir() if re.fullmatch(pattern, p.name)]
    return damaged


def test_check_says_a_healthy_store_is_healthy_with_its_counts(tmp_path: Path) -> None:
    path = tmp_path / "carbon.db"
    write_store(path, runs=2)
    before = digest(path)
    result = cli("store", "check", "--db", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert f"{path}: healthy" in out
    assert re.search(r"^\s*runs\s+2$", out, re.M)
    assert re.search(r"^\s*devices\s+6$", out, re.M)
    assert re.search(r"^\s*samples\s+600$", out, re.M)
    assert re.search(r"^\s*schema\s+version \d+ \(current\)", out, re.M)
    assert re.search(r"^\s*integrity\s+ok", out, re.M)
    assert digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["carbon.db"]


def test_check_says_a_damaged_store_is_damaged_and_how_to_recover(tmp_path: Path) -> None:
    path = tmp_path / "carbon.db"
    write_store(path, runs=2)
    with open(path, "r+b") as f:
        f.write(os.urandom(100))
    before = digest(path)
    result = cli("store", "check", "--db", str(path))
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{path}: damaged" in result.stdout
    assert f"carbon-jupyter store recover --db {path}" in result.stdout
    assert "Traceback" not in result.stderr
    assert digest(path) == before


def test_recover_brings_every_row_back_from_a_store_whose_header_was_overwritten(
    tmp_path: Path,
) -> None:
    path = tmp_path / "carbon.db"
    written = write_store(path)
    with open(path, "r+b") as f:
        f.write(b"\0" * 100)
    before = digest(path)

    result = cli("store", "recover", "--db", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert counts(result.stdout) == {
        "runs": (RUNS, 0), "devices": (3 * RUNS, 0), "samples": (2 * TICKS * RUNS, 0),
    }  # fmt: skip
    damaged = moved_aside(tmp_path)
    assert str(damaged) in result.stdout
    assert digest(damaged) == before  # moved, never changed
    with open_store(path) as fresh:
        for run_id, run in written.items():
            assert fresh.get_run(run_id, samples=True) == run
    assert cli("store", "check", "--db", str(path)).returncode == 0


def test_recover_copies_what_is_readable_around_damage_in_the_middle(tmp_path: Path) -> None:
    path = tmp_path / "carbon.db"
    written = write_store(path)
    with open(path, "r+b") as f:
        for page in sample_pages_near_the_middle(path, 2):
            f.seek((page - 1) * PAGE_SIZE)
            f.write(os.urandom(PAGE_SIZE))
    before = digest(path)
    assert cli("store", "check", "--db", str(path)).returncode == 1

    result = cli("store", "recover", "--db", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    found = counts(result.stdout, exact=False)
    total = {"runs": RUNS, "devices": 3 * RUNS, "samples": 2 * TICKS * RUNS}
    assert found["samples"][1] > 0  # two pages of samples are gone
    for table, (copied, lost) in found.items():
        if re.search(rf"^\s*{table}\s+copied [\d,]+, lost at least", result.stdout, re.M):
            assert copied + lost <= total[table], (table, found)  # the table's end was hit
        else:
            assert copied + lost == total[table], (table, found)
    assert digest(moved_aside(tmp_path)) == before
    with open_store(path) as fresh:
        recovered = fresh.runs(limit=None)
        assert len(recovered) == found["runs"][0]
        for run in recovered:  # what was copied is exactly what was written
            original = written[run.id]
            assert run == replace(original, samples=())
            samples = fresh.samples(run.id)
            assert set(samples) <= set(original.samples)
        assert sum(len(fresh.samples(r.id)) for r in recovered) <= found["samples"][0]
    assert cli("store", "check", "--db", str(path)).returncode == 0


def test_recover_keeps_the_write_ahead_log_and_reads_the_runs_only_it_holds(
    tmp_path: Path,
) -> None:
    live = tmp_path / "live"
    live.mkdir()
    store = open_store(live / "carbon.db")
    try:
        store.finish_run(make_run(label="checkpointed"))
        store.close()  # the last close folds the log into the file
        store.finish_run(make_run(label="in-the-log"))  # stays in carbon.db-wal while open
        crashed = tmp_path / "crashed"
        crashed.mkdir()
        for name in ("carbon.db", "carbon.db-wal", "carbon.db-shm"):
            shutil.copy(live / name, crashed / name)  # as a machine crash would leave them
    finally:
        store.close()
    path = crashed / "carbon.db"
    assert (crashed / "carbon.db-wal").stat().st_size > 0
    with open(path, "r+b") as f:
        f.write(b"\xff" * 100)
    wal_before = digest(crashed / "carbon.db-wal")

    result = cli("store", "recover", "--db", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert counts(result.stdout)["runs"] == (2, 0)
    damaged = moved_aside(crashed)
    assert digest(Path(f"{damaged}-wal")) == wal_before
    assert Path(f"{damaged}-shm").exists()
    with open_store(path) as fresh:
        assert sorted(r.label or "" for r in fresh.runs()) == ["checkpointed", "in-the-log"]


def test_recover_leaves_a_healthy_store_alone(tmp_path: Path) -> None:
    path = tmp_path / "carbon.db"
    write_store(path, runs=1)
    before = digest(path)
    result = cli("store", "recover", "--db", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "healthy" in result.stdout and "nothing to recover" in result.stdout
    assert digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["carbon.db"]


def test_check_and_recover_refuse_a_file_that_is_no_sqlite_database_at_all(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a database\n" * 500)
    before = digest(path)
    result = cli("store", "recover", "--db", str(path))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "does not look like an SQLite database" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    assert digest(path) == before
    checked = cli("store", "check", "--db", str(path))
    assert checked.returncode == 2
    assert "does not look like an SQLite database" in checked.stderr


def test_recover_of_a_store_whose_tables_are_all_unreadable_gives_a_fresh_store(
    tmp_path: Path,
) -> None:
    path = tmp_path / "carbon.db"
    write_store(path, runs=2)
    with open(path, "r+b") as f:
        f.seek(100)
        f.write(b"\x0d" + b"\0" * 7)  # page 1 now lists no tables at all
    result = cli("store", "recover", "--db", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert counts(result.stdout)["runs"] == (0, 0)
    assert "nothing could be read" in result.stdout
    assert moved_aside(tmp_path).stat().st_size > 0
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone() == (0,)
    finally:
        conn.close()
