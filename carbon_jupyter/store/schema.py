"""The store's tables, and the migrations that build and upgrade them.

The schema is code: each change is one migration step, applied in order (the
pending steps and the records that they ran commit together, or not at all).
The steps applied so far are listed in the ``_sqlite_migrations`` table of the
file itself, in the layout of sqlite-utils' :class:`~sqlite_utils.migrations.Migrations`
(migration set ``carbon_jupyter``), so ``sqlite-utils`` reads the same history;
a file written by an older carbon-jupyter is upgraded in place the first time a
newer one opens it, and a file written by a newer carbon-jupyter is refused
rather than misread. The steps run on plain :mod:`sqlite3`: creating a store
imports neither sqlite-utils nor pandas.

Tables
------
``runs``
    One row per tracked run: what was run (label, phase, items, notebook, cell,
    execution count, kernel, user, host), when (``started_at``/``ended_at`` in
    UTC ISO-8601, ``duration_s``), how it ended (``status``: running, ok, error,
    interrupted, lost), what it drew (``energy_j`` and per component, ``co2_g``),
    the carbon factor and PUE used and where they came from, the run's
    ``warnings`` (JSON list of one-line findings), the user's ``metrics``
    (JSON object, name to number, from ``log_metric``), the hardware and
    package versions (JSON), the tags (JSON), and the writing process (``pid``)
    so that a run left ``running`` by a dead process can be marked ``lost``.
``devices``
    One row per device per run: id, kind, name, ``method`` (how the figure was
    obtained), the device total and the process share.
``samples``
    The live readings: ``(run_id, seq)`` is the key, ``seq`` counts a run's
    samples from 1 without gaps, so ``seq`` is a cursor for live views and
    makes re-sending a batch harmless (``INSERT OR IGNORE``).
``run_totals``
    What :meth:`~carbon_jupyter.store.Store.totals` adds up, kept added up: one
    row per UTC day and label, per day and notebook, per day and phase
    (``dim`` names which, ``key`` holds the value, NULL for runs without one),
    with the count, duration, energies and CO2 of those runs. Triggers on
    ``runs`` keep it in step with every insert, update and delete, in the same
    transaction, whoever writes: a new run is added to its groups, a live run's
    growth shifts them, and any other change (a run deleted, relabelled, moved
    to another day, its figures lowered) adds its groups up again from their
    runs, so no rounding residue builds up. A step that rebuilds the ``runs`` table must
    create the triggers again; ``INSERT OR REPLACE`` into ``runs`` bypasses the
    delete trigger (SQLite fires it only with ``recursive_triggers`` on), so
    rows are changed with ``UPDATE`` or ``ON CONFLICT ... DO UPDATE``.
``outbox``
    Requests on their way to a team server (:mod:`carbon_jupyter.forward`), in
    the order they are to be sent (``id``): the ``server`` (base URL) and
    ``token_id`` (a fingerprint of the token they are to be sent with, never the
    token), ``method``, ``path``, the JSON ``body``, the ``run_id``, when the
    row was written, how many tries failed and the last error. A row the
    server refused for good (a 4xx other than 429) is set aside
    (``rejected_at``): kept and shown, not sent again on its own.
``forward_state``
    Per server and token: the last delivery (``last_ok_at``), the last error and
    when, how many requests and samples were delivered, and the lease of the one
    process that sends this file's outbox there (``holder_pid``, ``holder_host``,
    ``holder_started``, ``lease_until`` in seconds since the epoch).
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone
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


def add_run_metrics(db: Any) -> None:
    """Step 6: ``runs.metrics``, the JSON object of the user's own results (``log_metric``)."""
    runs = db.table("runs")
    if "metrics" not in runs.columns_dict:
        runs.add_column("metrics", str)


def add_run_warnings(db: Any) -> None:
    """Step 3: ``runs.warnings``, the JSON list of what may make a run's figures wrong."""
    runs = db.table("runs")
    if "warnings" not in runs.columns_dict:
        runs.add_column("warnings", str)


#: The run columns ``run_totals`` adds up, in the order of its columns.
TOTAL_COLUMNS = ("duration_s", "energy_j", "cpu_energy_j", "gpu_energy_j", "ram_energy_j", "co2_g")
#: The run columns ``run_totals`` groups by (its ``dim``), each per UTC day.
TOTAL_DIMENSIONS = ("label", "notebook", "phase")

_SUM_COLUMNS_SQL = ", ".join(f"{c} REAL NOT NULL DEFAULT 0" for c in TOTAL_COLUMNS)
_V4_TABLE = f"""
CREATE TABLE run_totals (
    dim TEXT NOT NULL,
    key TEXT,
    day TEXT NOT NULL,
    count INTEGER NOT NULL DEFAULT 0,
    {_SUM_COLUMNS_SQL}
);
CREATE INDEX run_totals_group ON run_totals (dim, key, day);
CREATE INDEX runs_started_at_label ON runs (started_at, label);
DROP INDEX IF EXISTS runs_started_at
"""


