"""The dashboard's pages: the runs, one run, a comparison.

``/``
    Runs newest first with filters (user, project, label, phase, host,
    status, since, until) as query parameters, a page at a time; the energy
    or CO2e per day stacked by user, project or label (``by``, ``metric``);
    the runs live now, refreshed every 2 s from ``/dashboard/api/live``;
    check boxes and a button to compare the ticked runs.
``/runs/{run_id}``
    One run: its figures, its problems (status, error, warnings, stopped
    devices, estimates) above everything else, its devices with how each
    figure was obtained, and the power and CO2e plot, which grows while the
    run is live (from ``/dashboard/api/runs/{run_id}/rows``).
``/compare?runs=ID,ID``
    The comparison figure and tables of the notebook's ``%carbon compare``.

Every page shows only what the viewer's token may read. A parameter that
cannot be used answers 400 naming it; an unknown run 404; a database that
cannot be reached 503.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from carbon_jupyter.forward.records import complete_ticks, run_record, run_records
from carbon_jupyter.model import MODEL_METHODS, Run, method_quality
from carbon_jupyter.server import queries, times
from carbon_jupyter.server.dashboard import live
from carbon_jupyter.server.dashboard.access import SignInNeeded, is_open, sign_in_page, viewer
from carbon_jupyter.server.dashboard.figures import power_html, totals_html
from carbon_jupyter.server.dashboard.params import (
    COMPARE_BY,
    DEFAULT_PER_PAGE,
    METRICS,
    STATUSES,
    TOTALS_BY,
    BadParameter,
    RunsView,
    compare_view,
    runs_view,
)
from carbon_jupyter.server.dashboard.render import embed, error_page, page_data, render
from carbon_jupyter.server.queries import Principal, RunQuery
from carbon_jupyter.show import format as fmt

router = APIRouter(include_in_schema=False)

#: Days the totals per day cover when the filters set no time window.
TOTALS_DAYS = 90
#: Where the filter fields' suggestions come from (read when a field is first focused).
FACETS_URL = "/api/v1/facets"
#: Filter fields with suggestions, and the facet list of each.
FACETS = {
    "user": "users",
    "project": "projects",
    "label": "labels",
    "phase": "phases",
    "host": "hosts",
}


class NotFound(Exception):
    """What the page shows does not exist, or the viewer may not see it."""


def engine_of(request: Request) -> Engine:
    """The server's database engine."""
    engine: Engine = request.app.state.engine
    return engine


def query_params(request: Request) -> dict[str, list[str]]:
    """The query string as name -> every value given."""
    params: dict[str, list[str]] = {}
    for name, value in request.query_params.multi_items():
        params.setdefault(name, []).append(value)
    return params


def guarded(request: Request, build: Callable[[Principal, bool], Response]) -> Response:
    """``build(viewer, open_server)``; a bad parameter, unknown run or lost database as a page."""
    try:
        who = viewer(request)
    except SignInNeeded as exc:
        return sign_in_page(request, exc.problem)
    except SQLAlchemyError:
        return error_page(503, "Database unavailable", DB_DOWN)
    open_server = is_open(request)
    try:
        return build(who, open_server)
    except BadParameter as exc:
        return error_page(
            400, f"Bad parameter {exc.name}", str(exc), who=who, open_server=open_server
        )
    except NotFound as exc:
        return error_page(404, "Not found", str(exc), who=who, open_server=open_server)
    except SQLAlchemyError:
        return error_page(503, "Database unavailable", DB_DOWN, who=who, open_server=open_server)


DB_DOWN = "The server cannot reach its database just now; try again in a moment."


def title_of(run: Run) -> str:
    """What a run is called on the pages: its label, cell or notebook, else its id's start."""
    return run.label or run.cell or run.notebook or run.id[:8]


def _row_title(row: dict[str, Any]) -> str:
    return str(row.get("label") or row.get("cell") or row.get("notebook") or str(row["id"])[:8])


