"""The dashboard's sweep pages: the sweeps, one sweep, submitting one from the browser.

``/sweeps``
    The sweeps the viewer may see, newest first: target, axes, status,
    progress, failed runs, who submitted them and when.
``/sweeps/{sweep_id}``
    One sweep: where it stands (finished of total, the configurations running
    now with their time and energy so far), the one-line answer, the
    comparison table and figure of the notebook's ``%carbon sweep``, and
    every run of it. While the sweep is queued or running the page reloads
    itself every :data:`REFRESH_S` seconds. Cancel and Resume buttons for a
    viewer who may ingest.
``/sweeps/new``
    A form that submits a sweep as ``POST /api/v1/sweeps`` does, with the
    same checks; a value that cannot be used shows the form again with one
    line naming the field.
``POST /sweeps/{sweep_id}/cancel``, ``POST /sweeps/{sweep_id}/resume``
    What the buttons do; back to the sweep's page.

A sweep of another project is answered 404, as an unknown one is. Submitting,
cancelling and resuming need a token of scope ``ingest`` (or ``admin``). The
forms rely on the dashboard's cookie being ``SameSite=Strict``: another site
cannot post them with the viewer's token.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from carbon_jupyter.errors import ConfigError
from carbon_jupyter.server.api import sweeps as api
from carbon_jupyter.server.dashboard.pages import NotFound, engine_of, guarded
from carbon_jupyter.server.dashboard.params import BadParameter
from carbon_jupyter.server.dashboard.render import embed, error_page, render
from carbon_jupyter.server.queries import Principal
from carbon_jupyter.server.sweeps import records
from carbon_jupyter.server.sweeps.executor import NONE
from carbon_jupyter.server.sweeps.view import results_of, sweep_detail

router = APIRouter(include_in_schema=False)

#: Sweeps listed on one page of ``/sweeps``.
SWEEPS_PER_PAGE = 100
#: How often the page of a queued or running sweep reloads itself, in seconds.
REFRESH_S = 2
#: The largest form body ``POST /sweeps/new`` reads, in bytes (the script comes URL-encoded).
MAX_FORM_BYTES = 2_500_000
#: The form's fields, as ``POST /api/v1/sweeps`` names them (the target's without ``target.``).
FORM_FIELDS = (
    "kind", "name", "content", "params", "threads", "gpus", "repeat", "phase", "items",
    "label", "metric", "executor",
)  # fmt: skip
#: Statuses in which a sweep can still be cancelled.
ACTIVE = ("queued", "running")


def _sweep_id(sweep_id: str) -> str:
    if not re.fullmatch(api.SWEEP_ID_PATTERN, sweep_id):
        raise NotFound(f"No sweep {sweep_id[:40]!r} that you may see.")
    return sweep_id


def _forbidden(who: Principal, open_server: bool, what: str) -> Response:
    return error_page(
        403,
        "Not allowed",
        f"{what} needs a token of scope ingest; this one's scope is {who.scope}.",
        who=who,
        open_server=open_server,
    )


def axes_text(sweep: dict[str, Any]) -> str:
    """The sweep's axes as the command line writes them: ``n=1,2; threads=1,4; ×2``."""
    parts = list(sweep.get("params") or [])
    for name in ("threads", "gpus"):
        if sweep.get(name):
            parts.append(f"{name}={sweep[name]}")
    if (sweep.get("repeat") or 1) > 1:
        parts.append(f"repeat {sweep['repeat']}")
    return "; ".join(parts) or "one configuration"


def failed_runs(counts: dict[str, int]) -> int:
    """Runs of a sweep that ended without success (``error``, ``lost``, ``interrupted``)."""
    return sum(n for status, n in counts.items() if status not in ("ok", "running"))


# -- the sweeps ---------------------------------------------------------------------------
@router.get("/sweeps")
def sweeps_page(request: Request) -> Response:
    """The sweeps the viewer may see, newest first, a page at a time."""
    return guarded(request, lambda who, open_server: _sweeps(request, who, open_server))


def _page_number(request: Request) -> int:
    text = request.query_params.get("page", "").strip()
    if not text:
        return 1
    if not text.isdigit() or not 1 <= int(text) <= 10**6:
        raise BadParameter("page", f"{text[:20]!r} is not a page number (1, 2, ...)")
    return int(text)


