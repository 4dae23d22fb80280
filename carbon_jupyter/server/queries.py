"""What the team server's database holds, read back for the API and the dashboard.

Pure SQLAlchemy Core over a ``Connection``, the same on SQLite and
PostgreSQL. Every function takes the :class:`Principal` asking: an ``admin``
sees every project, anyone else only the runs of their own project, so a
filter naming another project finds nothing.

Runs come back as dicts: the ``runs`` columns (see
:mod:`carbon_jupyter.server.db.schema`) plus ``user`` and ``project`` names,
with ``tags``, ``warnings``, ``hardware`` and ``versions`` decoded from JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import time, timezone
from operator import itemgetter
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, Table, and_, func, select, true

from carbon_jupyter.server import times
from carbon_jupyter.server.db.schema import (
    SUM_COLUMNS,
    day_totals,
    devices,
    projects,
    runs,
    samples,
    users,
)

#: The dimensions totals can be grouped by.
DIMENSIONS = ("user", "project", "label", "phase", "host", "day", "status")
#: The sums every totals row carries.
SUMS = SUM_COLUMNS
#: The most distinct values :func:`facets` lists per dimension.
MAX_FACET_VALUES = 500
#: Run columns kept as JSON text, decoded on the way out.
_JSON_OBJECTS = ("tags", "hardware", "versions", "metrics")
SCOPES = ("read", "ingest", "admin")
J_PER_KWH = 3.6e6


@dataclass(frozen=True)
class Principal:
    """Who is asking: the user and project of a token, and its scope.

    ``read`` reads its project, ``ingest`` also sends runs into it, ``admin``
    reads and writes every project and manages tokens.
    """

    user: str
    project: str
    scope: str
    #: The database ids of ``user`` and ``project``, when known (filled in by the server).
    user_id: int | None = field(default=None, compare=False)
    project_id: int | None = field(default=None, compare=False)

    @property
    def is_admin(self) -> bool:
        return self.scope == "admin"

    @property
    def can_ingest(self) -> bool:
        return self.scope in ("ingest", "admin")


#: Who every request is when the database holds no tokens (the open server).
OPEN_PRINCIPAL = Principal(user="local", project="default", scope="admin")


@dataclass(frozen=True)
class RunQuery:
    """Filters on runs; ``None`` means "any".

    ``label`` matches exactly, or as a pattern when it holds ``*`` (any
    characters, case-insensitive). ``since``/``until`` are ISO-8601 text
    compared with ``started_at`` (``since`` inclusive, ``until`` exclusive).
    """

    user: str | None = None
    project: str | None = None
    label: str | None = None
    phase: str | None = None
    host: str | None = None
    status: str | None = None
    since: str | None = None
    until: str | None = None
    limit: int = 100
    offset: int = 0


def _like_pattern(label: str) -> str:
    escaped = label.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")


def _id_named(table: Table, name: str) -> ColumnElement[Any]:
    """The id of the user or project called ``name`` (NULL, so nothing matches, if none)."""
    return select(table.c.id).where(table.c.name == name).scalar_subquery()


def _own_project(who: Principal) -> ColumnElement[Any] | int:
    return who.project_id if who.project_id is not None else _id_named(projects, who.project)


def _whole_day(stamp: str) -> str | None:
    """The date of stored timestamp ``stamp`` when it is midnight UTC exactly, else None."""
    moment = times.parse_iso(stamp).astimezone(timezone.utc)
    return moment.date().isoformat() if moment.time() == time(0) else None


def _conditions(q: RunQuery, who: Principal, table: Table = runs) -> list[ColumnElement[bool]]:
    """``q``'s filters and ``who``'s access as conditions on ``runs`` (or ``day_totals``).

    Users and projects are matched by id (their names looked up once), so no
    join is needed. ``since``/``until`` at midnight UTC compare ``day`` only
    (the same runs, read from the day index); any other time compares
    ``started_at`` too, beside a ``day`` bound that narrows the scan. On
    ``day_totals`` only the filters it is kept by may be given (see
    :func:`kept_totals_serve`).
    """
    t = table.c
    where: list[ColumnElement[bool]] = []
    if not who.is_admin:
        where.append(t.project_id == _own_project(who))
    if q.user is not None:
        where.append(t.user_id == _id_named(users, q.user))
    if q.project is not None:
        where.append(t.project_id == _id_named(projects, q.project))
    if q.label is not None:
        if "*" in q.label:
            where.append(runs.c.label.ilike(_like_pattern(q.label), escape="\\"))
        else:
            where.append(runs.c.label == q.label)
    for name in ("phase", "host", "status"):
        value = getattr(q, name)
        if value is not None:
            where.append(t[name] == value)
    if q.since is not None:
        since = times.canonical(q.since)
        day = _whole_day(since)
        if day is not None:
            where.append(t.day >= day)
        else:
            where += [t.day >= times.day_of(since), runs.c.started_at >= since]
    if q.until is not None:
        until = times.canonical(q.until)
        day = _whole_day(until)
        if day is not None:
            where.append(t.day < day)
        else:
            where += [t.day <= times.day_of(until), runs.c.started_at < until]
    return where


_USER_NAME = select(users.c.name).where(users.c.id == runs.c.user_id).correlate(runs)
_PROJECT_NAME = select(projects.c.name).where(projects.c.id == runs.c.project_id).correlate(runs)


#: The conditions of ``q`` and ``who``'s access, for other modules' queries on ``runs``.
run_conditions = _conditions


def _run_select(q: RunQuery, who: Principal) -> Select[Any]:
    return select(
        runs,
        _USER_NAME.scalar_subquery().label("user"),
        _PROJECT_NAME.scalar_subquery().label("project"),
    ).where(and_(true(), *_conditions(q, who)))


def _decode(text: str | None, empty: Any) -> Any:
    if not text:
        return empty
    try:
        return json.loads(text)
    except ValueError:
        return empty


def run_dict(row: Any) -> dict[str, Any]:
    """A run row (with ``user`` and ``project``) as a dict with its JSON columns decoded."""
    out = dict(row._mapping)
    for name in _JSON_OBJECTS:
        out[name] = _decode(out.get(name), {})
    out["warnings"] = _decode(out.get("warnings"), [])
    return out


def list_runs(conn: Connection, q: RunQuery, who: Principal) -> list[dict[str, Any]]:
    """The runs matching ``q`` that ``who`` may see, newest first, ``q.limit`` from ``q.offset``."""
    stmt = (
        _run_select(q, who)
        .order_by(runs.c.started_at.desc(), runs.c.id.desc())
        .limit(q.limit)
        .offset(q.offset)
    )
    return [run_dict(row) for row in conn.execute(stmt)]


def count_runs(conn: Connection, q: RunQuery, who: Principal) -> int:
    """How many runs match ``q`` (ignoring ``limit`` and ``offset``)."""
    stmt = select(func.count()).select_from(runs).where(and_(true(), *_conditions(q, who)))
    return int(conn.execute(stmt).scalar_one())


def run_visible(conn: Connection, run_id: str, who: Principal) -> bool:
    """Whether run ``run_id`` exists and ``who`` may see it."""
    stmt = select(runs.c.id).where(runs.c.id == run_id)
    if not who.is_admin:
        stmt = stmt.where(runs.c.project_id == _own_project(who))
    return conn.execute(stmt).first() is not None


def get_run(conn: Connection, run_id: str, who: Principal) -> dict[str, Any] | None:
    """One run with its ``devices`` (in the client's order), or None if ``who`` cannot see it."""
    row = conn.execute(_run_select(RunQuery(), who).where(runs.c.id == run_id)).first()
    if row is None:
        return None
    out = run_dict(row)
    device_rows = conn.execute(
        select(devices).where(devices.c.run_id == run_id).order_by(devices.c.position)
    )
    out["devices"] = [dict(d._mapping) for d in device_rows]
    return out


_SAMPLE_COLUMNS = (
    samples.c.seq,
    samples.c.t_s,
    samples.c.device_id,
    samples.c.power_w,
    samples.c.energy_j,
    samples.c.process_energy_j,
    samples.c.utilization_pct,
    samples.c.memory_used_b,
)


def run_samples(
    conn: Connection,
    run_id: str,
    who: Principal,
    since_seq: int = 0,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """The samples of run ``run_id`` after ``since_seq``, by ``seq`` ([] if it is not visible)."""
    if not run_visible(conn, run_id, who):
        return []
    stmt = (
        select(*_SAMPLE_COLUMNS)
        .where(samples.c.run_id == run_id, samples.c.seq > since_seq)
        .order_by(samples.c.seq)
    )
    if limit is not None:
        stmt = stmt.limit(limit)
    return [dict(row._mapping) for row in conn.execute(stmt)]


#: The dimensions ``day_totals`` is kept by, and the filters it can apply.
_KEPT_DIMENSIONS = frozenset(("day", "user", "project", "status"))
#: Dimensions held as ids, and the table that names them.
_NAMED = {"user": ("user_id", users), "project": ("project_id", projects)}
#: Dimensions a run may leave empty (None).
_NULLABLE = frozenset(("label", "phase", "host"))


def _dimensions(by: str | Sequence[str]) -> tuple[str, ...]:
    dims = (by,) if isinstance(by, str) else tuple(by)
    if not dims:
        raise ValueError(f"give at least one dimension to total by: {', '.join(DIMENSIONS)}")
    for d in dims:
        if d not in DIMENSIONS:
            raise ValueError(f"cannot total by {d!r}: give one of {', '.join(DIMENSIONS)}")
    return dims


def kept_totals_serve(dims: Sequence[str], q: RunQuery) -> bool:
    """Whether ``day_totals`` answers totals by ``dims`` over ``q`` (else the runs are summed).

    It does when every dimension is day, user, project or status, no label,
    phase or host filter is given, and ``since``/``until`` fall at midnight UTC.
    """
    if not _KEPT_DIMENSIONS.issuperset(dims):
        return False
    if q.label is not None or q.phase is not None or q.host is not None:
        return False
    bounds = (b for b in (q.since, q.until) if b is not None)
    return all(_whole_day(times.canonical(b)) is not None for b in bounds)


def _names(conn: Connection, table: Table, ids: Iterable[Any]) -> dict[Any, str]:
    wanted = sorted({i for i in ids if i is not None})
    if not wanted:
        return {}
    stmt = select(table.c.id, table.c.name).where(table.c.id.in_(wanted))
    return {row.id: str(row.name) for row in conn.execute(stmt)}


def _sort(rows: list[dict[str, Any]], dims: Sequence[str]) -> None:
    """By day when grouping by day, then CO2 largest first, then the dimensions (None first).

    Three stable sorts, last key first: much faster than one sort by a built key.
    """
    if _NULLABLE.intersection(dims):
        rows.sort(key=lambda r: tuple((r[d] is not None, r[d] or "") for d in dims))
    else:
        rows.sort(key=itemgetter(*dims))
    rows.sort(key=itemgetter("co2_g"), reverse=True)
    if "day" in dims:
        rows.sort(key=itemgetter("day"))


def totals(
    conn: Connection, by: str | Sequence[str], q: RunQuery, who: Principal
) -> list[dict[str, Any]]:
    """Sums over the runs matching ``q``, one row per value of the ``by`` dimensions.

    Each row holds the dimensions, ``runs`` (a count) and the sums of
    :data:`SUMS`. Rows are ordered by day when grouping by day, then by CO2,
    largest first, then by the dimensions. ``q.limit``/``q.offset`` are not
    applied (every group is returned).

    When :func:`kept_totals_serve` says so the sums come from ``day_totals``
    (see :mod:`carbon_jupyter.server.rollup`), else from the runs (through
    the index that covers totals). Either way users and projects are grouped
    by id and named afterwards.
    """
    dims = _dimensions(by)
    kept = kept_totals_serve(dims, q)
    table = day_totals if kept else runs
    group = [table.c[_NAMED[d][0] if d in _NAMED else d].label(d) for d in dims]
    count = func.sum(table.c.runs) if kept else func.count()
    stmt = (
        select(*group, count.label("runs"), *(func.sum(table.c[s]).label(s) for s in SUMS))
        .where(and_(true(), *_conditions(q, who, table)))
        .group_by(*group)
    )
    found = conn.execute(stmt).all()
    # Sums of float columns are floats, counts and sums of counts ints, on both databases.
    keys = (*dims, "runs", *SUMS)
    out = [dict(zip(keys, row, strict=True)) for row in found]
    for d in dims:
        if d in _NAMED:
            names = _names(conn, _NAMED[d][1], {item[d] for item in out})
            for item in out:
                item[d] = names.get(item[d])
    _sort(out, dims)
    return out


def _latest_sample_figures(conn: Connection, run_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Per run: the sum over devices of each device's newest sample (energy, power, time)."""
    ids = list(run_ids)
    if not ids:
        return {}
    newest = (
        select(
            samples.c.run_id,
            samples.c.device_id,
            func.max(samples.c.seq).label("seq"),
        )
        .where(samples.c.run_id.in_(ids))
        .group_by(samples.c.run_id, samples.c.device_id)
        .subquery()
    )
    stmt = (
        select(
            samples.c.run_id,
            func.sum(samples.c.energy_j).label("energy_j"),
            func.sum(func.coalesce(samples.c.process_energy_j, samples.c.energy_j)).label(
                "process_energy_j"
            ),
            func.sum(samples.c.power_w).label("power_w"),
            func.max(samples.c.t_s).label("t_s"),
            func.max(samples.c.seq).label("seq"),
        )
        .select_from(
            samples.join(
                newest,
                and_(samples.c.run_id == newest.c.run_id, samples.c.seq == newest.c.seq),
            )
        )
        .group_by(samples.c.run_id)
    )
    return {row.run_id: dict(row._mapping) for row in conn.execute(stmt)}


def live_runs(conn: Connection, who: Principal, *, limit: int = 200) -> list[dict[str, Any]]:
    """Runs still ``running``, newest first, with their figures so far.

    Where the run row still says 0 J (it is updated only when the run ends), its
    ``energy_j`` is the sum of each device's newest sample and ``co2_g`` follows
    from it; ``power_w`` (the newest power per device, summed), ``last_t_s``
    (seconds since the run started) and ``last_seq`` tell how far it has got.
    """
    stmt = (
        _run_select(RunQuery(status="running"), who)
        .order_by(runs.c.started_at.desc(), runs.c.id.desc())
        .limit(limit)
    )
    found = [run_dict(row) for row in conn.execute(stmt)]
    figures_of = live_figures(conn, found)
    for run in found:
        figures = figures_of.get(run["id"])
        run["power_w"] = figures["power_w"] if figures else None
        run["last_t_s"] = figures["t_s"] if figures else None
        run["last_seq"] = figures["seq"] if figures else 0
        if figures and not run["energy_j"]:
            run["energy_j"] = figures["energy_j"]
            if figures["co2_g"] is not None:
                run["co2_g"] = figures["co2_g"]
            if not run["duration_s"] and figures["t_s"] is not None:
                run["duration_s"] = float(figures["t_s"])
    return found


def live_figures(conn: Connection, running: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Figures so far of runs still running, from their newest samples.

    Per run id: ``energy_j`` (the run's attribution: the process share or the
    machine), ``co2_g`` from it (None without an intensity), ``power_w`` (the
    newest power per device, summed), ``t_s`` (seconds since the run started)
    and ``seq`` (the newest sample's number).
    """
    rows = list(running)
    latest = _latest_sample_figures(conn, (r["id"] for r in rows))
    out: dict[str, dict[str, Any]] = {}
    for run in rows:
        figures = latest.get(run["id"])
        if not figures:
            continue
        key = "process_energy_j" if run["attribution"] == "process" else "energy_j"
        energy_j = float(figures[key] or 0.0)
        co2_g = None
        if run["intensity_g_per_kwh"] is not None:
            pue = run["pue"] if run["pue"] is not None else 1.0
            co2_g = energy_j * pue * run["intensity_g_per_kwh"] / J_PER_KWH
        out[run["id"]] = {
            "energy_j": energy_j,
            "co2_g": co2_g,
            "power_w": figures["power_w"],
            "t_s": figures["t_s"],
            "seq": int(figures["seq"]),
        }
    return out


def facets(conn: Connection, who: Principal) -> dict[str, list[str]]:
    """The distinct users, projects, labels, phases and hosts of the runs ``who`` may see.

    At most :data:`MAX_FACET_VALUES` of each, in order. Users and projects
    come from ``day_totals`` (a row per day, project, user and status that has
    runs); labels, phases and hosts from the runs: for an admin each from its
    index, for a project's member in one pass over the project's runs.
    """
    out: dict[str, list[str]] = {}
    kept_where = _conditions(RunQuery(), who, day_totals)
    for name, (id_column, table) in (("users", _NAMED["user"]), ("projects", _NAMED["project"])):
        having = select(day_totals.c[id_column]).where(and_(true(), *kept_where)).distinct()
        stmt = (
            select(table.c.name)
            .where(table.c.id.in_(having))
            .order_by(table.c.name)
            .limit(MAX_FACET_VALUES)
        )
        out[name] = [str(v) for v in conn.execute(stmt).scalars()]
    columns = {"labels": runs.c.label, "phases": runs.c.phase, "hosts": runs.c.host}
    where = _conditions(RunQuery(), who)
    if who.is_admin:
        for name, column in columns.items():
            stmt = (
                select(column)
                .where(column.is_not(None))
                .distinct()
                .order_by(column)
                .limit(MAX_FACET_VALUES)
            )
            out[name] = [str(v) for v in conn.execute(stmt).scalars()]
        return out
    seen: dict[str, set[str]] = {name: set() for name in columns}
    for row in conn.execute(select(*columns.values()).where(*where).distinct()):
        for name, value in zip(columns, row, strict=True):
            if value is not None:
                seen[name].add(str(value))
    out.update({name: sorted(values)[:MAX_FACET_VALUES] for name, values in seen.items()})
    return out
