"""Writing what clients send: runs (``PUT``) and batches of samples (``POST``).

Every request's writes are one transaction; repeats store nothing twice:

* a run PUT inserts the run, or updates it when it is already there, and
  upserts its devices; a run that has ended is never put back to
  ``running`` (a late start answers ``unchanged``);
* the run's count and figures in ``day_totals`` follow, in the same
  transaction (:func:`carbon_jupyter.server.rollup.record_run`);
* samples are inserted with ``ON CONFLICT DO NOTHING`` on ``(run_id, seq)``
  in one ``executemany``.

A run belongs to the project (and user) of the token that first sent it; a
token of another project gets 409 for it (an admin token may write to any
project's runs). Which project a run belongs to is cached, since it never
changes, so a batch of samples costs one statement.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import Connection, Engine, select, update

from carbon_jupyter.server import rollup, times
from carbon_jupyter.server.api.errors import problem
from carbon_jupyter.server.api.models import DeviceBody, RunBody, SampleBody
from carbon_jupyter.server.db.accounts import insert_ignoring, upsert
from carbon_jupyter.server.db.engine import writing
from carbon_jupyter.server.db.schema import devices, runs
from carbon_jupyter.server.queries import Principal

#: Run columns a later PUT does not change: who the run belongs to and when it first came.
_KEPT = ("id", "project_id", "user_id", "received_at")
_DEVICE_KEYS = ("run_id", "device_id")
_DEVICE_COLUMNS = tuple(c.name for c in devices.columns if c.name not in _DEVICE_KEYS)
#: How many run ids the ownership cache holds before it starts again.
_OWNER_CACHE_SIZE = 100_000


def _json(value: Any) -> str:
    return json.dumps(value, allow_nan=False, sort_keys=True, separators=(",", ":"))


def _tag(tags: Any, name: str) -> str | None:
    value = tags.get(name) if isinstance(tags, dict) else None
    return value[:64] if isinstance(value, str) and value else None


def run_row(body: RunBody, who: Principal, now: str) -> dict[str, Any]:
    """The ``runs`` row for ``body`` sent by ``who`` at ``now``."""
    i = body.intensity
    return {
        "id": body.id,
        "project_id": who.project_id,
        "user_id": who.user_id,
        "client_user": body.client_user,
        "label": body.label,
        "phase": body.phase,
        "items": body.items,
        "status": body.status,
        "started_at": body.started_at,
        "ended_at": body.ended_at,
        "day": times.day_of(body.started_at),
        "duration_s": body.duration_s,
        "attribution": body.attribution,
        "energy_j": body.energy_j,
        "cpu_energy_j": body.cpu_energy_j,
        "gpu_energy_j": body.gpu_energy_j,
        "ram_energy_j": body.ram_energy_j,
        "co2_g": body.co2_g,
        "intensity_g_per_kwh": i.intensity_g_per_kwh,
        "intensity_source": i.source,
        "intensity_year": i.year,
        "intensity_key": i.key,
        "intensity_chosen_by": i.chosen_by,
        "pue": i.pue,
        "pue_source": i.pue_source,
        "notebook": body.notebook,
        "cell": body.cell,
        "kernel": body.kernel,
        "host": body.host,
        "error": body.error,
        "tags": _json(body.tags),
        "warnings": _json(body.warnings),
        "metrics": _json(body.metrics),
        "hardware": _json(body.hardware),
        "versions": _json(body.versions),
        "sweep_id": _tag(body.tags, "sweep"),
        "job_id": _tag(body.tags, "job"),
        "received_at": now,
        "updated_at": now,
    }


def device_rows(run_id: str, bodies: Sequence[DeviceBody]) -> list[dict[str, Any]]:
    """The ``devices`` rows of a run, numbered in the client's order."""
    return [{"run_id": run_id, "position": n, **d.model_dump()} for n, d in enumerate(bodies)]


def _conflict(run_id: str) -> Exception:
    return problem(
        409,
        ["path", "run_id"],
        f"run {run_id} belongs to another project: a run id is sent by one project only",
        "run_in_other_project",
    )


def _insert_run(conn: Connection, row: dict[str, Any]) -> bool:
    """Insert run ``row`` unless its id is taken; whether this inserted it.

    Told by ``RETURNING`` where the database has it: SQLAlchemy does not keep
    an ``INSERT``'s row count on PostgreSQL, and a run that another request
    inserted meanwhile must be updated, not taken as created.
    """
    stmt = insert_ignoring(conn, runs, ["id"]).values(**row)
    if conn.dialect.insert_returning:
        return conn.execute(stmt.returning(runs.c.id)).first() is not None
    done = conn.execute(stmt, execution_options={"preserve_rowcount": True})
    return done.rowcount != 0


