"""Distributed jobs on the server: a job's parts, from every machine, grouped as one run.

The parts of a job are the runs whose ``job_id`` (their ``job`` tag) is the
job's id, sent by every rank and host. They are grouped by the same function
as in a notebook (:func:`carbon_jupyter.jobs.group.group`), so a job adds up
the same everywhere. A part still running counts with the energy of its newest
samples (its devices' running totals).

A part whose process died is told to the server as ``lost`` by the ranks that
survive it on its host (:mod:`carbon_jupyter.jobs.lost`). When a whole host
dies, nobody is left to tell: so a part that is ``running`` but that the server
has heard nothing from for ``lost_after_s`` seconds (``serve --lost-after``) is
shown ``lost`` in its job, with the energy of its newest samples and an error
saying since when nothing came. Its *newest word* is the later of its last
``PUT`` (``updated_at``, the server's clock) and its newest sample (its start
plus the sample's ``t_s``). A part that takes no samples (a rank without a GPU)
speaks through its host: its newest word is also that of the job's other parts
on the same host. This is decided on every read, nothing is written: a part
heard from again is ``running`` again, and a later ``PUT`` of its end wins.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Connection, and_, case, func, select

from carbon_jupyter.forward.records import run_record
from carbon_jupyter.jobs.group import Job, group
from carbon_jupyter.model import Run
from carbon_jupyter.server import times
from carbon_jupyter.server.config import DEFAULT_LOST_AFTER_S
from carbon_jupyter.server.db.schema import devices, projects, runs, samples, users
from carbon_jupyter.server.queries import Principal, RunQuery, run_conditions, run_dict

MAX_PARTS = 10_000


@dataclass
class SoFar:
    """What the newest samples of a running part say."""

    #: Each device's cumulative energy at its newest sample, in joules, by device id.
    energy_j: dict[str, float] = field(default_factory=dict)
    #: The newest sample's time, in seconds since the part started.
    newest_t_s: float = 0.0


@dataclass(frozen=True)
class Heard:
    """A running part as the server last heard from it (see the module docstring)."""

    run_id: str
    job_id: str
    host: str
    started_at: str
    updated_at: str
    #: Its newest sample's time since its start, in seconds; None while it has none.
    newest_t_s: float | None


def _part_rows(conn: Connection, job_id: str, who: Principal) -> list[dict[str, Any]]:
    stmt = (
        select(runs, users.c.name.label("user"), projects.c.name.label("project"))
        .join(users, users.c.id == runs.c.user_id)
        .join(projects, projects.c.id == runs.c.project_id)
        .where(runs.c.job_id == job_id, *run_conditions(RunQuery(), who))
        .order_by(runs.c.started_at, runs.c.id)
        .limit(MAX_PARTS)
    )
    found = [run_dict(row) for row in conn.execute(stmt)]
    if not found:
        return found
    ids = [r["id"] for r in found]
    by_run: dict[str, list[dict[str, Any]]] = {}
    for d in conn.execute(
        select(devices).where(devices.c.run_id.in_(ids)).order_by(devices.c.position)
    ):
        by_run.setdefault(d.run_id, []).append(dict(d._mapping))
    for row in found:
        row["devices"] = by_run.get(row["id"], [])
    return found


def _device_totals_so_far(conn: Connection, run_ids: list[str]) -> dict[str, SoFar]:
    """Per running part with samples: each device's newest energy so far, and its newest time."""
    if not run_ids:
        return {}
    newest = (
        select(samples.c.run_id, samples.c.device_id, func.max(samples.c.seq).label("seq"))
        .where(samples.c.run_id.in_(run_ids))
        .group_by(samples.c.run_id, samples.c.device_id)
        .subquery()
    )
    stmt = select(samples.c.run_id, samples.c.device_id, samples.c.energy_j, samples.c.t_s).join(
        newest, and_(samples.c.run_id == newest.c.run_id, samples.c.seq == newest.c.seq)
    )
    out: dict[str, SoFar] = {}
    for run_id, device_id, energy_j, t_s in conn.execute(stmt):
        so_far = out.setdefault(run_id, SoFar())
        so_far.energy_j[device_id] = float(energy_j)
        so_far.newest_t_s = max(so_far.newest_t_s, float(t_s))
    return out


