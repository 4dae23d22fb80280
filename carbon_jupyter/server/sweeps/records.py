"""Sweeps in the server's database: submitted, claimed by an executor, followed, finished.

A sweep is ``queued`` when submitted, ``running`` while a server process
holds it (``claimed_by``, renewed every few seconds in ``heartbeat_at``), then
``done``, ``cancelled`` (a cancel was asked for) or ``failed`` (its executor
could not run it at all; a configuration that fails is a run with status
``error``, and the sweep goes on). A ``running`` sweep whose holder stopped
renewing (:data:`STALE_S`) is taken over by another server process, which
runs only what is missing: a configuration is done when it has a run ``ok``
or ``error``. Resuming a sweep puts it back in the queue the same way.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, or_, select, update

from carbon_jupyter.server import rollup, times
from carbon_jupyter.server.db.engine import writing
from carbon_jupyter.server.db.schema import projects, runs, sweeps, users
from carbon_jupyter.server.queries import Principal, run_dict

#: A running sweep whose holder has not renewed its claim for this long is taken over.
STALE_S = 60.0
#: Sweep states, in the order a sweep goes through them.
STATES = ("queued", "running", "done", "cancelled", "failed")
FINISHED = ("done", "cancelled", "failed")
#: The ``executor`` of a sweep run on a client (``carbon-jupyter sweep`` with forwarding):
#: the server only has its runs.
CLIENT = "client"


@dataclass(frozen=True)
class Claimed:
    """A sweep an executor took: what it needs to run it."""

    id: str
    spec: dict[str, Any]
    executor: str
    user: str
    project: str
    user_id: int
    project_id: int
    had_token: int | None


def _ago(seconds: float) -> str:
    return times.utc_iso(datetime.now(timezone.utc) - timedelta(seconds=seconds))


def create(engine: Engine, who: Principal, spec: dict[str, Any], executor: str, total: int) -> str:
    """Queue a sweep of ``who``'s project; its new id."""
    sweep_id = uuid.uuid4().hex[:12]
    now = times.now_iso()
    with writing(engine) as conn:
        conn.execute(
            sweeps.insert().values(
                id=sweep_id,
                project_id=who.project_id,
                user_id=who.user_id,
                status="queued",
                executor=executor,
                spec=json.dumps(spec),
                total=total,
                cancel_requested=0,
                created_at=now,
                updated_at=now,
            )
        )
    return sweep_id


def _visible(who: Principal) -> Any:
    return True if who.is_admin else sweeps.c.project_id == who.project_id


_SELECT = (
    select(sweeps, users.c.name.label("user"), projects.c.name.label("project"))
    .join(users, users.c.id == sweeps.c.user_id)
    .join(projects, projects.c.id == sweeps.c.project_id)
)


def _summary(row: Any) -> dict[str, Any]:
    doc = json.loads(row.spec)
    target = doc.get("target") or {}
    return {
        "id": row.id,
        "status": row.status,
        "user": row.user,
        "project": row.project,
        "executor": row.executor,
        "target": {"kind": target.get("kind"), "name": target.get("name")},
        "params": doc.get("params") or [],
        "threads": doc.get("threads"),
        "gpus": doc.get("gpus"),
        "repeat": doc.get("repeat") or 1,
        "phase": doc.get("phase"),
        "label": doc.get("label"),
        "metric": doc.get("metric"),
        "total": row.total,
        "cancel_requested": bool(row.cancel_requested),
        "error": row.error,
        "created_at": row.created_at,
        "started_at": row.started_at,
        "ended_at": row.ended_at,
    }


def get(conn: Connection, sweep_id: str, who: Principal) -> dict[str, Any] | None:
    """Sweep ``sweep_id`` as ``who`` may see it (None when it may not), with its run counts."""
    row = conn.execute(_SELECT.where(sweeps.c.id == sweep_id, _visible(who))).first()
    if row is None:
        return _from_runs(conn, sweep_id, who)
    out = _summary(row)
    out["counts"] = counts(conn, sweep_id)
    out["finished"] = finished_count(conn, sweep_id)
    return out


def _run_visible(who: Principal) -> Any:
    return True if who.is_admin else runs.c.project_id == who.project_id