class Ingest:
    """The write side of one server process."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._owner: dict[str, int] = {}
        self._lock = threading.Lock()

    def _remember(self, run_id: str, project_id: int) -> None:
        with self._lock:
            if len(self._owner) >= _OWNER_CACHE_SIZE:
                self._owner.clear()
            self._owner[run_id] = project_id

    def _existing(self, conn: Connection, run_id: str) -> Any:
        # Locked until the transaction ends (FOR NO KEY UPDATE: samples' foreign keys still
        # pass), so two PUTs of one run take turns and each sees the figures the other left.
        stmt = select(*(runs.c[name] for name in rollup.RUN_COLUMNS)).where(runs.c.id == run_id)
        if conn.dialect.name == "postgresql":
            stmt = stmt.with_for_update(key_share=True)
        return conn.execute(stmt).first()

    def put_run(self, run_id: str, body: RunBody, who: Principal) -> str:
        """Store run ``run_id`` as ``body`` says; ``created``, ``updated`` or ``unchanged``."""
        now = times.now_iso()
        row = run_row(body, who, now)
        with writing(self.engine) as conn:
            existing = self._existing(conn, run_id)
            if existing is None:
                if _insert_run(conn, row):
                    rollup.record_run(conn, None, row)
                    self._write_devices(conn, run_id, body.devices)
                    result = "created"
                    owner = int(row["project_id"])
                else:  # another request created it meanwhile
                    existing = self._existing(conn, run_id)
            if existing is not None:
                owner = int(existing.project_id)
                if owner != who.project_id and not who.is_admin:
                    raise _conflict(run_id)
                if existing.status != "running" and body.status == "running":
                    result = "unchanged"
                else:
                    changes = {k: v for k, v in row.items() if k not in _KEPT}
                    conn.execute(update(runs).where(runs.c.id == run_id).values(**changes))
                    # The run stays its first sender's (project_id, user_id are kept).
                    after = {**row, "project_id": owner, "user_id": existing.user_id}
                    rollup.record_run(conn, existing._mapping, after)
                    self._write_devices(conn, run_id, body.devices)
                    result = "updated"
        self._remember(run_id, owner)
        return result

    def _write_devices(self, conn: Connection, run_id: str, bodies: Sequence[DeviceBody]) -> None:
        if bodies:
            stmt = upsert(conn, devices, _DEVICE_KEYS, _DEVICE_COLUMNS)
            conn.execute(stmt, device_rows(run_id, bodies))

    def _owner_of(self, run_id: str) -> int:
        owner = self._owner.get(run_id)
        if owner is not None:
            return owner
        with self.engine.connect() as conn:
            found = conn.execute(select(runs.c.project_id).where(runs.c.id == run_id)).scalar()
        if found is None:
            raise problem(
                404,
                ["path", "run_id"],
                f"run {run_id} is not known to this server: PUT /api/v1/runs/{run_id} first",
                "unknown_run",
            )
        self._remember(run_id, int(found))
        return int(found)

    def add_samples(self, run_id: str, batch: Sequence[SampleBody], who: Principal) -> int:
        """Store the samples of ``batch`` not stored before; returns how many were new."""
        if self._owner_of(run_id) != who.project_id and not who.is_admin:
            raise _conflict(run_id)
        if not batch:
            return 0
        with writing(self.engine) as conn:
            return insert_samples(conn, run_id, batch)


_BATCH_JSON = TypeAdapter(list[SampleBody])
#: The ``samples`` columns after ``run_id``, with their PostgreSQL types.
_SAMPLE_TYPES = {
    "seq": "bigint",
    "t_s": "float8",
    "device_id": "text",
    "power_w": "float8",
    "energy_j": "float8",
    "process_energy_j": "float8",
    "utilization_pct": "float8",
    "memory_used_b": "bigint",
}
_COLUMN_LIST = ", ".join(["run_id", *_SAMPLE_TYPES])
#: SQLite: one row per parameter set, through the driver's executemany.
_SQLITE_INSERT = (
    f"INSERT INTO samples ({_COLUMN_LIST}) VALUES ({', '.join('?' * (len(_SAMPLE_TYPES) + 1))}) "
    "ON CONFLICT (run_id, seq) DO NOTHING"
)
#: PostgreSQL: the whole batch in one statement, as one JSON parameter.
_POSTGRES_INSERT = (
    f"INSERT INTO samples ({_COLUMN_LIST}) "
    f"SELECT %s, {', '.join(f'x.{c}' for c in _SAMPLE_TYPES)} "
    "FROM json_to_recordset(%s::json) AS x("
    + ", ".join(f"{c} {t}" for c, t in _SAMPLE_TYPES.items())
    + ") ON CONFLICT (run_id, seq) DO NOTHING"
)


def insert_samples(conn: Connection, run_id: str, batch: Sequence[SampleBody]) -> int:
    """Insert the samples of ``batch`` into run ``run_id``, skipping any stored before.

    Returns how many were new. This is the ingest's hot path, so it bypasses
    SQLAlchemy's per-row parameter handling: SQLite gets the driver's
    ``executemany``; PostgreSQL gets the batch as one JSON text that it
    unpacks itself (``json_to_recordset``). Both use ``ON CONFLICT DO
    NOTHING`` on the key ``(run_id, seq)``.
    """
    if conn.dialect.name == "postgresql":
        document = _BATCH_JSON.dump_json(list(batch)).decode()
        done = conn.exec_driver_sql(_POSTGRES_INSERT, (run_id, document))
    else:
        rows = [
            (run_id, s.seq, s.t_s, s.device_id, s.power_w, s.energy_j, s.process_energy_j,
             s.utilization_pct, s.memory_used_b)
            for s in batch
        ]  # fmt: skip
        done = conn.exec_driver_sql(_SQLITE_INSERT, rows)
    return max(int(done.rowcount), 0)
