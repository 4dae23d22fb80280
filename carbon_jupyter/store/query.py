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
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
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
    parse_time,
    run_from_row,
    utc_iso,
)

TOTALS_BY = ("label", "notebook", "phase", "day")
_AGO = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)\s*$", re.IGNORECASE)
_UNIT_S = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


class RunNotFoundError(StoreError, KeyError):
    """No stored run has the id (or id prefix) asked for."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def since_iso(since: datetime | timedelta | str | None) -> str | None:
    """The UTC ISO-8601 lower bound that ``since`` stands for (see the module docstring)."""
    if since is None:
        return None
    now = datetime.now(timezone.utc)
    if isinstance(since, timedelta):
        return utc_iso(now - since)
    if isinstance(since, datetime):
        return utc_iso(since)
    if isinstance(since, str):
        match = _AGO.match(since)
        if match:
            return utc_iso(now - timedelta(seconds=float(match[1]) * _UNIT_S[match[2].lower()]))
        try:
            return utc_iso(parse_time(since))
        except ValueError:
            pass
    raise ConfigError(
        f"since={since!r} is neither a time nor a span: give a datetime, ISO-8601 text "
        "such as '2024-05-01' or '2024-05-01T12:00', a timedelta, or '30m', '24h', '7d'"
    )


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

    def where(self) -> tuple[str, list[Any]]:
        """SQL ``WHERE`` text (``1`` when nothing is filtered) and its parameters."""
        clauses: list[str] = []
        params: list[Any] = []
        if self.label is not None:
            clauses.append("label GLOB ?" if re.search(r"[*?\[]", self.label) else "label = ?")
            params.append(self.label)
        for column, value in (("phase", self.phase), ("kernel", self.kernel),
                              ("origin", self.origin)):  # fmt: skip
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if self.notebook is not None:
            clauses.append("(notebook = ? OR notebook LIKE ? ESCAPE '\\')")
            escaped = re.sub(r"([\\%_])", r"\\\1", self.notebook)
            params += [self.notebook, f"%/{escaped}"]
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


def select_runs(conn: sqlite3.Connection, flt: RunFilter, limit: int | None) -> list[Run]:
    """Runs matching ``flt``, newest first, at most ``limit`` (None: all)."""
    where, params = flt.where()
    sql = f"SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE {where} ORDER BY started_at DESC"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(int(limit))
    rows = conn.execute(sql, params).fetchall()
    devices = _devices_of(conn, [row[0] for row in rows])
    return [run_from_row(row, devices[row[0]]) for row in rows]


def select_run_rows(
    conn: sqlite3.Connection, flt: RunFilter, limit: int | None, columns: Sequence[str]
) -> list[dict[str, Any]]:
    """Runs matching ``flt`` as plain rows of ``columns``, newest first."""
    where, params = flt.where()
    sql = f"SELECT {', '.join(columns)} FROM runs WHERE {where} ORDER BY started_at DESC"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(int(limit))
    return [dict(zip(columns, row, strict=True)) for row in conn.execute(sql, params)]


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
    """Count, duration, energy and CO2 of the runs matching ``flt``, grouped by ``by``."""
    if by not in TOTALS_BY:
        raise ConfigError(f"totals by={by!r} is not one of: {', '.join(TOTALS_BY)}")
    key = "substr(started_at, 1, 10)" if by == "day" else by
    order = "key ASC" if by == "day" else "energy_j DESC"
    where, params = flt.where()
    sql = (
        f"SELECT {key} AS key, COUNT(*), SUM(duration_s), SUM(energy_j), SUM(cpu_energy_j), "
        f"SUM(gpu_energy_j), SUM(ram_energy_j), SUM(co2_g) FROM runs WHERE {where} "
        f"GROUP BY key ORDER BY {order}"
    )
    names = ("count", "duration_s", "energy_j", "cpu_energy_j", "gpu_energy_j",
             "ram_energy_j", "co2_g")  # fmt: skip
    rows = conn.execute(sql, params)
    return [{by: row[0], **dict(zip(names, row[1:], strict=True))} for row in rows]