def _group(dim: str, row: str) -> str:
    return f"dim = '{dim}' AND key IS {row}.{dim} AND day = substr({row}.started_at, 1, 10)"


def _add(row: str) -> str:
    """Trigger statements adding the run ``row`` (NEW or OLD) to its groups."""
    sums = ", ".join(f"{c} = {c} + {row}.{c}" for c in TOTAL_COLUMNS)
    return "".join(
        f"INSERT INTO run_totals (dim, key, day) SELECT '{dim}', {row}.{dim}, "
        f"substr({row}.started_at, 1, 10) WHERE NOT EXISTS "
        f"(SELECT 1 FROM run_totals WHERE {_group(dim, row)});\n"
        f"UPDATE run_totals SET count = count + 1, {sums} WHERE {_group(dim, row)};\n"
        for dim in TOTAL_DIMENSIONS
    )


def _recount(row: str) -> str:
    """Trigger statements adding up again, from the runs, the groups of the run ``row``.

    Taking a run out by subtraction would leave rounding residue in its groups;
    adding them up again from their runs (one day of one label, notebook or phase,
    read through an index) leaves them as if the run had never been there.
    """
    day = f"substr({row}.started_at, 1, 10)"
    sums = ", ".join(f"SUM({c})" for c in TOTAL_COLUMNS)
    return "".join(
        f"DELETE FROM run_totals WHERE {_group(dim, row)};\n"
        f"INSERT INTO run_totals (dim, key, day, count, {', '.join(TOTAL_COLUMNS)}) "
        f"SELECT '{dim}', {row}.{dim}, {day}, COUNT(*), {sums} FROM runs "
        f"WHERE {dim} IS {row}.{dim} AND started_at >= {day} "
        f"AND started_at < {day} || char(1114111) AND substr(started_at, 1, 10) = {day} "
        "HAVING COUNT(*) > 0;\n"
        for dim in TOTAL_DIMENSIONS
    )


def _shift() -> str:
    """Trigger statements moving a run's groups by the growth of its figures."""
    deltas = ", ".join(f"{c} = {c} + (NEW.{c} - OLD.{c})" for c in TOTAL_COLUMNS)
    return "".join(
        f"UPDATE run_totals SET {deltas} WHERE {_group(dim, 'NEW')};\n" for dim in TOTAL_DIMENSIONS
    )


#: An update that keeps a run in its groups and only adds to its figures (a live run's
#: flush, its finish) shifts the groups; any other update adds them up again.
_GROWS = " AND ".join(
    [f"OLD.{dim} IS NEW.{dim}" for dim in TOTAL_DIMENSIONS]
    + ["substr(OLD.started_at, 1, 10) IS substr(NEW.started_at, 1, 10)"]
    + [f"NEW.{c} >= OLD.{c}" for c in TOTAL_COLUMNS]
)
_UPDATE_OF = ", ".join(("started_at", *TOTAL_DIMENSIONS, *TOTAL_COLUMNS))
_V4_TRIGGERS = (
    f"CREATE TRIGGER run_totals_insert AFTER INSERT ON runs BEGIN\n{_add('NEW')}END",
    f"CREATE TRIGGER run_totals_delete AFTER DELETE ON runs BEGIN\n{_recount('OLD')}END",
    f"CREATE TRIGGER run_totals_update AFTER UPDATE OF {_UPDATE_OF} ON runs "
    f"WHEN {_GROWS} BEGIN\n{_shift()}END",
    f"CREATE TRIGGER run_totals_move AFTER UPDATE OF {_UPDATE_OF} ON runs "
    f"WHEN NOT ({_GROWS}) BEGIN\n{_recount('OLD')}{_recount('NEW')}END",
)


def add_run_totals(db: Any) -> None:
    """Step 4: ``run_totals`` kept by triggers; start-time index that also holds the label.

    The totals are filled from the runs already stored. ``runs_started_at`` gives way
    to ``runs_started_at_label``, which serves the same queries and lets a
    newest-first listing test a wildcard label without reading each run.
    """
    for statement in _V4_TABLE.split(";"):
        if statement.strip():
            db.execute(statement)
    for trigger in _V4_TRIGGERS:
        db.execute(trigger)
    sums = ", ".join(f"SUM({c})" for c in TOTAL_COLUMNS)
    for dim in TOTAL_DIMENSIONS:
        db.execute(
            f"INSERT INTO run_totals (dim, key, day, count, {', '.join(TOTAL_COLUMNS)}) "
            f"SELECT '{dim}', {dim}, substr(started_at, 1, 10), COUNT(*), {sums} FROM runs "
            f"GROUP BY {dim}, substr(started_at, 1, 10)"
        )


