"""The team server's ASGI application: :func:`create_app`.

``carbon-jupyter serve`` runs it under uvicorn; each worker calls
:func:`app_from_env`, which reads the settings ``serve`` put in the
environment. Tests and embedders call :func:`create_app` directly.

On ``app.state``: ``settings`` (:class:`~carbon_jupyter.server.config.ServerSettings`),
``engine`` (SQLAlchemy), ``auth`` (:class:`~carbon_jupyter.server.auth.Authenticator`)
and ``ingest`` (:class:`~carbon_jupyter.server.ingest.Ingest`). The dashboard
adds its routes through ``carbon_jupyter.server.dashboard.mount(app)`` when
that package is installed.
"""

from __future__ import annotations

import gc
import importlib
import importlib.util
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from carbon_jupyter import __version__
from carbon_jupyter.forward.wire import WIRE_VERSION
from carbon_jupyter.server import metrics
from carbon_jupyter.server.api import ingest as ingest_routes
from carbon_jupyter.server.api import jobs as job_routes
from carbon_jupyter.server.api import query as query_routes
from carbon_jupyter.server.api import sweeps as sweep_routes
from carbon_jupyter.server.api import system as system_routes
from carbon_jupyter.server.api import tokens as token_routes
from carbon_jupyter.server.api.docs import add_docs
from carbon_jupyter.server.api.errors import SafeJSONResponse
from carbon_jupyter.server.auth import Authenticator
from carbon_jupyter.server.config import ServerSettings
from carbon_jupyter.server.db.engine import migrate, open_database
from carbon_jupyter.server.ingest import Ingest
from carbon_jupyter.server.limits import BodyLimit

DESCRIPTION = """\
Runs measured by carbon-jupyter in notebooks and scripts, collected from many
machines: ingest (`PUT /api/v1/runs/{run_id}`, `POST /api/v1/runs/{run_id}/samples`,
each safe to repeat), queries, totals, sweeps the server runs (`POST /api/v1/sweeps`),
Prometheus `/metrics` and `/healthz`.
Send `Authorization: Bearer <token>` (tokens come from `carbon-jupyter serve token create`).
Errors answer `{"detail": [{"loc": [...], "msg": ..., "type": ...}]}`; `loc` names the field.
"""

_DASHBOARD = "carbon_jupyter.server.dashboard"


def _route_of(app: FastAPI, scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    for candidate in app.router.routes:
        match, _ = candidate.matches(scope)
        if match == Match.FULL:
            return str(getattr(candidate, "path", "unmatched"))
    return "unmatched"


class RequestCounter:
    """ASGI middleware counting every answered request by route, method and status."""

    def __init__(self, app: ASGIApp, api: FastAPI) -> None:
        self.app = app
        self.api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            metrics.count_request(_route_of(self.api, scope), scope["method"], status)


def _error_item(error: dict[str, Any]) -> dict[str, Any]:
    return {
        "loc": list(error.get("loc", ())),
        "msg": error.get("msg", ""),
        "type": error.get("type"),
    }


async def _validation_error(request: Request, exc: Exception) -> SafeJSONResponse:
    assert isinstance(exc, RequestValidationError)
    body = exc.body
    version = body.get("wire_version", WIRE_VERSION) if isinstance(body, dict) else WIRE_VERSION
    if request.method == "PUT" and version != WIRE_VERSION:
        return SafeJSONResponse(
            {
                "detail": [
                    {
                        "loc": ["body", "wire_version"],
                        "msg": f"wire_version {repr(version)[:40]} is not known to this "
                        f"server (it speaks {WIRE_VERSION}): update the server or the client",
                        "type": "unknown_wire_version",
                    }
                ]
            },
            status_code=400,
        )
    errors = [_error_item(e) for e in exc.errors()]
    return SafeJSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)


async def _database_error(request: Request, exc: Exception) -> SafeJSONResponse:
    del exc
    return SafeJSONResponse(
        {
            "detail": [
                {
                    "loc": [],
                    "msg": "the database is unavailable or busy: retry later",
                    "type": "database_unavailable",
                }
            ]
        },
        status_code=503,
        headers={"Retry-After": "5"},
    )


def _mount_dashboard(app: FastAPI) -> None:
    spec = importlib.util.find_spec(_DASHBOARD)
    if spec is None or spec.origin in (None, "namespace"):
        return
    mount = getattr(importlib.import_module(_DASHBOARD), "mount", None)
    if callable(mount):
        mount(app)


def create_app(
    db: str,
    *,
    max_body_b: int | None = None,
    max_batch: int | None = None,
    migrate_db: bool = True,
    engine: Engine | None = None,
    executor: str = "local",
    url: str | None = None,
    lost_after_s: float | None = None,
) -> FastAPI:
    """The server for database ``db`` (a path, ``sqlite:///...`` or ``postgresql://...``).

    Migrates the database first unless ``migrate_db`` is False (``serve``
    migrates once before starting its workers). Raises
    :class:`~carbon_jupyter.server.db.engine.DatabaseError` when the database
    cannot be opened.

    ``executor`` runs submitted sweeps (``local``, ``dask://HOST:PORT``, or
    ``none`` for no sweeps); ``url`` is where its runs are sent (this server,
    as the hosts that run them reach it). ``lost_after_s`` is how long a running
    part of a job may go without word before its job shows it ``lost`` (default
    :data:`~carbon_jupyter.server.config.DEFAULT_LOST_AFTER_S`).
    """
    defaults = ServerSettings(db=db)
    settings = ServerSettings(
        db=db,
        max_body_b=defaults.max_body_b if max_body_b is None else max_body_b,
        max_batch=defaults.max_batch if max_batch is None else max_batch,
        executor=executor,
        url=url,
        lost_after_s=defaults.lost_after_s if lost_after_s is None else lost_after_s,
    )
    engine = engine or open_database(db)
    if migrate_db:
        migrate(engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        sweeps = None
        if settings.executor != "none":
            from carbon_jupyter.server.sweeps.executor import SweepExecutor

            sweeps = SweepExecutor(engine, server_url=settings.url).start()
            app.state.sweeps = sweeps
        yield
        if sweeps is not None:
            sweeps.stop()
        engine.dispose()

    app = FastAPI(
        title="carbon-jupyter team server",
        version=__version__,
        description=DESCRIPTION,
        default_response_class=SafeJSONResponse,
        lifespan=lifespan,
        docs_url=None,  # served from this server, not a CDN: server.api.docs
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.auth = Authenticator(engine)
    app.state.ingest = Ingest(engine)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(SQLAlchemyError, _database_error)
    app.include_router(ingest_routes.router)
    app.include_router(query_routes.router)
    app.include_router(token_routes.router)
    app.include_router(sweep_routes.router)
    app.include_router(job_routes.router)
    app.include_router(system_routes.router)
    add_docs(app)
    app.add_middleware(BodyLimit, max_body_b=settings.max_body_b)
    app.add_middleware(RequestCounter, api=app)
    _mount_dashboard(app)
    return app


def app_from_env() -> FastAPI:
    """The app for one uvicorn worker, from the settings ``serve`` put in the environment."""
    settings = ServerSettings.from_env()
    app = create_app(
        settings.db,
        max_body_b=settings.max_body_b,
        max_batch=settings.max_batch,
        migrate_db=False,
        executor=settings.executor,
        url=settings.url,
        lost_after_s=settings.lost_after_s,
    )
    # Everything loaded so far lives as long as the process: keep it out of the
    # garbage collector's full passes, which requests would otherwise pay for.
    gc.collect()
    gc.freeze()
    return app