def _so_far(run: Run, figures: SoFar) -> Run:
    devices_now = tuple(
        replace(d, energy_j=figures.energy_j.get(d.device.device_id, d.energy_j))
        for d in run.devices
    )
    per_kind = {"cpu": 0.0, "gpu": 0.0, "ram": 0.0}
    for d in devices_now:
        per_kind[d.device.kind] += d.energy_j
    return replace(
        run,
        devices=devices_now,
        duration_s=max(run.duration_s, figures.newest_t_s),
        cpu_energy_j=per_kind["cpu"],
        gpu_energy_j=per_kind["gpu"],
        ram_energy_j=per_kind["ram"],
        energy_j=sum(per_kind.values()),
    )


def _moment(text: str | None) -> datetime | None:
    try:
        return times.parse_iso(text) if text else None
    except ValueError:
        return None


@dataclass(frozen=True)
class Silence:
    """How long the server has not heard from a running part."""

    host: str
    #: Its newest word (see the module docstring).
    newest_word: datetime
    #: Seconds from its newest word to now.
    silent_s: float


def silences(heard: Iterable[Heard], now: datetime) -> dict[str, Silence]:
    """Each running part's silence at ``now`` (an aware datetime), by run id.

    A part with samples speaks for itself; a part without any also through the
    parts of its job on its host (see the module docstring).
    """
    newest: dict[str, datetime] = {}
    by_host: dict[tuple[str, str], datetime] = {}
    parts = list(heard)
    for part in parts:
        words = [_moment(part.updated_at)]
        start = _moment(part.started_at)
        if start is not None and part.newest_t_s is not None:
            words.append(start + timedelta(seconds=part.newest_t_s))
        known = [w for w in words if w is not None]
        latest = max(known) if known else now  # nothing readable: taken as heard from now
        newest[part.run_id] = latest
        key = (part.job_id, part.host)
        by_host[key] = max(by_host.get(key, latest), latest)
    out = {}
    for part in parts:
        latest = newest[part.run_id]
        if part.newest_t_s is None:
            latest = max(latest, by_host[(part.job_id, part.host)])
        out[part.run_id] = Silence(part.host, latest, (now - latest).total_seconds())
    return out


def _stale(silent: dict[str, Silence], lost_after_s: float) -> dict[str, Silence]:
    """The parts silent for longer than ``lost_after_s`` seconds."""
    return {run_id: s for run_id, s in silent.items() if s.silent_s > lost_after_s}


def _as_lost(run: Run, silence: Silence, lost_after_s: float) -> Run:
    """``run`` shown lost: ended at its newest word, with an error that says since when."""
    error = (
        f"no word from host {silence.host} for {silence.silent_s:.0f} s (a running part is "
        f"shown lost after {lost_after_s:g} s without word: its process or its host has "
        "stopped, or cannot reach the server)"
    )
    start = _moment(run.started_at)
    duration_s = run.duration_s
    if start is not None:
        duration_s = max(duration_s, (silence.newest_word - start).total_seconds())
    return replace(
        run,
        status="lost",
        ended_at=times.utc_iso(silence.newest_word),
        duration_s=duration_s,
        error=run.error or error,
    )