# -- the runs -----------------------------------------------------------------------------
@router.get("/")
def runs_page(request: Request) -> Response:
    """The runs table with its filters, the totals per day, and the runs live now."""
    return guarded(request, lambda who, open_server: _runs(request, who, open_server))


def totals_window(view: RunsView, today: date | None = None) -> tuple[RunQuery, str]:
    """The query the totals per day draw, and words for its time window.

    The filters' ``since`` (and ``until``) when given; else the
    :data:`TOTALS_DAYS` days up to ``until`` or up to today (a year of days
    is too many bars to read, and too many runs to sum for every page).
    """
    q = replace(view.query, limit=0, offset=0)
    since, until = view.filters.get("since"), view.filters.get("until")
    if since:
        return q, f"from {since}" + (f" until {until}" if until else "")
    if until:
        end = times.parse_iso(until).astimezone(timezone.utc).date()
        first = end - timedelta(days=TOTALS_DAYS)
        return replace(q, since=first.isoformat()), f"{TOTALS_DAYS} days until {until}"
    first = (today or datetime.now(timezone.utc).date()) - timedelta(days=TOTALS_DAYS - 1)
    return replace(q, since=first.isoformat()), f"last {TOTALS_DAYS} days"


def _runs(request: Request, who: Principal, open_server: bool) -> Response:
    from carbon_jupyter.show.plots_totals import DayTotal, totals_data

    view = runs_view(query_params(request))
    q = view.query
    totals_q, window = totals_window(view)
    with engine_of(request).connect() as conn:
        rows = queries.list_runs(conn, replace(q, limit=q.limit + 1), who)
        sums = queries.totals(conn, ("day", view.by), totals_q, who)
        running = queries.live_runs(conn, who, limit=live.LIVE_LIMIT)
    has_next = len(rows) > q.limit
    rows = rows[: q.limit]
    day_totals = [
        DayTotal(str(s["day"]), s[view.by], float(s["energy_j"]), float(s["co2_g"]), s["runs"])
        for s in sums
    ]
    totals_script = totals_div = None
    if day_totals:
        data = totals_data(day_totals, metric=view.metric)
        totals_script, totals_div = totals_html(data, by=view.by)
    for row in rows:
        row["title"] = _row_title(row)
    return render(
        "runs.html",
        title="Runs",
        who=who,
        open_server=open_server,
        bokeh=bool(day_totals),
        view=view,
        statuses=STATUSES,
        totals_by=TOTALS_BY,
        metrics=METRICS,
        default_per_page=DEFAULT_PER_PAGE,
        facet_names=FACETS,
        runs=rows,
        first=q.offset + 1,
        last=q.offset + len(rows),
        has_next=has_next,
        window=window,
        total_runs=sum(int(s["runs"]) for s in sums),
        total_energy_j=sum(float(s["energy_j"]) for s in sums),
        total_co2_g=sum(float(s["co2_g"]) for s in sums),
        totals_script=totals_script,
        totals_div=totals_div,
        live=[live.live_item(r) for r in running],
        runs_data=page_data(
            {
                "url": live.LIVE_URL,
                "interval_ms": live.POLL_INTERVAL_MS,
                "facets_url": FACETS_URL,
            }
        ),
    )


# -- one run ------------------------------------------------------------------------------
def problems_of(run: Run) -> list[str]:
    """Everything that makes a run's figures wrong, incomplete or less than measured."""
    found: list[str] = []
    if run.status == "error":
        found.append(f"This run ended with an error: {run.error or 'no message was sent'}")
    elif run.status in ("interrupted", "lost"):
        found.append(
            f"This run was {run.status}: its figures cover only the part that was measured."
        )
    elif run.error:
        found.append(f"Error: {run.error}")
    found.extend(f"Warning: {w}" for w in run.warnings)
    found.extend(
        f"Device {d.device.device_id} stopped during the run: {d.error}"
        for d in run.devices
        if d.error
    )
    estimated = [d.device.device_id for d in run.devices if d.method in MODEL_METHODS]
    if estimated:
        found.append(
            f"The figures of {', '.join(estimated)} are estimates from a model, not measurements."
        )
    if run.intensity.intensity_g_per_kwh <= 0 and run.status != "running":
        found.append("No carbon intensity was recorded for this run, so its CO2e reads zero.")
    return found