def _sweeps(request: Request, who: Principal, open_server: bool) -> Response:
    page = _page_number(request)
    with engine_of(request).connect() as conn:
        found = records.listing(
            conn, who, limit=SWEEPS_PER_PAGE + 1, offset=(page - 1) * SWEEPS_PER_PAGE
        )
    has_next = len(found) > SWEEPS_PER_PAGE
    found = found[:SWEEPS_PER_PAGE]
    for s in found:
        s["axes"] = axes_text(s)
        s["failed"] = failed_runs(s.get("counts", {}))
    return render(
        "sweeps.html",
        title="Sweeps",
        who=who,
        open_server=open_server,
        sweeps=found,
        page=page,
        has_next=has_next,
    )


# -- one sweep ----------------------------------------------------------------------------
@router.get("/sweeps/new")
def new_sweep_form(request: Request) -> Response:
    """The form that submits a sweep (viewers who may ingest only)."""
    return guarded(request, lambda who, open_server: _new_form(request, who, open_server))


@router.post("/sweeps/new")
async def new_sweep(request: Request) -> Response:
    """Submit the form's sweep; on success, to its page (303)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return error_page(
                413,
                "Too large",
                f"The form is larger than {MAX_FORM_BYTES / 1e6:g} MB. Submit a script that "
                "large with POST /api/v1/sweeps or `carbon-jupyter sweep`.",
            )
    return await run_in_threadpool(
        guarded, request, lambda who, open_server: _submit(request, who, open_server, bytes(body))
    )


@router.get("/sweeps/{sweep_id}")
def sweep_page(request: Request, sweep_id: str) -> Response:
    """One sweep: progress, the answer, the comparison, its runs; reloads while it runs."""
    return guarded(request, lambda who, open_server: _sweep(request, sweep_id, who, open_server))


def _metric_param(request: Request) -> str | None:
    values = request.query_params.getlist("metric")
    if len(values) > 1:
        raise BadParameter("metric", "given more than once; give it once")
    metric = values[0].strip() if values else ""
    if len(metric) > 200:
        raise BadParameter("metric", "longer than 200 characters")
    return metric or None


def _sweep(request: Request, sweep_id: str, who: Principal, open_server: bool) -> Response:
    sweep_id = _sweep_id(sweep_id)
    metric = _metric_param(request)
    with engine_of(request).connect() as conn:
        sweep = sweep_detail(conn, sweep_id, who, metric=metric)
        if sweep is None:
            raise NotFound(f"No sweep {sweep_id!r} that you may see.")
        comparison = sweep["comparison"]
        drawn = any(row["runs"] > 0 for row in comparison["configurations"])
        rows = records.sweep_runs(conn, sweep_id) if drawn else []
    plot_script = plot_div = None
    if drawn:
        try:
            figure = results_of(sweep_id, rows, comparison["metric"]).figure()
        except ConfigError:
            figure = None
        if figure is not None:
            plot_script, plot_div = embed(figure)
    active = sweep["status"] in ACTIVE
    missing = sweep["finished"] < sweep["total"]
    # A sweep run on a client (and forwarded) is stopped or resumed where it runs.
    may_change = who.can_ingest and sweep["executor"] != records.CLIENT
    return render(
        "sweep.html",
        title=f"Sweep {sweep_id}",
        who=who,
        open_server=open_server,
        bokeh=plot_div is not None,
        sweep=sweep,
        axes=axes_text(sweep),
        comparison=comparison,
        metric=comparison["metric"],
        metric_front=set(comparison["metric_front"]),
        refresh_s=REFRESH_S if active else None,
        can_cancel=may_change and active and not sweep["cancel_requested"],
        can_resume=may_change and not active and missing,
        plot_script=plot_script,
        plot_div=plot_div,
    )


def _own(request: Request, sweep_id: str, who: Principal) -> dict[str, Any]:
    sweep_id = _sweep_id(sweep_id)
    with engine_of(request).connect() as conn:
        found = records.get(conn, sweep_id, who)
    if found is None:
        raise NotFound(f"No sweep {sweep_id!r} that you may see.")
    return found


@router.post("/sweeps/{sweep_id}/cancel")
def cancel_sweep(request: Request, sweep_id: str) -> Response:
    """Stop the sweep after the configurations running now; back to its page."""

    def build(who: Principal, open_server: bool) -> Response:
        _own(request, sweep_id, who)
        if not who.can_ingest:
            return _forbidden(who, open_server, "Cancelling a sweep")
        records.request_cancel(engine_of(request), sweep_id)
        return RedirectResponse(f"/sweeps/{sweep_id}", status_code=303)

    return guarded(request, build)


@router.post("/sweeps/{sweep_id}/resume")
def resume_sweep(request: Request, sweep_id: str) -> Response:
    """Queue a finished sweep again to run what it is missing; back to its page."""

    def build(who: Principal, open_server: bool) -> Response:
        _own(request, sweep_id, who)
        if not who.can_ingest:
            return _forbidden(who, open_server, "Resuming a sweep")
        if not records.requeue(engine_of(request), sweep_id):
            return error_page(
                409,
                "Still running",
                f"Sweep {sweep_id} is queued or running: wait for it, or cancel it first.",
                who=who,
                open_server=open_server,
            )
        waker = getattr(request.app.state, "sweeps", None)
        if waker is not None:
            waker.wake()
        return RedirectResponse(f"/sweeps/{sweep_id}", status_code=303)

    return guarded(request, build)


# -- submitting ---------------------------------------------------------------------------
def _new_form(
    request: Request,
    who: Principal,
    open_server: bool,
    values: dict[str, str] | None = None,
    problem: str | None = None,
    status_code: int = 200,
) -> Response:
    if not who.can_ingest:
        return _forbidden(who, open_server, "Submitting a sweep")
    default_executor: str = request.app.state.settings.executor
    return render(
        "sweep_new.html",
        status_code=status_code,
        title="Submit a sweep",
        who=who,
        open_server=open_server,
        values=values or {"kind": "script", "repeat": "1"},
        problem=problem,
        default_executor=default_executor,
        sweeps_off=default_executor == NONE,
    )


class FormProblem(ValueError):
    """A form value that cannot be used; the message names the field."""


def read_form(body: bytes) -> dict[str, str]:
    """The form's fields (every one present, blank when not given); :class:`FormProblem`."""
    try:
        parsed = parse_qs(body.decode("utf-8"), max_num_fields=len(FORM_FIELDS) + 10)
    except (UnicodeDecodeError, ValueError):
        raise FormProblem("The form could not be read (not UTF-8 form data).") from None
    values: dict[str, str] = {}
    for name in FORM_FIELDS:
        given = parsed.get(name) or [""]
        if len(given) > 1:
            raise FormProblem(f"{name}: given more than once; give it once")
        values[name] = given[0] if name == "content" else given[0].strip()
    return values