def _from_runs(conn: Connection, sweep_id: str, who: Principal) -> dict[str, Any] | None:
    """A sweep run on a client, as its forwarded runs tell it (None when there are none)."""
    return _client_sweeps(conn, [sweep_id], who).get(sweep_id)


def _client_sweeps(
    conn: Connection, sweep_ids: list[str], who: Principal
) -> dict[str, dict[str, Any]]:
    """Sweeps run on clients, by id, as their forwarded runs tell them (one query for all)."""
    if not sweep_ids:
        return {}
    rows = conn.execute(
        select(
            runs.c.sweep_id, runs.c.tags, runs.c.status, runs.c.label, runs.c.phase,
            runs.c.started_at, runs.c.ended_at, users.c.name.label("user"),
            projects.c.name.label("project"),
        )
        .join(users, users.c.id == runs.c.user_id)
        .join(projects, projects.c.id == runs.c.project_id)
        .where(runs.c.sweep_id.in_(sweep_ids), _run_visible(who))
        .order_by(runs.c.sweep_id, runs.c.started_at)
    ).all()  # fmt: skip
    grouped: dict[str, list[Any]] = {}
    for row in rows:
        grouped.setdefault(row.sweep_id, []).append(row)
    return {sweep_id: _client_sweep(sweep_id, found) for sweep_id, found in grouped.items()}


def _client_sweep(sweep_id: str, found: list[Any]) -> dict[str, Any]:
    """One client sweep's summary from its runs' rows (oldest first)."""
    axes: dict[str, list[str]] = {}
    pairs: set[tuple[str, str]] = set()
    finished: set[tuple[str, str]] = set()
    tally: dict[str, int] = {}
    repeat = 1
    for row in found:
        tags = json.loads(row.tags or "{}")
        pair = (str(tags.get("config")), str(tags.get("repeat", "1")))
        pairs.add(pair)
        tally[row.status] = tally.get(row.status, 0) + 1
        if row.status in ("ok", "error"):
            finished.add(pair)
        if str(tags.get("repeat", "1")).isdigit():
            repeat = max(repeat, int(tags.get("repeat", "1")))
        for key, value in tags.items():
            name = key.removeprefix("param.")
            if key.startswith("param.") or key in ("threads", "gpus"):
                values = axes.setdefault(name, [])
                if value not in values:
                    values.append(str(value))
    first, last = found[0], found[-1]
    statuses = {row.status for row in found}
    ended = [row.ended_at for row in found if row.ended_at]
    target = json.loads(first.tags or "{}").get("target")
    return {
        "id": sweep_id,
        "status": "running" if "running" in statuses else "done",
        "user": first.user,
        "project": first.project,
        "executor": CLIENT,
        "target": {"kind": None, "name": target},
        "params": [f"{k}={','.join(v)}" for k, v in axes.items() if k not in ("threads", "gpus")],
        "threads": ",".join(axes["threads"]) if "threads" in axes else None,
        "gpus": ",".join(axes["gpus"]) if "gpus" in axes else None,
        "repeat": repeat,
        "phase": first.phase,
        "label": first.label,
        "metric": None,
        "total": len(pairs),
        "cancel_requested": False,
        "error": None,
        "created_at": first.started_at,
        "started_at": first.started_at,
        "ended_at": max(ended) if ended and "running" not in statuses else None,
        "counts": tally,
        "finished": len(finished),
        "last_run_at": last.started_at,
    }


def listing(
    conn: Connection, who: Principal, *, limit: int = 100, offset: int = 0
) -> list[dict[str, Any]]:
    """The sweeps ``who`` may see, newest first."""
    stmt = (
        _SELECT.where(_visible(who))
        .order_by(sweeps.c.created_at.desc(), sweeps.c.id)
        .limit(limit + offset)
    )
    found = [_summary(row) for row in conn.execute(stmt)]
    found = _with_client_sweeps(conn, who, found, limit + offset)
    found = found[offset : offset + limit] if offset else found[:limit]
    if found:
        stmt2 = (
            select(runs.c.sweep_id, runs.c.status, func.count())
            .where(runs.c.sweep_id.in_([s["id"] for s in found]))
            .group_by(runs.c.sweep_id, runs.c.status)
        )
        tally: dict[str, dict[str, int]] = {}
        for sweep_id, status, n in conn.execute(stmt2):
            tally.setdefault(sweep_id, {})[status] = int(n)
        for s in found:
            s["counts"] = tally.get(s["id"], {})
            s["finished"] = sum(v for k, v in s["counts"].items() if k in ("ok", "error"))
    return found


