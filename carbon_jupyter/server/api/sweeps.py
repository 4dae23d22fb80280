"""Sweep routes: submit a sweep for the server to run, follow it, cancel it, resume it.

``POST /api/v1/sweeps`` takes a target (a script's or notebook's text, or a
command) and its axes as the command line writes them, queues it, and answers
201 with its id; the server's executor runs it (see
:mod:`carbon_jupyter.server.sweeps.executor`). Submitting needs an ``ingest``
token: the runs go into that token's project. The code runs as the server's
own user on the executor's hosts, so give ``ingest`` tokens only to people
you would let run code there, or start the server with ``--executor none``.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine

from carbon_jupyter.errors import ConfigError
from carbon_jupyter.server.api.errors import problem
from carbon_jupyter.server.auth import Ingester, Reader
from carbon_jupyter.server.sweeps import records
from carbon_jupyter.server.sweeps.executor import NONE, check_executor
from carbon_jupyter.server.sweeps.view import sweep_detail
from carbon_jupyter.sweeps.axes import parse_gpus, parse_param, parse_threads
from carbon_jupyter.sweeps.spec import MAX_CONTENT_CHARS

router = APIRouter(prefix="/api/v1", tags=["sweeps"])

#: The most configurations times repeats one sweep may hold.
MAX_RUNS = 1000
SWEEP_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$"
SweepIdPath = Annotated[
    str, Path(pattern=SWEEP_ID_PATTERN, max_length=32, description="the sweep's id")
]
Text200 = Annotated[str, Field(min_length=1, max_length=200)]
Scalar = str | int | float | bool


class TargetBody(BaseModel):
    """What runs: a script or notebook carried as text, or a command present on the hosts."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["script", "notebook", "command"]
    #: The file name the script or notebook is written as (``train.py``).
    name: Text200 | None = None
    content: Annotated[str, Field(max_length=MAX_CONTENT_CHARS)] | None = None
    argv: Annotated[list[Annotated[str, Field(max_length=4000)]], Field(max_length=200)] = []


class TrackerOptions(BaseModel):
    """Options every run of the sweep is tracked with."""

    model_config = ConfigDict(extra="forbid")

    interval: Annotated[float, Field(ge=0.05, le=3600)] | None = None
    country: Annotated[str, Field(max_length=80)] | None = None
    region: Annotated[str, Field(max_length=80)] | None = None
    intensity: Annotated[float, Field(ge=0, le=5000)] | None = None
    pue: Annotated[float, Field(ge=1, le=5)] | None = None
    attribution: Literal["process", "machine"] | None = None


class SweepBody(BaseModel):
    """A sweep to run: the target and its axes (``params`` as ``NAME=V1,V2`` or a mapping)."""

    model_config = ConfigDict(extra="forbid")

    target: TargetBody
    params: (
        Annotated[list[Annotated[str, Field(max_length=4000)]], Field(max_length=50)]
        | Annotated[dict[Text200, list[Scalar]], Field(max_length=50)]
    ) = []
    threads: Annotated[str, Field(max_length=200)] | list[int] | None = None
    gpus: Annotated[str, Field(max_length=200)] | list[str] | None = None
    repeat: Annotated[int, Field(ge=1, le=100)] = 1
    phase: Literal["train", "inference", "other"] | None = None
    items: Annotated[int, Field(ge=1)] | None = None
    label: Text200 | None = None
    metric: Text200 | None = None
    params_as: Literal["args", "env"] = "args"
    #: ``local``, or a Dask scheduler as ``dask://HOST:PORT``; default: the server's.
    executor: Annotated[str, Field(max_length=300)] | None = None
    options: TrackerOptions = TrackerOptions()


