"""What the dashboard's pages poll while runs are live (JSON, read by ``dashboard.js``).

``GET /dashboard/api/live``
    ``{"runs": [...]}``: the runs still running that the viewer may see,
    newest first, each with its figures so far as display text.
``GET /dashboard/api/runs/{run_id}/rows?since_seq=N``
    The rows the run's power plot gains from the samples after ``N``, in the
    columns of :func:`carbon_jupyter.show.plots.power_rows` (``null`` where
    a device has no power), only for whole ticks; ``next_seq`` is where to
    read from next, ``status`` the run's status and ``energy``/``co2``/
    ``duration`` its figures so far.

The rows come from :class:`carbon_jupyter.show.plots.LivePlot`, the code
that feeds the notebook's live plot, so both draw the same points.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import SQLAlchemyError

from carbon_jupyter.forward.records import complete_ticks, run_record
from carbon_jupyter.model import J_PER_KWH, Run, Sample
from carbon_jupyter.server import queries
from carbon_jupyter.server.dashboard.access import SignInNeeded, viewer
from carbon_jupyter.server.dashboard.render import when
from carbon_jupyter.show import format as fmt

LIVE_URL = "/dashboard/api/live"
#: Most runs the live list shows.
LIVE_LIMIT = 50
#: How often the pages poll, in milliseconds.
POLL_INTERVAL_MS = 2000
#: Rows a live plot takes by streaming before the page reloads it thinned.
MAX_STREAMED_ROWS = 5000
#: Most samples one poll reads.
MAX_SAMPLES_PER_POLL = 20_000
#: Rows kept per device by the plot state a poll builds (no rolling off within one poll).
_NO_ROLLOVER = 10**9

router = APIRouter(include_in_schema=False)


def rows_url(run_id: str) -> str:
    """Where a run's page reads the rows its plot gains."""
    from urllib.parse import quote

    return f"/dashboard/api/runs/{quote(run_id, safe='')}/rows"


def _problem(status: int, loc: list[str | int], msg: str, kind: str) -> JSONResponse:
    body = {"detail": [{"loc": loc, "msg": msg, "type": kind}]}
    return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


def _json(data: Any) -> JSONResponse:
    return JSONResponse(data, headers={"Cache-Control": "no-store"})


def live_item(row: dict[str, Any]) -> dict[str, Any]:
    """A row of :func:`queries.live_runs` as the text the live list shows."""
    title = row.get("label") or row.get("cell") or row.get("notebook") or str(row["id"])[:8]
    return {
        "id": str(row["id"]),
        "title": str(title),
        "user": row.get("user") or "",
        "project": row.get("project") or "",
        "host": row.get("host") or "",
        "started": when(row.get("started_at")),
        "duration": fmt.duration(float(row.get("duration_s") or 0.0)),
        "power": fmt.power(row.get("power_w")),
        "energy": fmt.energy(float(row.get("energy_j") or 0.0)),
        "co2": fmt.mass(float(row.get("co2_g") or 0.0)),
    }


def so_far(run: Run, samples: list[Sample]) -> Run | None:
    """``run`` with its energy, CO2e and duration as far as ``samples`` go (None without any)."""
    if not samples:
        return None
    latest: dict[str, float] = {}
    for s in samples:
        share = s.process_energy_j if run.attribution == "process" else None
        latest[s.device_id] = share if share is not None else s.energy_j
    energy_j = sum(latest.values())
    g_per_j = run.intensity.intensity_g_per_kwh * run.intensity.pue / J_PER_KWH
    return replace(
        run,
        energy_j=max(run.energy_j, energy_j),
        co2_g=max(run.co2_g, energy_j * g_per_j),
        duration_s=max(run.duration_s, samples[-1].t_s),
    )


def _columns(rows: dict[str, list[float]]) -> dict[str, list[float | None]]:
    """Plot rows as JSON: NaN (no power reading) as null."""
    return {
        name: [v if math.isfinite(v) else None for v in values] for name, values in rows.items()
    }


@router.get(LIVE_URL)
def live_runs(request: Request) -> Response:
    """The runs live now (see the module docs)."""
    try:
        who = viewer(request)
        with request.app.state.engine.connect() as conn:
            running = queries.live_runs(conn, who, limit=LIVE_LIMIT)
    except SignInNeeded:
        return _problem(401, ["header", "authorization"], "sign in first", "missing_token")
    except SQLAlchemyError:
        return _problem(503, ["database"], "the database cannot be reached", "unavailable")
    return _json({"runs": [live_item(r) for r in running]})


@router.get("/dashboard/api/runs/{run_id}/rows")
def run_rows(request: Request, run_id: str) -> Response:
    """The rows a live run's plot gains after ``since_seq`` (see the module docs)."""
    from carbon_jupyter.show.plots import LivePlot

    text = request.query_params.get("since_seq", "0").strip() or "0"
    try:
        since_seq = int(text)
    except ValueError:
        since_seq = -1
    if since_seq < 0:
        return _problem(
            400, ["query", "since_seq"], f"{text[:40]!r} is not a whole number >= 0", "bad_seq"
        )
    try:
        who = viewer(request)
        with request.app.state.engine.connect() as conn:
            row = queries.get_run(conn, run_id, who)
            if row is None:
                return _problem(404, ["path", "run_id"], "no such run that you may see", "no_run")
            found = queries.run_samples(conn, run_id, who, since_seq, MAX_SAMPLES_PER_POLL)
    except SignInNeeded:
        return _problem(401, ["header", "authorization"], "sign in first", "missing_token")
    except SQLAlchemyError:
        return _problem(503, ["database"], "the database cannot be reached", "unavailable")
    run = run_record(row)
    finished = row["status"] != "running" and len(found) < MAX_SAMPLES_PER_POLL
    samples, last_seq = complete_ticks(found, len(run.devices), finished=finished)
    plot = LivePlot(
        [d.device for d in run.devices],
        intensity=run.intensity,
        attribution=run.attribution,
        rollover=_NO_ROLLOVER,
    )
    rows = plot.rows(samples)
    answer: dict[str, Any] = {
        "status": row["status"],
        "next_seq": last_seq if last_seq is not None else since_seq,
        "rows": _columns(rows),
        "energy": None,
        "co2": None,
        "duration": None,
    }
    if rows["t_s"]:
        energy_j = rows["energy_wh"][-1] * 3600.0
        answer["energy"] = fmt.energy(energy_j)
        answer["co2"] = fmt.mass(rows["co2_g"][-1])
        answer["duration"] = fmt.duration(rows["t_s"][-1])
    return _json(answer)
