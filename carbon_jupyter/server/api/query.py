"""Query routes: runs, one run with its devices and samples, totals, live runs, facets, me.

Every route answers only what the token's project may see (an admin token
sees every project); a run of another project answers 404 as if it did not
exist.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import AfterValidator
from sqlalchemy import Engine

from carbon_jupyter.server import queries
from carbon_jupyter.server.api.errors import problem
from carbon_jupyter.server.api.models import RUN_ID_PATTERN, Me, check_iso, check_storable
from carbon_jupyter.server.auth import Reader

router = APIRouter(prefix="/api/v1", tags=["query"])

#: The most runs one page of ``GET /api/v1/runs`` lists, and samples one answer holds.
MAX_PAGE = 1000
MAX_SAMPLES_PAGE = 100_000
MAX_OFFSET = 10**12
MAX_SEQ = 2**63 - 1


def _optional_storable(value: str | None) -> str | None:
    return None if value is None else check_storable(value)


def _optional_iso(value: str | None) -> str | None:
    return None if value is None else check_iso(value)


Name = Annotated[str | None, Query(max_length=200), AfterValidator(_optional_storable)]
Moment = Annotated[
    str | None,
    Query(max_length=40, description="ISO-8601, e.g. 2024-05-01 or 2024-05-01T12:00Z"),
    AfterValidator(_optional_iso),
]
RunIdPath = Annotated[str, Path(pattern=RUN_ID_PATTERN, max_length=64, description="the run's id")]


def run_filters(
    user: Name = None,
    project: Name = None,
    label: Annotated[
        str | None,
        Query(max_length=1000, description="exact, or a pattern with * (any characters)"),
        AfterValidator(_optional_storable),
    ] = None,
    phase: Literal["train", "inference", "other"] | None = None,
    host: Name = None,
    status: Literal["running", "ok", "error", "interrupted", "lost"] | None = None,
    since: Moment = None,
    until: Moment = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> queries.RunQuery:
    """The run filters every query route takes (a FastAPI dependency)."""
    return queries.RunQuery(
        user=user,
        project=project,
        label=label,
        phase=phase,
        host=host,
        status=status,
        since=since,
        until=until,
        limit=limit,
        offset=offset,
    )


Filters = Annotated[queries.RunQuery, Depends(run_filters)]


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def _not_found(run_id: str) -> Exception:
    return problem(404, ["path", "run_id"], f"no run {run_id} that this token may see", "not_found")


@router.get("/runs")
def list_runs(q: Filters, who: Reader, request: Request) -> dict[str, Any]:
    """Runs matching the filters, newest first: ``runs``, the ``total`` matching, the page."""
    with _engine(request).connect() as conn:
        found = queries.list_runs(conn, q, who)
        total = queries.count_runs(conn, q, who)
    return {"runs": found, "total": total, "limit": q.limit, "offset": q.offset}


@router.get("/runs/{run_id}", responses={404: {"description": "no such run in your projects"}})
def get_run(run_id: RunIdPath, who: Reader, request: Request) -> dict[str, Any]:
    """One run with its ``devices`` (each with the ``method`` behind its figure)."""
    with _engine(request).connect() as conn:
        found = queries.get_run(conn, run_id, who)
    if found is None:
        raise _not_found(run_id)
    return found


@router.get(
    "/runs/{run_id}/samples", responses={404: {"description": "no such run in your projects"}}
)
def get_samples(
    run_id: RunIdPath,
    who: Reader,
    request: Request,
    since_seq: Annotated[int, Query(ge=0, le=MAX_SEQ, description="only samples after it")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_SAMPLES_PAGE)] = MAX_SAMPLES_PAGE,
) -> dict[str, Any]:
    """A run's samples after ``since_seq``, by ``seq``, at most ``limit`` of them (100,000):
    ask again with the last ``seq`` seen for the next ones, or to follow a live run."""
    with _engine(request).connect() as conn:
        if not queries.run_visible(conn, run_id, who):
            raise _not_found(run_id)
        found = queries.run_samples(conn, run_id, who, since_seq=since_seq, limit=limit)
    return {"run_id": run_id, "samples": found}


def _dimensions(by: str) -> tuple[str, ...]:
    dims = tuple(d.strip() for d in by.split(",") if d.strip())
    bad = [d for d in dims if d not in queries.DIMENSIONS]
    if not dims or bad or len(set(dims)) != len(dims):
        raise problem(
            422,
            ["query", "by"],
            f"by={by!r}: give one or more of {', '.join(queries.DIMENSIONS)}, "
            "separated by commas, each once",
            "bad_dimension",
        )
    return dims


@router.get("/totals")
def get_totals(
    q: Filters,
    who: Reader,
    request: Request,
    by: Annotated[
        str, Query(max_length=100, description="user, project, label, phase, host, day, status")
    ] = "label",
) -> JSONResponse:
    """Energy, CO2 and run counts summed per value of ``by`` (e.g. ``by=user,day``).

    Answers ``{"by": [...], "totals": [{<dims>, runs, duration_s, energy_j, ...}]}``;
    the rows are plain JSON values, written without FastAPI's generic encoder (a
    year of totals by day and user is thousands of rows).
    """
    dims = _dimensions(by)
    with _engine(request).connect() as conn:
        rows = queries.totals(conn, dims, q, who)
    return JSONResponse({"by": list(dims), "totals": rows})


@router.get("/live")
def get_live(who: Reader, request: Request) -> dict[str, Any]:
    """Runs still running, newest first, with their energy so far from their samples."""
    with _engine(request).connect() as conn:
        return {"runs": queries.live_runs(conn, who)}


@router.get("/facets")
def get_facets(who: Reader, request: Request) -> dict[str, list[str]]:
    """The users, projects, labels, phases and hosts there are runs of (for filter lists)."""
    with _engine(request).connect() as conn:
        return queries.facets(conn, who)


@router.get("/me")
def me(who: Reader, request: Request) -> Me:
    """The user, project and scope of the request's token."""
    return Me(
        user=who.user, project=who.project, scope=who.scope, open=request.app.state.auth.is_open()
    )