def _with_client_sweeps(
    conn: Connection, who: Principal, found: list[dict[str, Any]], most: int
) -> list[dict[str, Any]]:
    """``found`` and the sweeps run on clients (runs with no submitted sweep), newest first."""
    stmt = (
        select(runs.c.sweep_id, func.min(runs.c.started_at).label("first"))
        .where(
            runs.c.sweep_id.is_not(None),
            _run_visible(who),
            runs.c.sweep_id.not_in(select(sweeps.c.id)),
        )
        .group_by(runs.c.sweep_id)
        .order_by(func.min(runs.c.started_at).desc())
        .limit(most)
    )
    client = _client_sweeps(conn, [sweep_id for sweep_id, _ in conn.execute(stmt)], who)
    merged = found + list(client.values())
    merged.sort(key=lambda s: s["created_at"], reverse=True)
    return merged


def counts(conn: Connection, sweep_id: str) -> dict[str, int]:
    """How many of the sweep's runs are in each status."""
    stmt = (
        select(runs.c.status, func.count())
        .where(runs.c.sweep_id == sweep_id)
        .group_by(runs.c.status)
    )
    return {status: int(n) for status, n in conn.execute(stmt)}


def finished_count(conn: Connection, sweep_id: str) -> int:
    """How many (repeat, configuration) pairs have a run ``ok`` or ``error``."""
    return len(finished_pairs(conn, sweep_id))


def finished_pairs(conn: Connection, sweep_id: str) -> set[tuple[int, str]]:
    """The ``(repeat, config)`` pairs of the sweep with a run ``ok`` or ``error``."""
    stmt = select(runs.c.tags).where(
        runs.c.sweep_id == sweep_id, runs.c.status.in_(("ok", "error"))
    )
    done = set()
    for (tags,) in conn.execute(stmt):
        try:
            parsed = json.loads(tags or "{}")
            done.add((int(parsed.get("repeat", "1")), str(parsed.get("config", ""))))
        except (ValueError, AttributeError):
            continue
    return done


def sweep_runs(conn: Connection, sweep_id: str) -> list[dict[str, Any]]:
    """Every run of the sweep, oldest first, as the API answers runs."""
    stmt = (
        select(runs, users.c.name.label("user"), projects.c.name.label("project"))
        .join(users, users.c.id == runs.c.user_id)
        .join(projects, projects.c.id == runs.c.project_id)
        .where(runs.c.sweep_id == sweep_id)
        .order_by(runs.c.started_at, runs.c.id)
    )
    return [run_dict(row) for row in conn.execute(stmt)]


def request_cancel(engine: Engine, sweep_id: str) -> str:
    """Ask the sweep to stop after the configurations running now; its status after."""
    now = times.now_iso()
    with writing(engine) as conn:
        conn.execute(
            update(sweeps)
            .where(sweeps.c.id == sweep_id, sweeps.c.status == "queued")
            .values(status="cancelled", cancel_requested=1, ended_at=now, updated_at=now)
        )
        conn.execute(
            update(sweeps)
            .where(sweeps.c.id == sweep_id, sweeps.c.status == "running")
            .values(cancel_requested=1, updated_at=now)
        )
        return str(conn.execute(select(sweeps.c.status).where(sweeps.c.id == sweep_id)).scalar())


def requeue(engine: Engine, sweep_id: str) -> bool:
    """Put a finished sweep back in the queue, to run what it is missing; False when running."""
    now = times.now_iso()
    with writing(engine) as conn:
        done = conn.execute(
            update(sweeps)
            .where(sweeps.c.id == sweep_id, sweeps.c.status.in_(FINISHED))
            .values(status="queued", cancel_requested=0, error=None, ended_at=None, updated_at=now)
        )
        return bool(done.rowcount)


