"""Alembic's environment for the team server's tables (:mod:`carbon_jupyter.server.db.schema`).

The server runs it through :func:`carbon_jupyter.server.db.engine.migrate`,
which hands over a connection already in a transaction. Run by hand
(``alembic -x url=sqlite:///server.db upgrade head`` with ``script_location``
pointing here) it opens the database named by ``-x url=...`` or the
``sqlalchemy.url`` option.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from carbon_jupyter.server.db.schema import metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Migrate over the connection given by the caller, or one opened from the URL."""
    given = context.config.attributes.get("connection")
    if given is not None:
        _run(given)
        return
    from carbon_jupyter.server.db.engine import open_database

    url = context.get_x_argument(as_dictionary=True).get("url") or context.config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise SystemExit("give the database: alembic -x url=sqlite:///PATH upgrade head")
    engine = open_database(url)
    try:
        with engine.connect() as connection:
            _run(connection)
            connection.commit()
    finally:
        engine.dispose()


def run_migrations_offline() -> None:
    """Print the SQL for a database given by ``sqlalchemy.url`` (``alembic upgrade head --sql``)."""
    context.configure(
        url=context.config.get_main_option("sqlalchemy.url") or "sqlite://",
        target_metadata=metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
