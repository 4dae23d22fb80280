"""Job routes: distributed jobs (runs tagged ``job``) grouped as one run, from every machine.

A running part the server has heard nothing from for the server's ``lost_after_s``
(``serve --lost-after``) is shown ``lost``; see :mod:`carbon_jupyter.server.jobs`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from sqlalchemy import Engine

from carbon_jupyter.server.api.errors import problem
from carbon_jupyter.server.api.models import RUN_ID_PATTERN
from carbon_jupyter.server.auth import Reader
from carbon_jupyter.server.jobs import get_job, list_jobs

router = APIRouter(prefix="/api/v1", tags=["jobs"])

JobIdPath = Annotated[str, Path(pattern=RUN_ID_PATTERN, max_length=64, description="the job id")]


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def lost_after_s(request: Request) -> float:
    """The server's ``--lost-after``, in seconds."""
    return float(request.app.state.settings.lost_after_s)


@router.get("/jobs")
def jobs(
    who: Reader,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10**12)] = 0,
) -> dict[str, Any]:
    """The distributed jobs this token may see, newest first, with their parts and hosts,
    and how many parts are ``running`` (heard from lately) and ``lost``."""
    with _engine(request).connect() as conn:
        found = list_jobs(conn, who, limit=limit, offset=offset, lost_after_s=lost_after_s(request))
    return {"jobs": found, "limit": limit, "offset": offset}


@router.get("/jobs/{job_id}", responses={404: {"description": "no such job in your projects"}})
def job(job_id: JobIdPath, who: Reader, request: Request) -> dict[str, Any]:
    """One job as one run: totals (each host's CPU and RAM once, each GPU once), per host
    and per device with its method, its ``status`` and its ``parts`` (a running part not
    heard from for the server's ``--lost-after`` is ``lost``)."""
    with _engine(request).connect() as conn:
        found = get_job(conn, job_id, who, lost_after_s=lost_after_s(request))
    if found is None:
        raise problem(
            404, ["path", "job_id"], f"no job {job_id} that this token may see", "not_found"
        )
    return found.to_json()
