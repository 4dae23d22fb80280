"""Users and projects, created on first use, and inserts that tolerate repeats on both databases.

:func:`insert_ignoring` and :func:`upsert` build SQLite's or PostgreSQL's
``INSERT ... ON CONFLICT`` for the connection's dialect, so a repeated
request, or two requests racing, store a row once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Table, select
from sqlalchemy.dialects import postgresql, sqlite

from carbon_jupyter.server import times
from carbon_jupyter.server.db.schema import projects, users


def _dialect_insert(conn: Connection, table: Table) -> Any:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def insert_ignoring(conn: Connection, table: Table, keys: Sequence[str]) -> Any:
    """``INSERT INTO table ... ON CONFLICT (keys) DO NOTHING`` for ``conn``'s dialect."""
    return _dialect_insert(conn, table).on_conflict_do_nothing(index_elements=list(keys))


def upsert(conn: Connection, table: Table, keys: Sequence[str], columns: Sequence[str]) -> Any:
    """``INSERT ... ON CONFLICT (keys) DO UPDATE SET`` each of ``columns`` to the new value."""
    stmt = _dialect_insert(conn, table)
    return stmt.on_conflict_do_update(
        index_elements=list(keys), set_={c: stmt.excluded[c] for c in columns}
    )


def _ensure(conn: Connection, table: Table, name: str) -> int:
    found = conn.execute(select(table.c.id).where(table.c.name == name)).scalar()
    if found is not None:
        return int(found)
    conn.execute(
        insert_ignoring(conn, table, ["name"]).values(name=name, created_at=times.now_iso())
    )
    return int(conn.execute(select(table.c.id).where(table.c.name == name)).scalar_one())


def ensure_user(conn: Connection, name: str) -> int:
    """The id of user ``name``, created if it is new."""
    return _ensure(conn, users, name)


def ensure_project(conn: Connection, name: str) -> int:
    """The id of project ``name``, created if it is new."""
    return _ensure(conn, projects, name)
