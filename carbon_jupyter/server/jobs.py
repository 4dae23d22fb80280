"""Distributed jobs on the server: a job's parts, from every machine, grouped as one run.

The parts of a job are the runs whose ``job_id`` (their ``job`` tag) is the
job's id, sent by every rank and host. They are grouped by the same function
as in a notebook (:func:`carbon_jupyter.jobs.group.group`), so a job adds up
the same everywhere. A part still running counts with the energy of its newest
samples (its devices' running totals).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy import Connection, and_, case, func, select

from carbon_jupyter.forward.records import run_record
from carbon_jupyter.jobs.group import Job, group
from carbon_jupyter.model import Run
from carbon_jupyter.server.db.schema import devices, projects, runs, samples, users
from carbon_jupyter.server.queries import Principal, RunQuery, run_conditions, run_dict

MAX_PARTS = 10_000


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


def _device_totals_so_far(conn: Connection, run_ids: list[str]) -> dict[str, dict[str, float]]:
    """Per running part: each device's newest cumulative energy from its samples."""
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
    out: dict[str, dict[str, float]] = {}
    for run_id, device_id, energy_j, t_s in conn.execute(stmt):
        entry = out.setdefault(run_id, {})
        entry[device_id] = float(energy_j)
        entry["\0t_s"] = max(entry.get("\0t_s", 0.0), float(t_s))
    return out


def _so_far(run: Run, figures: dict[str, float]) -> Run:
    devices_now = tuple(
        replace(d, energy_j=figures.get(d.device.device_id, d.energy_j)) for d in run.devices
    )
    per_kind = {"cpu": 0.0, "gpu": 0.0, "ram": 0.0}
    for d in devices_now:
        per_kind[d.device.kind] += d.energy_j
    return replace(
        run,
        devices=devices_now,
        duration_s=max(run.duration_s, figures.get("\0t_s", 0.0)),
        cpu_energy_j=per_kind["cpu"],
        gpu_energy_j=per_kind["gpu"],
        ram_energy_j=per_kind["ram"],
        energy_j=sum(per_kind.values()),
    )


def get_job(conn: Connection, job_id: str, who: Principal) -> Job | None:
    """Job ``job_id`` from the parts ``who`` may see; None when there are none."""
    rows = _part_rows(conn, job_id, who)
    if not rows:
        return None
    parts = [run_record(r) for r in rows]
    running = [p.id for p in parts if p.status == "running"]
    figures = _device_totals_so_far(conn, running)
    parts = [_so_far(p, figures[p.id]) if p.id in figures else p for p in parts]
    return group(job_id, parts)


def list_jobs(
    conn: Connection, who: Principal, *, limit: int = 100, offset: int = 0
) -> list[dict[str, Any]]:
    """The jobs ``who`` may see, newest first: id, parts, hosts, first start, status counts."""
    stmt = (
        select(
            runs.c.job_id,
            func.count().label("parts"),
            func.count(func.distinct(runs.c.host)).label("hosts"),
            func.min(runs.c.started_at).label("started_at"),
            func.min(runs.c.label).label("label"),
            func.sum(case((runs.c.status == "running", 1), else_=0)).label("running"),
        )
        .where(runs.c.job_id.is_not(None), *run_conditions(RunQuery(), who))
        .group_by(runs.c.job_id)
        .order_by(func.min(runs.c.started_at).desc())
        .limit(limit)
        .offset(offset)
    )
    return [
        {
            "job": row.job_id,
            "label": row.label,
            "parts": int(row.parts),
            "hosts": int(row.hosts),
            "started_at": row.started_at,
            "running": int(row.running or 0),
        }
        for row in conn.execute(stmt)
    ]