def claim_next(engine: Engine, holder: str) -> Claimed | None:
    """Take the oldest queued sweep, or a running one whose holder went silent; None if none."""
    stale = _ago(STALE_S)
    claimable = or_(
        sweeps.c.status == "queued",
        and_(sweeps.c.status == "running", sweeps.c.heartbeat_at < stale),
    )
    with engine.connect() as conn:
        candidates = conn.execute(
            select(sweeps.c.id).where(claimable).order_by(sweeps.c.created_at).limit(5)
        ).all()
    for (sweep_id,) in candidates:
        now = times.now_iso()
        with writing(engine) as conn:
            taken = conn.execute(
                update(sweeps)
                .where(sweeps.c.id == sweep_id, claimable)
                .values(
                    status="running",
                    claimed_by=holder,
                    heartbeat_at=now,
                    started_at=func.coalesce(sweeps.c.started_at, now),
                    updated_at=now,
                )
            )
            if not taken.rowcount:
                continue
            row = conn.execute(_SELECT.where(sweeps.c.id == sweep_id)).one()
        return Claimed(
            id=row.id,
            spec=json.loads(row.spec),
            executor=row.executor,
            user=row.user,
            project=row.project,
            user_id=row.user_id,
            project_id=row.project_id,
            had_token=row.token_id,
        )
    return None


def heartbeat(engine: Engine, sweep_id: str, holder: str, token_id: int | None = None) -> bool:
    """Renew the claim; False when the sweep is no longer this holder's."""
    values: dict[str, Any] = {"heartbeat_at": times.now_iso()}
    if token_id is not None:
        values["token_id"] = token_id
    with writing(engine) as conn:
        done = conn.execute(
            update(sweeps)
            .where(sweeps.c.id == sweep_id, sweeps.c.claimed_by == holder)
            .values(**values)
        )
        return bool(done.rowcount)


def cancel_requested(engine: Engine, sweep_id: str) -> bool:
    with engine.connect() as conn:
        found = conn.execute(select(sweeps.c.cancel_requested).where(sweeps.c.id == sweep_id))
        return bool(found.scalar())


def note_error(engine: Engine, sweep_id: str, error: str) -> None:
    """Keep the latest executor error of the sweep (shown on its page)."""
    with writing(engine) as conn:
        conn.execute(
            update(sweeps)
            .where(sweeps.c.id == sweep_id)
            .values(error=error[:2000], updated_at=times.now_iso())
        )


def finish(
    engine: Engine, sweep_id: str, holder: str, status: str, error: str | None = None
) -> None:
    """End the holder's claim with ``status``; the sweep's runs still running become ``lost``."""
    now = times.now_iso()
    values: dict[str, Any] = {"status": status, "ended_at": now, "updated_at": now}
    if error is not None:
        values["error"] = error[:2000]
    with writing(engine) as conn:
        conn.execute(
            update(sweeps)
            .where(sweeps.c.id == sweep_id, sweeps.c.claimed_by == holder)
            .values(**values)
        )
    mark_lost(engine, sweep_id)


def mark_lost(
    engine: Engine,
    sweep_id: str,
    *,
    config: str | None = None,
    repeat: int | None = None,
    keep: Iterable[str] = (),
) -> int:
    """Runs of the sweep still ``running`` (of one configuration and repeat, when given),
    other than ``keep``, set to ``lost``: a worker ran them and is gone. How many."""
    kept = set(keep)
    with writing(engine) as conn:
        found = conn.execute(
            select(runs.c.id, runs.c.tags, *(runs.c[c] for c in rollup.RUN_COLUMNS)).where(
                runs.c.sweep_id == sweep_id, runs.c.status == "running"
            )
        ).all()
        changed = 0
        for row in found:
            if row.id in kept:
                continue
            tags = json.loads(row.tags or "{}")
            if config is not None and tags.get("config") != config:
                continue
            if repeat is not None and tags.get("repeat") != str(repeat):
                continue
            conn.execute(
                update(runs)
                .where(runs.c.id == row.id, runs.c.status == "running")
                .values(
                    status="lost",
                    error="the host running this configuration was lost; the run is partial",
                    updated_at=times.now_iso(),
                )
            )
            before = dict(row._mapping)
            rollup.record_run(conn, before, {**before, "status": "lost"})
            changed += 1
        return changed
