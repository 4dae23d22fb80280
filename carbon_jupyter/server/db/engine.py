"""Opening the team server's database, and bringing its tables up to date.

:func:`open_database` takes what ``carbon-jupyter serve --db`` takes: a file
path or ``sqlite:///PATH`` (SQLite, the default, for a small team) or
``postgresql://user:password@host/dbname`` (PostgreSQL through psycopg 3, for
several server processes sharing one database). SQLite connections use WAL
journaling, a busy timeout and foreign keys, and begin their transactions
themselves, so every request's writes are one transaction: :func:`writing`
opens one that holds SQLite's write lock from its first statement, so
concurrent requests queue instead of failing.

:func:`migrate` runs Alembic's ``upgrade head`` with the revisions shipped in
``carbon_jupyter/server/db/migrations``; on PostgreSQL it holds an advisory
lock meanwhile, so several servers starting at once migrate once.
"""

from __future__ import annotations

import sqlite3
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from carbon_jupyter.errors import CarbonError

#: How long a SQLite connection waits for another writer, in milliseconds.
SQLITE_BUSY_TIMEOUT_MS = 30_000
#: The PostgreSQL advisory lock key held while migrating (any fixed 64-bit number).
MIGRATION_LOCK_KEY = 0x63_6A_73_65_72_76_65
MIGRATIONS_DIR = Path(__file__).with_name("migrations")


class DatabaseError(CarbonError):
    """The server's database cannot be opened or used; the message names the fix."""


def _sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def database_url(url_or_path: str) -> str:
    """The SQLAlchemy URL for ``--db``: a path or ``sqlite:///`` URL, or a PostgreSQL URL."""
    raw = url_or_path.strip()
    if not raw:
        raise DatabaseError("--db is empty: give a file path or a postgresql:// URL")
    if "://" not in raw:
        path = Path(raw).expanduser().absolute()
        return _sqlite_url(path)
    try:
        url = make_url(raw)
    except ArgumentError:
        raise DatabaseError(
            f"--db {raw!r} is not a database URL: give a file path, sqlite:///PATH or "
            "postgresql://USER@HOST:PORT/DBNAME"
        ) from None
    backend = url.get_backend_name()
    if backend == "sqlite":
        if not url.database or url.database == ":memory:":
            raise DatabaseError(
                "--db needs a SQLite file, not an in-memory database: give sqlite:///PATH"
            )
        return _sqlite_url(Path(url.database).expanduser().absolute())
    if backend in ("postgresql", "postgres"):
        return url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    raise DatabaseError(
        f"--db {url.drivername}://... is not supported: give a file path (SQLite) or a "
        "postgresql:// URL"
    )


def _check_sqlite_folder(url: str) -> None:
    path = Path(make_url(url).database or "")
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatabaseError(
            f"cannot create the folder {folder} for the database ({exc.strerror}): "
            "give --db a path in a folder you can write to"
        ) from None
    if path.is_dir():
        raise DatabaseError(f"--db {path} is a folder: give a file path such as {path}/server.db")


def _sqlite_events(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        # SQLAlchemy begins transactions itself (below), so every statement of a
        # request, DDL included, is in one transaction.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


def open_database(url_or_path: str, *, pool_size: int = 10) -> Engine:
    """An engine for ``url_or_path`` (see the module docs), checked by connecting once.

    Raises :class:`DatabaseError` with one line naming the fix when the URL is
    not understood, the SQLite folder cannot be written, or PostgreSQL cannot
    be reached.
    """
    url = database_url(url_or_path)
    if url.startswith("sqlite"):
        _check_sqlite_folder(url)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            pool_size=pool_size,
            max_overflow=2 * pool_size,
        )
        _sqlite_events(engine)
    else:
        engine = create_engine(
            url,
            pool_size=pool_size,
            max_overflow=2 * pool_size,
            pool_pre_ping=True,
            connect_args={"connect_timeout": 10},
        )
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        engine.dispose()
        raise DatabaseError(
            f"cannot open the database {describe(engine)}: {_reason(exc)}"
        ) from None
    return engine


def describe(engine: Engine) -> str:
    """The database's URL with any password hidden, for messages."""
    return engine.url.render_as_string(hide_password=True)


def _reason(exc: SQLAlchemyError) -> str:
    original = getattr(exc, "orig", None) or exc
    first = str(original).strip().splitlines()
    line = first[0] if first else type(original).__name__
    if "sqlite" in type(original).__module__:
        return f"{line}; check that the file's folder is writable and the file is a database"
    return f"{line}; check the URL, that the server is running and that the database exists"


@contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """A connection in one write transaction, committed at the end, rolled back on error.

    On SQLite the transaction takes the write lock at once (``BEGIN IMMEDIATE``),
    so a request that reads before it writes never fails on a snapshot that
    another writer made stale; it waits up to the busy timeout instead.
    """
    if engine.dialect.name != "sqlite":
        with engine.connect() as conn, conn.begin():
            yield conn
        return
    # One writer at a time in this process: threads queue on a lock (woken at once)
    # rather than on SQLite's busy handler (which sleeps); other processes still
    # wait on the busy timeout.
    with _write_lock(engine), engine.connect() as conn:
        conn.execution_options(sqlite_begin="IMMEDIATE")
        with conn.begin():
            yield conn


_WRITE_LOCKS: weakref.WeakKeyDictionary[Engine, threading.Lock] = weakref.WeakKeyDictionary()
_WRITE_LOCKS_GUARD = threading.Lock()


def _write_lock(engine: Engine) -> threading.Lock:
    with _WRITE_LOCKS_GUARD:
        lock = _WRITE_LOCKS.get(engine)
        if lock is None:
            lock = _WRITE_LOCKS[engine] = threading.Lock()
        return lock


def alembic_config(conn: Connection | None = None) -> Any:
    """The Alembic configuration for the shipped migrations (bound to ``conn`` if given)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if conn is not None:
        config.attributes["connection"] = conn
    return config


def migrate(engine: Engine) -> None:
    """Bring the database's tables to the newest revision (Alembic ``upgrade head``)."""
    from alembic import command

    try:
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                conn.execution_options(sqlite_begin="IMMEDIATE")
            with conn.begin():
                if engine.dialect.name == "postgresql":
                    conn.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
                    )
                command.upgrade(alembic_config(conn), "head")
    except SQLAlchemyError as exc:
        raise DatabaseError(
            f"cannot migrate the database {describe(engine)}: {_reason(exc)}"
        ) from None


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None before the first migration)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        rev: str | None = MigrationContext.configure(conn).get_current_revision()
        return rev
