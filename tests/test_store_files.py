"""Files the store must not harm: old schemas, newer schemas, foreign, damaged, unwritable."""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from carbon_jupyter.errors import StoreError
from carbon_jupyter.store import open_store
from tests.test_store_support import make_run, make_samples

# The first schema, frozen as it was released, to check that upgrades keep every row.
V1_SCHEMA = """
CREATE TABLE runs (
    id TEXT PRIMARY KEY, label TEXT, phase TEXT, items INTEGER, status TEXT NOT NULL,
    started_at TEXT NOT NULL, ended_at TEXT, duration_s REAL NOT NULL DEFAULT 0,
    attribution TEXT NOT NULL DEFAULT 'device', energy_j REAL NOT NULL DEFAULT 0,
    cpu_energy_j REAL NOT NULL DEFAULT 0, gpu_energy_j REAL NOT NULL DEFAULT 0,
    ram_energy_j REAL NOT NULL DEFAULT 0, co2_g REAL NOT NULL DEFAULT 0,
    intensity_g_per_kwh REAL, intensity_source TEXT, intensity_year INTEGER,
    intensity_key TEXT, intensity_chosen_by TEXT, pue REAL, pue_source TEXT, notebook TEXT,
    cell TEXT, kernel TEXT, user TEXT, host TEXT, error TEXT, tags TEXT
);
CREATE TABLE devices (
    run_id TEXT NOT NULL, device_id TEXT NOT NULL, kind TEXT NOT NULL, name TEXT, method TEXT,
    uuid TEXT, power_limit_w REAL, detail TEXT, energy_j REAL NOT NULL DEFAULT 0,
    process_energy_j REAL, mean_power_w REAL, error TEXT, PRIMARY KEY (run_id, device_id)
);
CREATE TABLE samples (
    run_id TEXT NOT NULL, seq INTEGER NOT NULL, t_s REAL NOT NULL, device_id TEXT NOT NULL,
    power_w REAL, energy_j REAL NOT NULL, process_energy_j REAL, utilization_pct REAL,
    memory_used_b INTEGER, PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
CREATE TABLE _sqlite_migrations (
    id INTEGER PRIMARY KEY, migration_set TEXT, name TEXT, applied_at TEXT
);
CREATE UNIQUE INDEX idx__sqlite_migrations_migration_set_name
    ON _sqlite_migrations (migration_set, name);
INSERT INTO _sqlite_migrations (migration_set, name, applied_at)
    VALUES ('carbon_jupyter', 'create_tables', '2024-05-01 12:00:00+00:00');
"""


def _write_v1(path: Path, run_ids: list[str]) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(V1_SCHEMA)
    with conn:
        for n, run_id in enumerate(run_ids):
            conn.execute(
                "INSERT INTO runs (id, label, phase, status, started_at, ended_at, duration_s, "
                "energy_j, gpu_energy_j, co2_g, intensity_g_per_kwh, intensity_source, "
                "intensity_key, pue, pue_source, tags) VALUES (?, ?, 'train', 'ok', ?, ?, 10, "
                "1000, 1000, 0.1, 360, 'ember', 'FRA', 1.0, 'default', ?)",
                (run_id, f"old-{n}", f"2024-04-0{n + 1}T10:00:00.000+00:00",
                 f"2024-04-0{n + 1}T10:00:10.000+00:00", json.dumps({"n": str(n)})),
            )  # fmt: skip
            conn.execute(
                "INSERT INTO devices (run_id, device_id, kind, name, method, energy_j) "
                "VALUES (?, 'gpu:0', 'gpu', 'Tesla V100', 'nvml-energy', 1000)",
                (run_id,),
            )
            conn.executemany(
                "INSERT INTO samples (run_id, seq, t_s, device_id, power_w, energy_j) "
                "VALUES (?, ?, ?, 'gpu:0', 100, ?)",
                [(run_id, seq, float(seq), 100.0 * seq) for seq in range(1, 11)],
            )
    conn.close()