@router.get("/runs/{run_id}")
def run_page(request: Request, run_id: str) -> Response:
    """One run: figures, problems, devices, and its power and CO2e plot (live while it runs)."""
    return guarded(request, lambda who, open_server: _run(request, run_id, who, open_server))


def _run(request: Request, run_id: str, who: Principal, open_server: bool) -> Response:
    from carbon_jupyter.show.plots import SOURCE_NAME

    if len(run_id) > 64:
        raise BadParameter("run_id", "is not a run id (longer than 64 characters)")
    with engine_of(request).connect() as conn:
        row = queries.get_run(conn, run_id, who)
        if row is None:
            raise NotFound(f"No run {run_id!r} that you may see.")
        sample_rows = queries.run_samples(conn, run_id, who)
    running = row["status"] == "running"
    devices = row.get("devices") or []
    samples, last_seq = complete_ticks(sample_rows, len(devices), finished=not running)
    run = run_record(row, samples)
    title = title_of(run)
    plot = None
    if samples:
        plot = power_html(
            [d.device for d in run.devices],
            samples,
            intensity=run.intensity,
            attribution=run.attribution,
            title=title,
        )
    shown = live.so_far(run, samples) if running else None
    if shown is not None:
        run = shown
    return render(
        "run.html",
        title=title,
        who=who,
        open_server=open_server,
        bokeh=bool(samples),
        run=run,
        row=row,
        problems=problems_of(run),
        marks=fmt.quality_marks(run),
        quality=method_quality,
        intensity=fmt.intensity_source(run),
        live=running,
        plot=plot,
        run_data=page_data(
            {
                "live": running,
                "has_plot": bool(samples),
                "next_seq": last_seq or 0,
                "rows_url": live.rows_url(run.id),
                "source": SOURCE_NAME,
                "interval_ms": live.POLL_INTERVAL_MS,
                "max_rows": live.MAX_STREAMED_ROWS,
            }
        ),
    )


# -- comparing runs -----------------------------------------------------------------------
@router.get("/compare")
def compare_page(request: Request) -> Response:
    """The runs given in ``runs=ID,ID`` side by side, grouped by run, label or phase."""
    return guarded(request, lambda who, open_server: _compare(request, who, open_server))


def _compare(request: Request, who: Principal, open_server: bool) -> Response:
    from carbon_jupyter.show.plots import comparison_figure, comparison_rows

    view = compare_view(query_params(request))
    found: list[dict[str, Any]] = []
    missing: list[str] = []
    with engine_of(request).connect() as conn:
        for run_id in view.run_ids:
            row = queries.get_run(conn, run_id, who)
            if row is None:
                missing.append(run_id)
            else:
                found.append(row)
    if not found:
        raise NotFound(f"runs: none of {', '.join(view.run_ids)} is a run that you may see.")
    runs = run_records(found)
    plot_script, plot_div = embed(comparison_figure(runs, by=view.by))
    problems = [f"No run {m!r} that you may see; it is left out." for m in missing]
    for r in runs:
        if r.status != "ok" or r.warnings:
            note = f"{r.status}" + (f", {fmt.warning_count(r)}" if r.warnings else "")
            problems.append(f"{title_of(r)} ({r.id[:8]}): {note}; see its page.")

    def url(by: str) -> str:
        return "/compare?" + urlencode({"runs": ",".join(view.run_ids), "by": by})

    return render(
        "compare.html",
        title="Compare runs",
        who=who,
        open_server=open_server,
        bokeh=True,
        view=view,
        compare_by=COMPARE_BY,
        url=url,
        runs=runs,
        pairs=list(zip(runs, found, strict=True)),
        groups=comparison_rows(runs, by=view.by),
        problems=problems,
        plot_script=plot_script,
        plot_div=plot_div,
    )