def sweep_body(values: dict[str, str]) -> api.SweepBody:
    """The API's body for the form's ``values``; :class:`FormProblem` naming the field."""
    if values["kind"] not in ("script", "notebook"):
        raise FormProblem("kind: choose script or notebook")
    document: dict[str, Any] = {
        "target": {
            "kind": values["kind"],
            "name": values["name"] or None,
            "content": values["content"].replace("\r\n", "\n"),
        },
        "params": [line.strip() for line in values["params"].splitlines() if line.strip()],
        "repeat": values["repeat"] or 1,
    }
    for name in ("threads", "gpus", "phase", "items", "label", "metric", "executor"):
        if values[name]:
            document[name] = values[name]
    try:
        return api.SweepBody.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise FormProblem(f"{_field(first['loc'])}: {first['msg']}") from None


def _field(loc: Any) -> str:
    """The form field a body location names: ``("target", "name")`` -> ``name``."""
    parts = [p for p in loc if p != "body"]
    if parts and parts[0] == "target":
        parts = parts[1:]
    if len(parts) >= 2 and parts[0] == "params" and isinstance(parts[1], int):
        return f"params (line {parts[1] + 1})"
    names = [p for p in parts if isinstance(p, str)]
    return names[0] if names else "form"


def _submit(request: Request, who: Principal, open_server: bool, body: bytes) -> Response:
    if not who.can_ingest:
        return _forbidden(who, open_server, "Submitting a sweep")
    values = dict.fromkeys(FORM_FIELDS, "")
    try:
        values = read_form(body)
        answer = api.submit(sweep_body(values), who, request)
    except FormProblem as exc:
        return _new_form(request, who, open_server, values, str(exc), 422)
    except HTTPException as exc:
        if exc.status_code not in (409, 422) or not isinstance(exc.detail, list):
            raise
        first = exc.detail[0]
        problem = f"{_field(first['loc'])}: {first['msg']}"
        return _new_form(request, who, open_server, values, problem, exc.status_code)
    return RedirectResponse(f"/sweeps/{answer['id']}", status_code=303)
