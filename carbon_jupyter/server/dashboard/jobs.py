"""The dashboard's job pages: distributed jobs as one run, with their hosts and parts.

``/jobs``
    The jobs the viewer may see, newest first: parts, hosts, start, and how
    many parts still run and how many were lost.
``/jobs/{job_id}``
    One job as :func:`carbon_jupyter.jobs.group.group` adds it up (the same as
    ``carbon_jupyter.job()`` and ``carbon-jupyter show JOB``): its totals,
    each host with its devices once (and the method behind each figure), and
    every part (rank or host part) linked to its run page. While a part runs,
    the page reloads itself every :data:`REFRESH_S` seconds. A running part
    not heard from for the server's ``--lost-after`` is shown ``lost``, with
    since when (see :mod:`carbon_jupyter.server.jobs`).

A job whose parts are all in other projects is answered 404, as an unknown one is.
"""

from __future__ import annotations

import re

from fastapi import APIRouter, Request
from fastapi.responses import Response

from carbon_jupyter.server.api.jobs import lost_after_s
from carbon_jupyter.server.api.models import RUN_ID_PATTERN
from carbon_jupyter.server.dashboard.pages import NotFound, engine_of, guarded
from carbon_jupyter.server.dashboard.render import render
from carbon_jupyter.server.jobs import get_job, list_jobs
from carbon_jupyter.server.queries import Principal

router = APIRouter(include_in_schema=False)

REFRESH_S = 2
JOBS_PER_PAGE = 100


@router.get("/jobs")
def jobs_page(request: Request) -> Response:
    """Every job the viewer may see."""

    def build(who: Principal, open_server: bool) -> Response:
        with engine_of(request).connect() as conn:
            found = list_jobs(conn, who, limit=JOBS_PER_PAGE, lost_after_s=lost_after_s(request))
        return render(
            "jobs.html", title="Jobs", who=who, open_server=open_server, bokeh=False, jobs=found
        )

    return guarded(request, build)


@router.get("/jobs/{job_id}")
def job_page(request: Request, job_id: str) -> Response:
    """One job, its hosts and its parts."""

    def build(who: Principal, open_server: bool) -> Response:
        if not re.fullmatch(RUN_ID_PATTERN, job_id):
            raise NotFound(f"No job {job_id[:40]!r} that you may see.")
        with engine_of(request).connect() as conn:
            job = get_job(conn, job_id, who, lost_after_s=lost_after_s(request))
        if job is None:
            raise NotFound(f"No job {job_id[:40]!r} that you may see.")
        return render(
            "job.html",
            title=f"Job {job_id}",
            who=who,
            open_server=open_server,
            bokeh=False,
            job=job,
            refresh_s=REFRESH_S if job.status == "running" else None,
        )

    return guarded(request, build)
