"""``/healthz`` for load balancers and ``/metrics`` for Prometheus."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from carbon_jupyter.server import metrics
from carbon_jupyter.server.api.errors import SafeJSONResponse
from carbon_jupyter.server.auth import Admin

router = APIRouter(tags=["system"])


@router.get("/healthz", responses={503: {"description": "the database cannot be reached"}})
def healthz(request: Request) -> Any:
    """200 ``{"status": "ok"}`` when the database answers, else 503. Needs no token."""
    engine: Engine = request.app.state.engine
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError:
        return SafeJSONResponse({"status": "unavailable"}, status_code=503)
    return {"status": "ok"}


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}, 503: {"description": "database down"}},
)
def prometheus_metrics(who: Admin, request: Request) -> Response:
    """Prometheus' text format: energy and CO2 by user, project, label and kind; counters.

    Needs an admin token once the server has tokens.
    """
    del who
    engine: Engine = request.app.state.engine
    body = metrics.exposition(engine)  # a database error answers 503 (see app.py)
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")