def get_job(
    conn: Connection,
    job_id: str,
    who: Principal,
    *,
    lost_after_s: float = DEFAULT_LOST_AFTER_S,
    now: datetime | None = None,
) -> Job | None:
    """Job ``job_id`` from the parts ``who`` may see; None when there are none.

    A running part silent for more than ``lost_after_s`` seconds at ``now``
    (default: the server's clock) is shown ``lost``.
    """
    rows = _part_rows(conn, job_id, who)
    if not rows:
        return None
    parts = [run_record(r) for r in rows]
    running = [r for r in rows if r["status"] == "running"]
    figures = _device_totals_so_far(conn, [r["id"] for r in running])
    parts = [_so_far(p, figures[p.id]) if p.id in figures else p for p in parts]
    heard = [
        Heard(
            r["id"], job_id, r["host"] or "?", r["started_at"], r["updated_at"],
            figures[r["id"]].newest_t_s if r["id"] in figures else None,
        )
        for r in running
    ]  # fmt: skip
    stale = _stale(silences(heard, now or datetime.now(timezone.utc)), lost_after_s)
    parts = [_as_lost(p, stale[p.id], lost_after_s) if p.id in stale else p for p in parts]
    return group(job_id, parts)


def _running_parts(conn: Connection, job_ids: list[str], who: Principal) -> list[Heard]:
    """The running parts of ``job_ids`` that ``who`` may see, with their newest sample's time."""
    running = (
        select(runs.c.id, runs.c.job_id, runs.c.host, runs.c.started_at, runs.c.updated_at)
        .where(
            runs.c.job_id.in_(job_ids),
            runs.c.status == "running",
            *run_conditions(RunQuery(), who),
        )
        .subquery()
    )
    newest_seq = (
        select(samples.c.run_id, func.max(samples.c.seq).label("seq"))
        .where(samples.c.run_id.in_(select(running.c.id)))
        .group_by(samples.c.run_id)
        .subquery()
    )
    newest = and_(samples.c.run_id == newest_seq.c.run_id, samples.c.seq == newest_seq.c.seq)
    joined = running.outerjoin(newest_seq, newest_seq.c.run_id == running.c.id)
    stmt = select(running, samples.c.t_s).select_from(joined.outerjoin(samples, newest))
    return [
        Heard(row.id, row.job_id, row.host or "?", row.started_at, row.updated_at,
              None if row.t_s is None else float(row.t_s))
        for row in conn.execute(stmt)
    ]  # fmt: skip


def list_jobs(
    conn: Connection,
    who: Principal,
    *,
    limit: int = 100,
    offset: int = 0,
    lost_after_s: float = DEFAULT_LOST_AFTER_S,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """The jobs ``who`` may see, newest first: id, parts, hosts, first start, status counts.

    ``running`` counts the parts still running and heard from; ``lost`` the parts
    lost, and those running but silent for more than ``lost_after_s`` seconds
    (as :func:`get_job` shows them).
    """
    stmt = (
        select(
            runs.c.job_id,
            func.count().label("parts"),
            func.count(func.distinct(runs.c.host)).label("hosts"),
            func.min(runs.c.started_at).label("started_at"),
            func.min(runs.c.label).label("label"),
            func.sum(case((runs.c.status == "running", 1), else_=0)).label("running"),
            func.sum(case((runs.c.status == "lost", 1), else_=0)).label("lost"),
        )
        .where(runs.c.job_id.is_not(None), *run_conditions(RunQuery(), who))
        .group_by(runs.c.job_id)
        .order_by(func.min(runs.c.started_at).desc())
        .limit(limit)
        .offset(offset)
    )
    found = [
        {
            "job": row.job_id,
            "label": row.label,
            "parts": int(row.parts),
            "hosts": int(row.hosts),
            "started_at": row.started_at,
            "running": int(row.running or 0),
            "lost": int(row.lost or 0),
        }
        for row in conn.execute(stmt)
    ]
    live = [j["job"] for j in found if j["running"]]
    if not live:
        return found
    heard = _running_parts(conn, live, who)
    stale = _stale(silences(heard, now or datetime.now(timezone.utc)), lost_after_s)
    silent_by_job: dict[str, int] = {}
    for part in heard:
        if part.run_id in stale:
            silent_by_job[part.job_id] = silent_by_job.get(part.job_id, 0) + 1
    for job in found:
        silent = silent_by_job.get(job["job"], 0)
        job["running"] -= silent
        job["lost"] += silent
    return found
