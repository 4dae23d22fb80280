"""The kept totals: ``day_totals``, the runs' count and sums per day, project, user and status.

Totals by day, user, project or status over 100k runs would otherwise add
up every run on each request; ``day_totals`` holds them already added up, a
few rows per day. It is kept exact by changing it in the same transaction
as every run written (:func:`record_run`):

* a new run adds one run and its figures to the row of its key;
* a run written again (its figures grow from start to end) adds the
  difference; when its key changes (its status, or the day it started) it is
  taken off the old row and added to the new one, and a row left with no
  runs is removed.

Each change is an upsert that adds to what is stored (``runs = runs +
excluded.runs``), so several server processes writing at once never lose
each other's changes; the rows a transaction changes are taken in key order,
so two transactions never wait on each other in a circle.

:func:`rebuild` works the table out again from the runs (what migration
``0002`` does once for the runs stored before it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from carbon_jupyter.server.db.schema import DAY_TOTALS_KEY, SUM_COLUMNS, day_totals, runs

#: The run columns that say which ``day_totals`` row a run counts in, and what it adds there.
RUN_COLUMNS = (*DAY_TOTALS_KEY, *SUM_COLUMNS)

Key = tuple[Any, ...]


def _key(run: Mapping[str, Any]) -> Key:
    return tuple(run[k] for k in DAY_TOTALS_KEY)


def _changes(
    old: Mapping[str, Any] | None, new: Mapping[str, Any] | None
) -> dict[Key, dict[str, float]]:
    """Per key, what to add to ``runs`` and each sum to go from ``old`` to ``new``."""
    out: dict[Key, dict[str, float]] = {}
    for run, sign in ((old, -1), (new, 1)):
        if run is None:
            continue
        change = out.setdefault(_key(run), {"runs": 0, **dict.fromkeys(SUM_COLUMNS, 0.0)})
        change["runs"] += sign
        for s in SUM_COLUMNS:
            change[s] += sign * float(run[s] or 0.0)
    return {k: v for k, v in out.items() if any(v.values())}


def record_run(conn: Connection, old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> None:
    """Move ``day_totals`` from counting run ``old`` (None: a new run) to counting ``new``.

    ``old`` and ``new`` hold the run's :data:`RUN_COLUMNS` before and after the
    write; call this in the transaction that writes the run.
    """
    for key, change in sorted(_changes(old, new).items()):
        values = dict(zip(DAY_TOTALS_KEY, key, strict=True))
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(day_totals).values(**values, **change)
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=list(DAY_TOTALS_KEY),
                set_={
                    name: day_totals.c[name] + stmt.excluded[name]
                    for name in ("runs", *SUM_COLUMNS)
                },
            )
        )
        if change["runs"] < 0:
            conn.execute(
                delete(day_totals).where(
                    *(day_totals.c[k] == v for k, v in values.items()), day_totals.c.runs <= 0
                )
            )


def rebuild(conn: Connection) -> int:
    """Work ``day_totals`` out again from every stored run; returns how many rows it holds."""
    conn.execute(delete(day_totals))
    key = [runs.c[k] for k in DAY_TOTALS_KEY]
    sums = [func.coalesce(func.sum(runs.c[s]), 0.0) for s in SUM_COLUMNS]
    conn.execute(
        insert(day_totals).from_select(
            [*DAY_TOTALS_KEY, "runs", *SUM_COLUMNS],
            select(*key, func.count(), *sums).group_by(*key),
        )
    )
    return int(conn.execute(select(func.count()).select_from(day_totals)).scalar_one())
