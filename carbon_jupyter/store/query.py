"""Reading the store: runs by filter, one run by id prefix, samples by cursor, totals.

Filters (all optional, combined with AND):

==============  ===========================================================================
``label``       exact label; ``*`` and ``?`` match any text / one character (``"bert-*"``)
``phase``       ``train``, ``inference`` or ``other``
``notebook``    the notebook's path, or its file name (``"train.ipynb"`` matches any folder)
``kernel``      the Jupyter kernel id
``since``       a datetime, ISO-8601 text (``"2024-05-01"``), a ``timedelta`` or text such as
                ``"30m"``, ``"24h"``, ``"7d"``, ``"2w"`` meaning that long ago; naive times
                are local time
``status``      one status or several: ``running``, ``ok``, ``error``, ``interrupted``, ``lost``
``tag``         ``"key"`` (the tag is set), ``"key=value"``, or a mapping of several
``origin``      where the run came from: ``carbon-jupyter``, ``codecarbon``
==============  ===========================================================================

A wildcard label with a literal start (``"fine-*"``) is looked up through the
label index while fewer than :data:`FEW_MATCHES` runs match it; a label that
many runs match is found newest first through the start-time index, which
holds the label too. Either way ``limit=50`` reads a few thousand index entries
at most, unless many runs match and all of them are older than many that do
not. :func:`iter_runs` streams: it reads runs in batches as they are consumed,
so the first one comes at once even when every run matches.

Totals without a kernel, status, tag or origin filter, and filtered by at most
one of label, notebook and phase, come from the ``run_totals`` table that the
store keeps added up per day (see :mod:`carbon_jupyter.store.schema`); the
day that ``since`` falls in is added up from its runs. Other totals add up the
runs themselves.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from itertools import starmap
from typing import Any

from carbon_jupyter.errors import ConfigError, StoreError
from carbon_jupyter.model import DeviceEnergy, Run, Sample
from carbon_jupyter.store.rows import (
    DEVICE_COLUMNS,
    RUN_COLUMNS,
    SAMPLE_FIELDS,
    device_from_row,
    run_from_row,
    utc_iso,
)
from carbon_jupyter.store.schema import TOTAL_COLUMNS, TOTAL_DIMENSIONS

TOTALS_BY = ("label", "notebook", "phase", "day")
#: A wildcard label that fewer runs match is looked up through the label index.
FEW_MATCHES = 1000
#: How many runs :func:`iter_runs` reads at first, then at a time.
FIRST_BATCH, BATCH = 20, 500
_WILDCARD = re.compile(r"[*?\[]")
_SUMS = ("count", *TOTAL_COLUMNS)
_AGO = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)\s*$", re.IGNORECASE)
_UNIT_S = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


class RunNotFoundError(StoreError, KeyError):
    """No stored run has the id (or id prefix) asked for."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def since_iso(since: datetime | timedelta | str | None) -> str | None:
    """The UTC ISO-8601 lower bound that ``since`` stands for (see the module docstring).

    None when it leaves no run out: a lookback longer than the calendar reaches back
    (``"99999999d"``, ``timedelta.max``) means every run, as does a moment before year 1;
    a moment after year 9999 leaves every run out.
    """
    if since is None:
        return None
    if isinstance(since, timedelta):
        return _ago(since)
    if isinstance(since, datetime):
        return _moment_iso(since)
    if isinstance(since, str):
        match = _AGO.match(since)
        if match:
            try:
                span = timedelta(seconds=float(match[1]) * _UNIT_S[match[2].lower()])
            except OverflowError:  # longer than any timedelta: before the calendar began
                return None
            return _ago(span)
        try:
            moment = datetime.fromisoformat(since.strip().replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            return _moment_iso(moment)
    raise ConfigError(
        f"since={since!r} is neither a time nor a span: give a datetime, ISO-8601 text "
        "such as '2024-05-01' or '2024-05-01T12:00', a timedelta, or '30m', '24h', '7d'"
    )


#: A lower bound no stored run reaches: the calendar's last moment.
_AFTER_EVERY_RUN = "9999-12-31T23:59:59.999999+00:00"


def _ago(span: timedelta) -> str | None:
    """The bound ``span`` before now; past either end of the calendar, everything or nothing."""
    try:
        return utc_iso(datetime.now(timezone.utc) - span)
    except OverflowError:
        return None if span > timedelta(0) else _AFTER_EVERY_RUN


def _moment_iso(moment: datetime) -> str | None:
    """``moment`` as the bound; naive is local time, and a zone may push it off the calendar."""
    try:
        return utc_iso(moment)
    except (OverflowError, ValueError):  # within a day of year 1 or year 9999
        return None if moment.year < 5000 else _AFTER_EVERY_RUN


@dataclass(frozen=True)
class RunFilter:
    """Which runs a query, a total or an export covers. See the module docstring."""

    label: str | None = None
    phase: str | None = None
    notebook: str | None = None
    kernel: str | None = None
    since: datetime | timedelta | str | None = None
    status: str | Sequence[str] | None = None
    tag: str | Mapping[str, str] | None = None
    origin: str | None = None

    def where(self, *, label_index: bool = True) -> tuple[str, list[Any]]:
        """SQL ``WHERE`` text (``1`` when nothing is filtered) and its parameters.

        ``label_index=False`` keeps SQLite from reading a wildcard label's matches
        through the label index (they come newest first through the start-time one).
        """
        clauses: list[str] = []
        params: list[Any] = []
        for dim in TOTAL_DIMENSIONS:
            clause, values = self.match(dim, dim if label_index or dim != "label" else "+label")
            if values:
                clauses.append(clause)
                params += values
        for column, value in (("kernel", self.kernel), ("origin", self.origin)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        bound = since_iso(self.since)
        if bound is not None:
            clauses.append("started_at >= ?")
            params.append(bound)
        if self.status is not None:
            statuses = [self.status] if isinstance(self.status, str) else list(self.status)
            clauses.append(f"status IN ({', '.join('?' for _ in statuses)})")
            params += statuses
        for key, value in _tag_items(self.tag):
            path = '$."' + key.replace('"', '\\"') + '"'
            if value is None:
                clauses.append("json_extract(tags, ?) IS NOT NULL")
                params.append(path)
            else:
                clauses.append("json_extract(tags, ?) = ?")
                params += [path, value]
        return (" AND ".join(clauses) or "1"), params

    def match(self, dim: str, column: str) -> tuple[str, list[Any]]:
        """The test of ``column`` against this filter's ``dim``: label, notebook or phase.

        Returns ``("1", [])`` when ``dim`` is not filtered.
        """
        value = getattr(self, dim)
        if value is None:
            return "1", []
        if dim == "label" and is_wildcard(value):
            return f"{column} GLOB ?", [value]
        if dim == "notebook":
            escaped = re.sub(r"([\\%_])", r"\\\1", value)
            return f"({column} = ? OR {column} LIKE ? ESCAPE '\\')", [value, f"%/{escaped}"]
        return f"{column} = ?", [value]


def is_wildcard(label: str) -> bool:
    """Whether ``label`` is a pattern (it has ``*``, ``?`` or ``[``) rather than a label."""
    return _WILDCARD.search(label) is not None


def literal_start(pattern: str) -> str:
    """The text a wildcard label starts with, up to its first ``*``, ``?`` or ``[``."""
    found = _WILDCARD.search(pattern)
    return pattern if found is None else pattern[: found.start()]


def _tag_items(tag: str | Mapping[str, str] | None) -> Iterable[tuple[str, str | None]]:
    if tag is None:
        return []
    if isinstance(tag, str):
        key, sep, value = tag.partition("=")
        return [(key.strip(), value.strip() if sep else None)]
    return [(str(k), str(v)) for k, v in tag.items()]


def _devices_of(conn: sqlite3.Connection, run_ids: Sequence[str]) -> dict[str, list[DeviceEnergy]]:
    found: dict[str, list[DeviceEnergy]] = {run_id: [] for run_id in run_ids}
    columns = ", ".join(DEVICE_COLUMNS)
    for start in range(0, len(run_ids), 500):
        chunk = run_ids[start : start + 500]
        marks = ", ".join("?" for _ in chunk)
        rows = conn.execute(
            f"SELECT {columns} FROM devices WHERE run_id IN ({marks}) "
            "ORDER BY run_id, position, device_id",
            chunk,
        )
        for row in rows:
            found[row[0]].append(device_from_row(row[1:]))
    return found


def few_label_matches(conn: sqlite3.Connection, label: str | None) -> bool:
    """Whether the label index is the way to the runs of ``label``.

    True for an exact label and for a wildcard label with a literal start that fewer
    than :data:`FEW_MATCHES` runs match (counted in the label index, stopping there).
    """
    if label is None or not is_wildcard(label):
        return True
    if not literal_start(label):
        return False
    row = conn.execute(
        "SELECT COUNT(*) FROM (SELECT 1 FROM runs WHERE label GLOB ? LIMIT ?)",
        (label, FEW_MATCHES),
    ).fetchone()
    return int(row[0]) < FEW_MATCHES


def runs_sql(
    conn: sqlite3.Connection, flt: RunFilter, limit: int | None, columns: Sequence[str]
) -> tuple[str, list[Any]]:
    """The newest-first query of ``columns`` of the runs matching ``flt``, and its parameters."""
    where, params = flt.where(label_index=few_label_matches(conn, flt.label))
    sql = f"SELECT {', '.join(columns)} FROM runs WHERE {where} ORDER BY started_at DESC"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(int(limit))
    return sql, params


def iter_runs(
    conn: sqlite3.Connection, flt: RunFilter, limit: int | None, first_batch: int = FIRST_BATCH
) -> Generator[Run, None, None]:
    """Runs matching ``flt``, newest first, read in batches as they are consumed."""
    sql, params = runs_sql(conn, flt, limit, RUN_COLUMNS)
    cursor = conn.execute(sql, params)
    size = first_batch
    while rows := cursor.fetchmany(size):
        devices = _devices_of(conn, [row[0] for row in rows])
        for row in rows:
            yield run_from_row(row, devices[row[0]])
        size = BATCH


def select_runs(conn: sqlite3.Connection, flt: RunFilter, limit: int | None) -> list[Run]:
    """Runs matching ``flt``, newest first, at most ``limit`` (None: all)."""
    return list(iter_runs(conn, flt, limit, first_batch=BATCH))


def iter_run_rows(
    conn: sqlite3.Connection, flt: RunFilter, limit: int | None, columns: Sequence[str]
) -> Iterator[dict[str, Any]]:
    """Runs matching ``flt`` as plain rows of ``columns``, newest first, as they are read."""
    sql, params = runs_sql(conn, flt, limit, columns)
    for row in conn.execute(sql, params):
        yield dict(zip(columns, row, strict=True))


def select_run_rows(
    conn: sqlite3.Connection, flt: RunFilter, limit: int | None, columns: Sequence[str]
) -> list[dict[str, Any]]:
    """Runs matching ``flt`` as plain rows of ``columns``, newest first."""
    return list(iter_run_rows(conn, flt, limit, columns))


def resolve_id(conn: sqlite3.Connection, run_id: str, path: str) -> str:
    """The full id of the run whose id is ``run_id`` or starts with it."""
    if conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone():
        return run_id
    matches = [
        str(r[0])
        for r in conn.execute(
            "SELECT id FROM runs WHERE id >= ? AND id < ? ORDER BY id LIMIT 6",
            (run_id, run_id + "\U0010ffff"),
        )
    ]
    if len(matches) == 1 and run_id:
        return matches[0]
    if not matches:
        raise RunNotFoundError(
            f"No run with id {run_id!r} in the run store {path}. List the stored runs with "
            "carbon_jupyter.runs() (or `carbon-jupyter runs`) and copy an id from there."
        )
    shown = ", ".join(m[:12] for m in matches[:5])
    raise RunNotFoundError(
        f"The id prefix {run_id!r} matches several runs in {path} ({shown}...). "
        "Give more characters of the id."
    )


def select_run(conn: sqlite3.Connection, run_id: str, path: str, with_samples: bool) -> Run:
    full_id = resolve_id(conn, run_id, path)
    row = conn.execute(
        f"SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE id = ?", (full_id,)
    ).fetchone()
    devices = _devices_of(conn, [full_id])[full_id]
    samples = select_samples(conn, full_id) if with_samples else []
    return run_from_row(row, devices, samples)


def select_samples(
    conn: sqlite3.Connection,
    run_id: str,
    since_seq: int | None = None,
    device_id: str | None = None,
) -> list[Sample]:
    """Samples of ``run_id`` in the order they were stored, after ``since_seq`` if given."""
    sql = f"SELECT {', '.join(SAMPLE_FIELDS)} FROM samples WHERE run_id = ?"
    params: list[Any] = [run_id]
    if since_seq is not None:
        sql += " AND seq > ?"
        params.append(int(since_seq))
    if device_id is not None:
        sql += " AND device_id = ?"
        params.append(device_id)
    return list(starmap(Sample, conn.execute(sql + " ORDER BY seq", params)))


def last_seq(conn: sqlite3.Connection, run_id: str) -> int:
    row = conn.execute("SELECT MAX(seq) FROM samples WHERE run_id = ?", (run_id,)).fetchone()
    return int(row[0] or 0)


def select_totals(conn: sqlite3.Connection, by: str, flt: RunFilter) -> list[dict[str, Any]]:
    """Count, duration, energy and CO2 of the runs matching ``flt``, grouped by ``by``.

    Groups come largest energy first, days in date order.
    """
    if by not in TOTALS_BY:
        raise ConfigError(f"totals by={by!r} is not one of: {', '.join(TOTALS_BY)}")
    dim = _totals_dimension(by, flt)
    if dim is not None and not _keeps_totals(conn):
        dim = None  # a file not upgraded yet, opened read-only
    groups = _runs_totals(conn, by, flt) if dim is None else _kept_totals(conn, by, dim, flt)
    rows = [{by: key, **dict(zip(_SUMS, sums, strict=True))} for key, sums in groups.items()]
    if by == "day":
        return sorted(rows, key=lambda row: str(row["day"]))
    return sorted(rows, key=lambda row: -float(row["energy_j"] or 0.0))


def _totals_dimension(by: str, flt: RunFilter) -> str | None:
    """The ``run_totals`` dimension that holds these totals, or None: add up the runs."""
    if (flt.kernel, flt.status, flt.tag, flt.origin) != (None, None, None, None):
        return None
    filtered = [dim for dim in TOTAL_DIMENSIONS if getattr(flt, dim) is not None]
    if not filtered:
        return "phase" if by == "day" else by  # phases make the fewest groups per day
    if len(filtered) == 1 and by in ("day", filtered[0]):
        return filtered[0]
    return None


def _keeps_totals(conn: sqlite3.Connection) -> bool:
    found = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'run_totals'"
    ).fetchone()
    return found is not None


def _runs_totals(
    conn: sqlite3.Connection, by: str, flt: RunFilter, before: str | None = None
) -> dict[Any, list[Any]]:
    """Totals added up from the runs themselves (only runs started before ``before``)."""
    key = "substr(started_at, 1, 10)" if by == "day" else by
    where, params = flt.where()
    if before is not None:
        where += " AND started_at < ?"
        params.append(before)
    sums = ", ".join(f"SUM({c})" for c in TOTAL_COLUMNS)
    sql = f"SELECT {key} AS key, COUNT(*), {sums} FROM runs WHERE {where} GROUP BY key"
    return {row[0]: list(row[1:]) for row in conn.execute(sql, params)}


def _kept_totals(
    conn: sqlite3.Connection, by: str, dim: str, flt: RunFilter
) -> dict[Any, list[Any]]:
    """Totals from ``run_totals``; the day ``since`` falls in is added up from its runs."""
    group = "day" if by == "day" else "key"
    clause, params = flt.match(dim, "key")
    bound = since_iso(flt.since)
    if bound is not None:
        clause += " AND day > ?"
        params.append(bound[:10])
    sums = ", ".join(f"SUM({c})" for c in _SUMS)
    sql = f"SELECT {group}, {sums} FROM run_totals WHERE dim = ? AND {clause} GROUP BY {group}"
    groups = {row[0]: list(row[1:]) for row in conn.execute(sql, [dim, *params])}
    if bound is not None:
        first_day = _runs_totals(conn, by, flt, before=_day_after(bound[:10]))
        for key, sums_of_day in first_day.items():
            kept = groups.setdefault(key, [0] * len(_SUMS))
            groups[key] = [a + b for a, b in zip(kept, sums_of_day, strict=True)]
    return groups


def _day_after(day: str) -> str:
    """Text after every start time on ``day`` (``YYYY-MM-DD``) and before the next day's."""
    return day[:-1] + chr(ord(day[-1]) + 1)