def test_an_older_schema_is_upgraded_keeping_every_row(tmp_path: Path) -> None:
    path = tmp_path / "carbon.db"
    old_ids = [f"0000000{n}-0000-0000-0000-000000000000" for n in range(3)]
    _write_v1(path, old_ids)
    with open_store(path) as store:
        runs = store.runs(limit=None)
        assert sorted(r.id for r in runs) == old_ids
        old = store.get_run(old_ids[1], samples=True)
        assert old.label == "old-1"
        assert old.tags == {"n": "1"}
        assert old.intensity.key == "FRA"
        assert [d.device.name for d in old.devices] == ["Tesla V100"]
        assert len(old.samples) == 10
        assert old.warnings == ()  # written before runs carried warnings
        assert [r.id for r in store.runs(origin="carbon-jupyter", limit=None)] == [
            r.id for r in runs
        ]
        new = replace(make_run(), warnings=("gpu:0 (Tesla V100) stopped answering",))
        store.finish_run(new)
        assert store.get_run(new.id) == new
    conn = sqlite3.connect(path)
    steps = [r[0] for r in conn.execute("SELECT name FROM _sqlite_migrations ORDER BY id")]
    assert steps == [
        "create_tables",
        "add_context_columns",
        "add_run_warnings",
        "add_run_totals",
        "add_outbox",
        "add_run_metrics",
    ]
    assert conn.execute("SELECT COUNT(*) FROM samples").fetchone()[0] == 30
    conn.close()


def _snapshot(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.parent.iterdir())}


def test_a_file_from_a_newer_version_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "carbon.db"
    with open_store(path) as store:
        store.finish_run(make_run())
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(
            "INSERT INTO _sqlite_migrations (migration_set, name, applied_at) "
            "VALUES ('carbon_jupyter', 'add_water_columns', '2031-01-01')"
        )
    conn.close()
    before = _snapshot(path)
    with pytest.raises(StoreError) as info:
        open_store(path)
    message = str(info.value)
    assert str(path) in message
    assert "newer carbon-jupyter" in message
    assert "pip install -U carbon-jupyter" in message
    assert "CARBON_JUPYTER_DB" in message
    assert _snapshot(path) == before


def test_a_file_that_is_not_a_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "carbon.db"
    path.write_bytes(b"these are my notes, not a database\n" + os.urandom(8192))
    before = _snapshot(path)
    with pytest.raises(StoreError) as info:
        open_store(path)
    message = str(info.value)
    assert str(path) in message
    assert "not an SQLite database" in message
    assert "CARBON_JUPYTER_DB" in message
    assert _snapshot(path) == before


def test_an_sqlite_file_of_another_program_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "carbon.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE runs (race TEXT, km REAL)")
    conn.commit()
    conn.close()
    before = _snapshot(path)
    with pytest.raises(StoreError, match="another program") as info:
        open_store(path)
    assert str(path) in str(info.value)
    assert _snapshot(path) == before


def test_a_damaged_file_gives_a_clear_error_and_is_left_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "carbon.db"
    with open_store(path) as store:
        run = make_run(status="running")
        store.begin_run(run)
        for tick in range(1, 400, 20):
            store.add_samples(run.id, make_samples(tick, 20))
        store.finish_run(make_run(run.id))
    page_size = 4096
    data = bytearray(path.read_bytes())
    assert len(data) > 8 * page_size
    data[2 * page_size :] = os.urandom(len(data) - 2 * page_size)
    path.write_bytes(bytes(data))
    before = _snapshot(path)
    with pytest.raises(StoreError) as info, open_store(path) as damaged:
        damaged.get_run(run.id, samples=True)
    message = str(info.value)
    assert str(path) in message
    assert "damaged" in message or "not an SQLite database" in message
    assert "CARBON_JUPYTER_DB" in message
    assert _snapshot(path) == before


def _refuse_writes_as_root(folder: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders; see the /sys test for a root-proof one")
    folder.chmod(0o500)


def test_a_read_only_folder_gives_a_clear_error(tmp_path: Path) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    _refuse_writes_as_root(folder)
    try:
        with pytest.raises(StoreError) as info:
            open_store(folder / "carbon.db")
        message = str(info.value)
        assert str(folder / "carbon.db") in message
        assert "not writable" in message
        assert "CARBON_JUPYTER_DB" in message
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o700)


def test_an_existing_store_in_a_folder_made_read_only_gives_a_clear_error(tmp_path: Path) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    with open_store(folder / "carbon.db") as store:
        store.finish_run(make_run())
    _refuse_writes_as_root(folder)
    try:
        before = _snapshot(folder / "carbon.db")
        with pytest.raises(StoreError, match="not writable"):
            open_store(folder / "carbon.db").finish_run(make_run())
        assert _snapshot(folder / "carbon.db") == before
    finally:
        folder.chmod(0o700)


@pytest.mark.skipif(not os.path.isdir("/sys/kernel"), reason="needs Linux sysfs")
def test_a_folder_nobody_may_write_gives_a_clear_error() -> None:
    # sysfs refuses new files to every user, root included.
    path = Path("/sys/kernel/carbon_jupyter/carbon.db")
    with pytest.raises(StoreError) as info:
        open_store(path)
    message = str(info.value)
    assert str(path) in message
    assert "not writable" in message
    assert "CARBON_JUPYTER_DB" in message
    assert not path.parent.exists()
