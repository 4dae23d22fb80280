"""The team server's tables come from Alembic migrations, on SQLite and PostgreSQL alike.

A fresh database is brought to the newest revision, and what the migrations
build is exactly what the code's schema (``server/db/schema.py``) describes,
so a change to one without the other fails here. A database holding runs
from before ``day_totals`` gets it filled from them.
"""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import func, insert, inspect, select

from carbon_jupyter.server.db.engine import (
    MIGRATIONS_DIR,
    alembic_config,
    current_revision,
    migrate,
    open_database,
)
from carbon_jupyter.server.db.schema import SUM_COLUMNS, day_totals, metadata, projects, runs, users

TABLES = {"users", "projects", "tokens", "runs", "devices", "samples", "day_totals"}


def _head() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def test_the_history_is_one_line_from_the_first_revision_shipped_in_the_package() -> None:
    revisions = list(ScriptDirectory.from_config(alembic_config()).walk_revisions())
    assert revisions[-1].revision == "0001" and revisions[-1].down_revision is None
    for newer, older in itertools.pairwise(revisions):
        assert newer.down_revision == older.revision
    assert (MIGRATIONS_DIR / "env.py").is_file()
    assert Path(revisions[-1].path).parent == MIGRATIONS_DIR / "versions"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_fresh_database_is_migrated_to_head_and_matches_the_schema(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    db = (
        str(tmp_path / "server.db")
        if backend == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    engine = open_database(db)
    try:
        assert current_revision(engine) is None
        migrate(engine)
        migrate(engine)  # a second time changes nothing
        assert current_revision(engine) == _head()
        assert set(inspect(engine).get_table_names()) >= TABLES
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, metadata) == []
    finally:
        engine.dispose()


def test_migrations_go_down_to_nothing_and_up_again(tmp_path: Path) -> None:
    engine = open_database(str(tmp_path / "server.db"))
    try:
        migrate(engine)
        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), "base")
        assert not TABLES & set(inspect(engine).get_table_names())
        migrate(engine)
        assert current_revision(engine) == _head()
    finally:
        engine.dispose()


def test_servers_starting_together_migrate_one_postgresql_database_once(postgres_url: str) -> None:
    errors: list[BaseException] = []

    def start() -> None:
        engine = open_database(postgres_url)
        try:
            migrate(engine)
        except BaseException as exc:
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    engine = open_database(postgres_url)
    try:
        assert current_revision(engine) == _head()
    finally:
        engine.dispose()


def _old_run(n: int, project_id: int, user_id: int) -> dict[str, object]:
    day = f"2024-05-0{1 + n % 3}"
    energy_j = 10.0 * n
    return {
        "id": f"old-{n}", "project_id": project_id, "user_id": user_id,
        "status": ("ok", "error", "running")[n % 3 if n % 5 else 0],
        "started_at": f"{day}T10:00:00.000+00:00", "day": day, "duration_s": float(n),
        "attribution": "device", "energy_j": energy_j, "cpu_energy_j": energy_j / 2,
        "gpu_energy_j": energy_j / 4, "ram_energy_j": energy_j / 4, "co2_g": energy_j / 1000,
        "received_at": "2024-05-04T00:00:00.000+00:00",
        "updated_at": "2024-05-04T00:00:00.000+00:00",
    }  # fmt: skip


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_runs_stored_before_the_kept_totals_are_counted_in_them(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    db = (
        str(tmp_path / "server.db")
        if backend == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    engine = open_database(db)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "0001")
            stamp = "2024-05-01T00:00:00.000+00:00"
            conn.execute(insert(projects), [{"name": p, "created_at": stamp} for p in "ab"])
            conn.execute(insert(users), [{"name": u, "created_at": stamp} for u in "xyz"])
            conn.execute(insert(runs), [_old_run(n, 1 + n % 2, 1 + n % 3) for n in range(40)])
        migrate(engine)
        key = [runs.c.day, runs.c.project_id, runs.c.user_id, runs.c.status]
        sums = [func.count(), *(func.sum(runs.c[s]) for s in SUM_COLUMNS)]
        with engine.connect() as conn:
            expected = conn.execute(select(*key, *sums).group_by(*key).order_by(*key)).all()
            kept_columns = [day_totals.c[c] for c in ("day", "project_id", "user_id", "status")]
            kept = conn.execute(
                select(
                    *kept_columns, day_totals.c.runs, *(day_totals.c[s] for s in SUM_COLUMNS)
                ).order_by(*kept_columns)
            ).all()
        assert len(expected) == 10  # the groups the 40 runs fall in
        assert [tuple(row)[:5] for row in kept] == [tuple(row)[:5] for row in expected]
        for got, want in zip(kept, expected, strict=True):
            assert tuple(got)[5:] == pytest.approx(tuple(want)[5:], rel=1e-12)
    finally:
        engine.dispose()