def _texts(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return ",".join(str(v) for v in value)  # type: ignore[attr-defined]


def _bad(loc: list[str | int], msg: str) -> Exception:
    return problem(422, ["body", *loc], msg, "invalid_sweep")


def spec_of(body: SweepBody) -> tuple[dict[str, Any], int]:
    """The sweep's document and how many runs it holds; 422 naming the field when wrong."""
    target = body.target
    if target.kind == "command":
        if not target.argv:
            raise _bad(
                ["target", "argv"], "a command target needs argv, e.g. ['./bench', '--fast']"
            )
        name = target.name or target.argv[0]
    else:
        if target.content is None:
            raise _bad(["target", "content"], f"a {target.kind} target carries its text in content")
        suffix = ".ipynb" if target.kind == "notebook" else ".py"
        name = target.name or f"target{suffix}"
        if "/" in name or "\\" in name or name.startswith(".") or not name.endswith(suffix):
            raise _bad(["target", "name"], f"give a plain file name ending in {suffix}")
        if target.kind == "notebook":
            try:
                json.loads(target.content)
            except ValueError:
                raise _bad(
                    ["target", "content"], "a notebook's content is its .ipynb JSON"
                ) from None
    if isinstance(body.params, dict):
        params = [f"{k}={','.join(str(v) for v in vs)}" for k, vs in body.params.items()]
    else:
        params = list(body.params)
    runs = body.repeat
    names: list[str] = []
    for i, text in enumerate(params):
        try:
            name_, values = parse_param(text)
        except ConfigError as exc:
            raise _bad(["params", i], str(exc)) from None
        if name_ in names:
            raise _bad(["params", i], f"{name_} is given twice; list its values once")
        names.append(name_)
        runs *= len(values)
    threads, gpus = _texts(body.threads), _texts(body.gpus)
    checks: tuple[tuple[str, str | None, Any], ...] = (
        ("threads", threads, parse_threads),
        ("gpus", gpus, parse_gpus),
    )
    for field_, given, parse in checks:
        if given:
            try:
                runs *= len(parse(given))
            except ConfigError as exc:
                raise _bad([field_], str(exc)) from None
    if runs > MAX_RUNS:
        raise _bad(["params"], f"{runs} runs is more than {MAX_RUNS}: split the sweep")
    spec = {
        "target": {
            "kind": target.kind, "name": name, "content": target.content,
            "argv": target.argv if target.kind == "command" else [],
        },
        "params": params, "threads": threads, "gpus": gpus, "repeat": body.repeat,
        "phase": body.phase, "items": body.items, "label": body.label, "metric": body.metric,
        "params_as": body.params_as,
        "options": body.options.model_dump(exclude_none=True),
    }  # fmt: skip
    return spec, runs


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def _not_found(sweep_id: str) -> Exception:
    return problem(
        404, ["path", "sweep_id"], f"no sweep {sweep_id} that this token may see", "not_found"
    )


@router.post("/sweeps", status_code=201, responses={409: {"description": "sweeps are off here"}})
def submit(body: SweepBody, who: Ingester, request: Request) -> dict[str, Any]:
    """Queue a sweep for the server's executor; ``id``, ``status``, ``total`` runs, ``url``."""
    default: str = request.app.state.settings.executor
    if default == NONE:
        raise problem(
            409, ["body", "executor"],
            "this server runs no sweeps (started with --executor none): run the sweep "
            "where you are, with `carbon-jupyter sweep` and forwarding",
            "sweeps_off",
        )  # fmt: skip
    executor = default
    if body.executor is not None:
        try:
            executor = check_executor(body.executor)
        except ValueError as exc:
            raise _bad(["executor"], str(exc)) from None
        if executor == NONE:
            raise _bad(["executor"], "give local or dask://HOST:PORT")
    if executor != "local":
        import importlib.util

        if importlib.util.find_spec("distributed") is None:
            raise _bad(
                ["executor"],
                "this server has no Dask: install it there with pip install "
                "'carbon-jupyter[dask]', or use the local executor",
            )
    spec, total = spec_of(body)
    sweep_id = records.create(_engine(request), who, spec, executor, total)
    waker = getattr(request.app.state, "sweeps", None)
    if waker is not None:
        waker.wake()
    return {
        "id": sweep_id, "status": "queued", "total": total, "executor": executor,
        "url": f"/sweeps/{sweep_id}", "api": f"/api/v1/sweeps/{sweep_id}",
    }  # fmt: skip


@router.get("/sweeps")
def list_sweeps(
    who: Reader,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10**12)] = 0,
) -> dict[str, Any]:
    """The sweeps this token may see, newest first, each with its runs' counts by status."""
    with _engine(request).connect() as conn:
        found = records.listing(conn, who, limit=limit, offset=offset)
    return {"sweeps": found, "limit": limit, "offset": offset}


@router.get("/sweeps/{sweep_id}", responses={404: {"description": "no such sweep"}})
def get_sweep(
    sweep_id: SweepIdPath,
    who: Reader,
    request: Request,
    metric: Annotated[str, Query(max_length=200)] | None = None,
) -> dict[str, Any]:
    """A sweep: where it stands, the configurations running now, its runs and the comparison
    (``comparison.answer``, ``comparison.configurations``, the Pareto fronts)."""
    with _engine(request).connect() as conn:
        found = sweep_detail(conn, sweep_id, who, metric=metric)
    if found is None:
        raise _not_found(sweep_id)
    return found


def _own(request: Request, sweep_id: str, who: Any) -> None:
    with _engine(request).connect() as conn:
        found = records.get(conn, sweep_id, who)
    if found is None:
        raise _not_found(sweep_id)
    if found["executor"] == records.CLIENT:
        raise problem(
            409, ["path", "sweep_id"],
            f"sweep {sweep_id} ran on a client, not on this server: stop it with Ctrl-C there, "
            f"resume it there with `carbon-jupyter sweep --resume {sweep_id} ...`",
            "client_sweep",
        )  # fmt: skip


@router.post("/sweeps/{sweep_id}/cancel", responses={404: {"description": "no such sweep"}})
def cancel(sweep_id: SweepIdPath, who: Ingester, request: Request) -> dict[str, Any]:
    """Stop the sweep after the configurations running now (everything so far is kept)."""
    _own(request, sweep_id, who)
    status = records.request_cancel(_engine(request), sweep_id)
    return {"id": sweep_id, "status": status, "cancel_requested": True}


@router.post(
    "/sweeps/{sweep_id}/resume",
    responses={404: {"description": "no such sweep"}, 409: {"description": "still running"}},
)
def resume(sweep_id: SweepIdPath, who: Ingester, request: Request) -> dict[str, Any]:
    """Queue a finished sweep again: only the configurations it is missing run."""
    _own(request, sweep_id, who)
    if not records.requeue(_engine(request), sweep_id):
        raise problem(
            409, ["path", "sweep_id"],
            f"sweep {sweep_id} is queued or running: wait for it, or cancel it first",
            "sweep_running",
        )  # fmt: skip
    waker = getattr(request.app.state, "sweeps", None)
    if waker is not None:
        waker.wake()
    return {"id": sweep_id, "status": "queued"}
