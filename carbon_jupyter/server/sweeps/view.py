"""One sweep as the API and the dashboard show it: where it stands, its runs, the comparison.

The comparison is the notebook's own (:class:`carbon_jupyter.sweeps.results.SweepResults`)
over the sweep's runs as the server holds them, so ``carbon-jupyter sweep``,
``%carbon sweep`` and the dashboard answer the same for the same runs.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Connection

from carbon_jupyter.forward.records import run_record
from carbon_jupyter.server import times
from carbon_jupyter.server.queries import Principal, live_figures
from carbon_jupyter.server.sweeps import records
from carbon_jupyter.sweeps.results import SweepResults

#: Run fields the sweep's answer lists for each run.
RUN_FIELDS = (
    "id", "status", "error", "label", "phase", "items", "host", "started_at", "ended_at",
    "duration_s", "energy_j", "cpu_energy_j", "gpu_energy_j", "ram_energy_j", "co2_g",
    "tags", "metrics", "warnings",
)  # fmt: skip


def results_of(sweep_id: str, rows: list[dict[str, Any]], metric: str | None) -> SweepResults:
    """The comparison of the sweep's finished runs (``ok`` and ``error``)."""
    finished = [run_record(r) for r in rows if r["status"] in ("ok", "error")]
    return SweepResults(sweep_id, finished, metric)


def _elapsed_s(started_at: str) -> float:
    try:
        began = times.parse_iso(started_at)
    except ValueError:
        return 0.0
    return max(0.0, (datetime.now(timezone.utc) - began).total_seconds())


def sweep_detail(
    conn: Connection, sweep_id: str, who: Principal, *, metric: str | None = None
) -> dict[str, Any] | None:
    """The sweep ``who`` may see, with ``runs``, ``current`` and ``comparison``; else None."""
    found = records.get(conn, sweep_id, who)
    if found is None:
        return None
    rows = records.sweep_runs(conn, sweep_id)
    running = [r for r in rows if r["status"] == "running"]
    live = live_figures(conn, running)
    found["current"] = [
        {
            "run_id": r["id"],
            "config": r["tags"].get("config"),
            "repeat": r["tags"].get("repeat"),
            "host": r["host"],
            "elapsed_s": _elapsed_s(r["started_at"]),
            "energy_j": live.get(r["id"], {}).get("energy_j", 0.0),
            "co2_g": live.get(r["id"], {}).get("co2_g") or 0.0,
        }
        for r in running
    ]
    found["runs"] = [{k: r.get(k) for k in RUN_FIELDS} for r in rows]
    chosen = metric or found.get("metric")
    results = results_of(sweep_id, rows, chosen)
    found["comparison"] = {
        "answer": results.answer() if results.runs else "no configuration has finished yet",
        "metric": chosen,
        "configurations": results.rows(),
        "time_front": results.time_front(),
        "metric_front": results.metric_front() if chosen else [],
    }
    return found
