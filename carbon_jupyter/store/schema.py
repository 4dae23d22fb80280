"""The store's tables, and the migrations that build and upgrade them.

The schema is code: each change is one migration step, applied in order by
sqlite-utils' :class:`~sqlite_utils.migrations.Migrations` (each step and the
record that it ran commit together, or not at all). The steps applied so far
are listed in the ``_sqlite_migrations`` table of the file itself, so a file
written by an older carbon-jupyter is upgraded in place the first time a newer
one opens it, and a file written by a newer carbon-jupyter is refused rather
than misread.

Tables
------
``runs``
    One row per tracked run: what was run (label, phase, items, notebook, cell,
    execution count, kernel, user, host), when (``started_at``/``ended_at`` in
    UTC ISO-8601, ``duration_s``), how it ended (``status``: running, ok, error,
    interrupted, lost), what it drew (``energy_j`` and per component, ``co2_g``),
    the carbon factor and PUE used and where they came from, the run's
    ``warnings`` (JSON list of one-line findings), the hardware and
    package versions (JSON), the tags (JSON), and the writing process (``pid``)
    so that a run left ``running`` by a dead process can be marked ``lost``.
``devices``
    One row per device per run: id, kind, name, ``method`` (how the figure was
    obtained), the device total and the process share.
``samples``
    The live readings: ``(run_id, seq)`` is the key, ``seq`` counts a run's
    samples from 1 without gaps, so ``seq`` is a cursor for live views and
    makes re-sending a batch harmless (``INSERT OR IGNORE``).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from carbon_jupyter.errors import StoreError

#: The name of this package's migration set in ``_sqlite_migrations``.
MIGRATION_SET = "carbon_jupyter"
MIGRATIONS_TABLE = "_sqlite_migrations"
OUR_TABLES = ("runs", "devices", "samples")

_V1_SQL = """
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    label TEXT,
    phase TEXT,
    items INTEGER,
    status TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    duration_s REAL NOT NULL DEFAULT 0,
    attribution TEXT NOT NULL DEFAULT 'device',
    energy_j REAL NOT NULL DEFAULT 0,
    cpu_energy_j REAL NOT NULL DEFAULT 0,
    gpu_energy_j REAL NOT NULL DEFAULT 0,
    ram_energy_j REAL NOT NULL DEFAULT 0,
    co2_g REAL NOT NULL DEFAULT 0,
    intensity_g_per_kwh REAL,
    intensity_source TEXT,
    intensity_year INTEGER,
    intensity_key TEXT,
    intensity_chosen_by TEXT,
    pue REAL,
    pue_source TEXT,
    notebook TEXT,
    cell TEXT,
    kernel TEXT,
    user TEXT,
    host TEXT,
    error TEXT,
    tags TEXT
);
CREATE TABLE devices (
    run_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT,
    method TEXT,
    uuid TEXT,
    power_limit_w REAL,
    detail TEXT,
    energy_j REAL NOT NULL DEFAULT 0,
    process_energy_j REAL,
    mean_power_w REAL,
    error TEXT,
    PRIMARY KEY (run_id, device_id)
);
CREATE TABLE samples (
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    t_s REAL NOT NULL,
    device_id TEXT NOT NULL,
    power_w REAL,
    energy_j REAL NOT NULL,
    process_energy_j REAL,
    utilization_pct REAL,
    memory_used_b INTEGER,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
"""

#: Columns added by the second step: what a user filters and compares by.
_V2_RUN_COLUMNS: tuple[tuple[str, type], ...] = (
    ("execution_count", int),
    ("hardware", str),
    ("versions", str),
    ("origin", str),
    ("pid", int),
    ("pid_host", str),
    ("pid_started", float),
    ("updated_at", str),
)

_V2_INDEXES = """
CREATE INDEX IF NOT EXISTS runs_started_at ON runs (started_at);
CREATE INDEX IF NOT EXISTS runs_label_started_at ON runs (label, started_at);
CREATE INDEX IF NOT EXISTS runs_notebook_started_at ON runs (notebook, started_at);
CREATE INDEX IF NOT EXISTS runs_kernel_started_at ON runs (kernel, started_at);
CREATE INDEX IF NOT EXISTS runs_running ON runs (pid_host) WHERE status = 'running';
"""


def create_tables(db: Any) -> None:
    """Step 1: the runs, devices and samples tables."""
    for statement in _V1_SQL.split(";"):
        if statement.strip():
            db.execute(statement)


def add_context_columns(db: Any) -> None:
    """Step 2: hardware, versions, execution count, origin, writer pid; indexes for queries."""
    runs = db.table("runs")
    for name, col_type in _V2_RUN_COLUMNS:
        if name not in runs.columns_dict:
            runs.add_column(name, col_type)
    db.execute("UPDATE runs SET origin = 'carbon-jupyter' WHERE origin IS NULL")
    devices = db.table("devices")
    if "position" not in devices.columns_dict:
        devices.add_column("position", int, not_null_default=0)
    for statement in _V2_INDEXES.split(";"):
        if statement.strip():
            db.execute(statement)


def add_run_warnings(db: Any) -> None:
    """Step 3: ``runs.warnings``, the JSON list of what may make a run's figures wrong."""
    runs = db.table("runs")
    if "warnings" not in runs.columns_dict:
        runs.add_column("warnings", str)


#: Every step, oldest first. Append new steps; never edit or reorder applied ones.
STEPS = (create_tables, add_context_columns, add_run_warnings)
STEP_NAMES = tuple(step.__name__ for step in STEPS)


def _migrations() -> Any:
    from sqlite_utils.migrations import Migrations

    migrations = Migrations(MIGRATION_SET)
    for step in STEPS:
        migrations(name=step.__name__)(step)
    return migrations


def applied_steps(conn: sqlite3.Connection) -> list[str]:
    """Names of the steps already applied to this file (read only)."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (MIGRATIONS_TABLE,)
    ).fetchone()
    if not exists:
        return []
    rows = conn.execute(
        f"SELECT name FROM {MIGRATIONS_TABLE} WHERE migration_set = ? ORDER BY rowid",
        (MIGRATION_SET,),
    ).fetchall()
    return [str(r[0]) for r in rows]


def check_readable(conn: sqlite3.Connection, path: str) -> list[str]:
    """Refuse a file from a newer carbon-jupyter or with foreign tables; return applied steps.

    Reads only: nothing is written to a file that is refused.
    """
    applied = applied_steps(conn)
    unknown = [name for name in applied if name not in STEP_NAMES]
    if unknown:
        raise StoreError(
            f"The run store {path} was written by a newer carbon-jupyter (schema steps "
            f"{', '.join(unknown)} are unknown to this version). It was left untouched. "
            "Upgrade with `pip install -U carbon-jupyter`, or point CARBON_JUPYTER_DB at "
            "another file."
        )
    if not applied:
        names = ", ".join("?" for _ in OUR_TABLES)
        found = conn.execute(
            f"SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ({names})",
            OUR_TABLES,
        ).fetchall()
        if found:
            tables = ", ".join(sorted(str(r[0]) for r in found))
            raise StoreError(
                f"{path} is an SQLite file of another program (it has tables {tables} but "
                "no carbon-jupyter schema record). It was left untouched. Set "
                "CARBON_JUPYTER_DB to another file."
            )
    return applied


def needs_migration(applied: list[str]) -> bool:
    return any(name not in applied for name in STEP_NAMES)


def migrate(conn: sqlite3.Connection, path: str) -> None:
    """Apply pending steps under a write lock, so concurrent first opens apply them once."""
    from sqlite_utils import Database

    conn.execute("BEGIN IMMEDIATE")
    try:
        applied = check_readable(conn, path)
        if needs_migration(applied):
            _migrations().apply(Database(conn, execute_plugins=False))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
