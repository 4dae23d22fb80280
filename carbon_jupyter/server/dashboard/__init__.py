"""The team server's dashboard: server-rendered pages with Bokeh plots, at ``/``.

:func:`mount` adds to a server app:

* the pages (:mod:`.pages`): ``/`` (runs, filters, totals per day, live runs),
  ``/runs/{run_id}`` (one run, its plot growing while it is live) and
  ``/compare?runs=ID,ID``;
* the sweep pages (:mod:`.sweeps`): ``/sweeps``, ``/sweeps/{sweep_id}`` (a
  sweep's progress, answer, comparison and runs; Cancel, Resume) and
  ``/sweeps/new`` (a form that submits one); the job pages (:mod:`.jobs`):
  ``/jobs`` and ``/jobs/{job_id}`` (a distributed job as one run, its hosts and parts);
* the JSON they poll (:mod:`.live`) under ``/dashboard/api/``;
* signing in with a token (:mod:`.access`): ``/login``, ``/logout``;
* BokehJS from the installed bokeh package at ``/static/bokeh/`` and the
  dashboard's script and style at ``/dashboard/static/``, so the dashboard
  works without the internet.

The figures are the notebook's (:mod:`carbon_jupyter.show.plots`), drawn from
the server's rows (:mod:`.records`). The app must have the database engine
at ``app.state.engine`` and the token checker at ``app.state.auth``.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from carbon_jupyter.server.dashboard.render import (
    BOKEH_STATIC_URL,
    DASHBOARD_STATIC_URL,
    STATIC,
    bokeh_js_folder,
    environment,
)

__all__ = ["mount"]


def _warm() -> None:
    """Import Bokeh, compile the pages and build the runs page's figures now (about 0.5 s).

    So the first page a server process answers is as quick as the next.
    """
    from carbon_jupyter.server.dashboard.figures import warm_totals
    from carbon_jupyter.show import plots  # noqa: F401

    env = environment()
    pages = (
        "runs.html", "run.html", "compare.html", "login.html", "error.html",
        "sweeps.html", "sweep.html", "sweep_new.html", "jobs.html", "job.html",
    )  # fmt: skip
    for name in pages:
        env.get_template(name)
    warm_totals()


def mount(app: FastAPI) -> None:
    """Add the dashboard's pages, its JSON and its static files to ``app``."""
    from carbon_jupyter.server.dashboard import access, jobs, live, pages, sweeps

    app.include_router(access.router)
    app.include_router(live.router)
    app.include_router(pages.router)
    app.include_router(sweeps.router)
    app.include_router(jobs.router)
    app.mount(BOKEH_STATIC_URL, StaticFiles(directory=bokeh_js_folder()), name="bokeh-static")
    app.mount(DASHBOARD_STATIC_URL, StaticFiles(directory=STATIC), name="dashboard-static")
    _warm()