_V5_SQL = """
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    server TEXT NOT NULL,
    token_id TEXT NOT NULL DEFAULT '',
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    body TEXT NOT NULL,
    run_id TEXT,
    samples INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    rejected_at TEXT
);
CREATE INDEX outbox_waiting ON outbox (server, token_id, rejected_at, id);
CREATE TABLE forward_state (
    server TEXT NOT NULL,
    token_id TEXT NOT NULL DEFAULT '',
    last_ok_at TEXT,
    last_error TEXT,
    last_error_at TEXT,
    sent INTEGER NOT NULL DEFAULT 0,
    sent_samples INTEGER NOT NULL DEFAULT 0,
    holder_pid INTEGER,
    holder_host TEXT,
    holder_started REAL,
    lease_until REAL,
    updated_at TEXT,
    PRIMARY KEY (server, token_id)
)
"""


def add_outbox(db: Any) -> None:
    """Step 5: ``outbox`` and ``forward_state``, for forwarding runs to a team server."""
    for statement in _V5_SQL.split(";"):
        if statement.strip():
            db.execute(statement)


#: Every step, oldest first. Append new steps; never edit or reorder applied ones.
STEPS = (
    create_tables,
    add_context_columns,
    add_run_warnings,
    add_run_totals,
    add_outbox,
    add_run_metrics,
)
STEP_NAMES = tuple(step.__name__ for step in STEPS)

#: ``_sqlite_migrations`` exactly as sqlite-utils 4 creates it.
_MIGRATIONS_TABLE_SQL = (
    'CREATE TABLE "_sqlite_migrations" (\n   "id" INTEGER PRIMARY KEY,\n'
    '   "migration_set" TEXT,\n   "name" TEXT,\n   "applied_at" TEXT\n)',
    'CREATE UNIQUE INDEX "idx__sqlite_migrations_migration_set_name"\n'
    '    ON "_sqlite_migrations" ("migration_set", "name")',
)
_COLUMN_TYPES: dict[Any, str] = {str: "TEXT", int: "INTEGER", float: "REAL", bytes: "BLOB"}
_AFFINITY_TYPES = (("INT", int), ("CHAR", str), ("CLOB", str), ("TEXT", str), ("BLOB", bytes),
                   ("REAL", float), ("FLOA", float), ("DOUB", float))  # fmt: skip


def _quote(name: str) -> str:
    return '"{}"'.format(name.replace('"', '""'))


class _Table:
    """The part of sqlite-utils' ``Table`` that the steps use, writing the same SQL."""

    def __init__(self, conn: sqlite3.Connection, name: str) -> None:
        self.conn = conn
        self.name = name

    @property
    def columns_dict(self) -> dict[str, type]:
        rows = self.conn.execute(f"PRAGMA table_info({_quote(self.name)})").fetchall()
        return {str(r[1]): _affinity(str(r[2])) for r in rows}

    def add_column(
        self, col_name: str, col_type: Any = str, not_null_default: Any | None = None
    ) -> None:
        not_null = ""
        if not_null_default is not None:
            quoted = self.conn.execute("SELECT quote(?)", (not_null_default,)).fetchone()[0]
            not_null = f" NOT NULL DEFAULT {quoted}"
        self.conn.execute(
            f"ALTER TABLE {_quote(self.name)} ADD COLUMN {_quote(col_name)} "
            f"{_COLUMN_TYPES[col_type]}{not_null};"
        )


class _Database:
    """The part of sqlite-utils' ``Database`` that the steps use, on a plain connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def execute(self, sql: str, parameters: Any = None) -> sqlite3.Cursor:
        return self.conn.execute(sql, () if parameters is None else parameters)

    def table(self, name: str) -> _Table:
        return _Table(self.conn, name)


def _affinity(declared: str) -> type:
    """SQLite's type affinity of a declared column type, as a Python type."""
    upper = declared.upper()
    for part, kind in _AFFINITY_TYPES:
        if part in upper:
            return kind
    return str if not upper else float


def _ensure_migrations_table(conn: sqlite3.Connection) -> None:
    columns = _Table(conn, MIGRATIONS_TABLE).columns_dict
    if not columns:
        for statement in _MIGRATIONS_TABLE_SQL:
            conn.execute(statement)
    elif "id" not in columns:  # an older layout: let sqlite-utils bring it up to date
        from sqlite_utils import Database
        from sqlite_utils.migrations import Migrations

        Migrations(MIGRATION_SET).ensure_migrations_table(Database(conn, execute_plugins=False))


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
    """Apply pending steps under a write lock, so concurrent first opens apply them once.

    The steps and their records in ``_sqlite_migrations`` commit together: a step
    that fails leaves the file as it was.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        applied = check_readable(conn, path)
        if needs_migration(applied):
            _ensure_migrations_table(conn)
            db = _Database(conn)
            for step in STEPS:
                if step.__name__ not in applied:
                    step(db)
                    conn.execute(
                        f"INSERT INTO {MIGRATIONS_TABLE} (migration_set, name, applied_at) "
                        "VALUES (?, ?, ?)",
                        (MIGRATION_SET, step.__name__, str(datetime.now(timezone.utc))),
                    )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
