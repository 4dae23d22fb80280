"""The sidebar's REST routes, under ``<base_url>carbon-jupyter/api/``. Every one needs login.

All routes answer ``GET`` with JSON; see :mod:`carbon_jupyter.serverext` for
the list. A request without the server's token (or login cookie) gets 403.
Errors are JSON ``{"message": ...}`` naming the fix: 400 for a bad parameter
(the message starts with its name), 404 for an unknown run, 503 when the run
store cannot be read. Before the first tracked run there is no store; the
routes then answer as for an empty one (see :mod:`carbon_jupyter.serverext.reads`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, get_args

from jupyter_server.base.handlers import APIHandler
from tornado import web

from carbon_jupyter.errors import ConfigError, StoreError
from carbon_jupyter.model import Phase, Status
from carbon_jupyter.serverext import reads
from carbon_jupyter.serverext.payload import machine_json
from carbon_jupyter.store import RunNotFoundError, Store, StoreMissingError

if TYPE_CHECKING:
    from carbon_jupyter.serverext.app import CarbonJupyterApp

API = "carbon-jupyter/api"
T = TypeVar("T")
#: The largest whole number a query parameter may hold (SQLite's integers are 64-bit).
MAX_INT = 2**63 - 1


class _Handler(APIHandler):
    """Shared plumbing: the extension, blocking reads on its worker threads, JSON replies."""

    @property
    def extension(self) -> CarbonJupyterApp:
        app: CarbonJupyterApp = self.settings["carbon_jupyter"]
        return app

    async def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(store, *args, **kwargs)`` off the event loop; store errors become HTTP.

        Before the store exists ``fn`` gets a :class:`~carbon_jupyter.serverext.reads.NoStore`.
        """

        def call() -> T:
            store: Store | reads.NoStore
            try:
                store = self.extension.store()
            except StoreMissingError as missing:
                store = reads.NoStore(missing.path)
            return fn(store, *args, **kwargs)

        try:
            return await self.extension.run_blocking(call)
        except RunNotFoundError as exc:
            raise web.HTTPError(404, str(exc)) from None
        except ConfigError as exc:
            raise web.HTTPError(400, str(exc)) from None
        except StoreError as exc:
            raise web.HTTPError(503, str(exc)) from None

    def reply(self, payload: dict[str, Any]) -> None:
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(payload, allow_nan=False))

    def int_argument(self, name: str, default: int, low: int, high: int | None = None) -> int:
        text = self.get_query_argument(name, None)
        if text in (None, ""):
            return default
        try:
            value = int(text)
        except ValueError:
            raise web.HTTPError(400, f"{name}={text!r} is not a whole number") from None
        if value < low:
            raise web.HTTPError(400, f"{name}={value} is below {low}")
        if high is None and value > MAX_INT:
            raise web.HTTPError(400, f"{name}={value} is above {MAX_INT}")
        return value if high is None else min(value, high)

    def choices(self, name: str, allowed: Sequence[str]) -> list[str]:
        """The comma-separated values of ``name`` (repeatable), each one of ``allowed``."""
        values = [v for text in self.get_query_arguments(name) for v in text.split(",") if v]
        for value in values:
            if value not in allowed:
                raise web.HTTPError(400, f"{name}={value!r} is not one of: {', '.join(allowed)}")
        return values


class InfoHandler(_Handler):
    """``GET /``: the version and where the run store is."""

    @web.authenticated
    async def get(self) -> None:
        from carbon_jupyter import __version__

        path = await self.read(lambda store: str(store.path))
        self.reply({"name": "carbon-jupyter", "version": __version__, "store": path})


class RunsHandler(_Handler):
    """``GET /runs``: runs, newest first, filtered by the query (see ``Store.runs``)."""

    @web.authenticated
    async def get(self) -> None:
        filters: dict[str, Any] = {}
        for name in ("label", "notebook", "kernel", "since", "origin"):
            value = self.get_query_argument(name, None)
            if value:
                filters[name] = value
        phases = self.choices("phase", get_args(Phase))
        if len(phases) > 1:
            raise web.HTTPError(400, f"phase={','.join(phases)!r}: give one phase")
        if phases:
            filters["phase"] = phases[0]
        statuses = self.choices("status", get_args(Status))
        if statuses:
            filters["status"] = statuses
        tags = self.get_query_arguments("tag")
        if len(tags) == 1:
            filters["tag"] = tags[0]  # "key" (the tag is set) or "key=value"
        elif tags:
            filters["tag"] = dict(_tag_pair(t) for t in tags)
        limit = self.int_argument("limit", 50, 1, self.extension.max_runs)
        self.reply(await self.read(reads.list_runs, limit, **filters))


class RunHandler(_Handler):
    """``GET /runs/<id>``: one run (id or unique prefix) with its samples (``samples=0``: none)."""

    @web.authenticated
    async def get(self, run_id: str) -> None:
        with_samples = self.get_query_argument("samples", "1") not in ("0", "false", "no")
        self.reply(await self.read(reads.one_run, run_id, with_samples))


class LiveHandler(_Handler):
    """``GET /kernels/<kernel_id>/live?run=<id>&since=<cursor>``: the current run's new samples."""

    @web.authenticated
    async def get(self, kernel_id: str) -> None:
        run_id = self.get_query_argument("run", None) or None
        since = self.int_argument("since", 0, 0)
        max_samples = self.extension.max_samples
        self.reply(await self.read(reads.live, kernel_id, run_id, since, max_samples))


class TotalsHandler(_Handler):
    """``GET /kernels/<kernel_id>/totals``: the kernel session's energy, CO2 and intensity."""

    @web.authenticated
    async def get(self, kernel_id: str) -> None:
        self.reply(await self.read(reads.kernel_totals, kernel_id))


class MachineHandler(_Handler):
    """``GET /machine``: the machine's power now; sampling runs while this is polled."""

    @web.authenticated
    async def get(self) -> None:
        reading = await self.extension.run_blocking(self.extension.machine.poll)
        self.reply(machine_json(reading))


class ForwardingHandler(_Handler):
    """``GET /forwarding``: the team server runs go to, what waits for it, the last error."""

    @web.authenticated
    async def get(self) -> None:
        self.reply(await self.read(reads.forwarding))


def _tag_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise web.HTTPError(
            400, f"tag={text!r} is not key=value; several tags each need one, e.g. tag=model=bert"
        )
    return key, value


_ID = r"([^/]+)"

#: (pattern relative to the server's base URL, handler) for every route.
ROUTES: list[tuple[str, type[_Handler]]] = [
    (f"/{API}/?", InfoHandler),
    (f"/{API}/runs/?", RunsHandler),
    (f"/{API}/runs/{_ID}/?", RunHandler),
    (f"/{API}/kernels/{_ID}/live/?", LiveHandler),
    (f"/{API}/kernels/{_ID}/totals/?", TotalsHandler),
    (f"/{API}/machine/?", MachineHandler),
    (f"/{API}/forwarding/?", ForwardingHandler),
]
