"""Ingest routes: a run when it starts and ends, and its samples while it is live."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from carbon_jupyter.server.api.errors import SafeJSONResponse, problem
from carbon_jupyter.server.api.models import (
    RUN_ID_PATTERN,
    PutRunAnswer,
    RunBody,
    SamplesAnswer,
    SamplesBody,
)
from carbon_jupyter.server.auth import Ingester
from carbon_jupyter.server.ingest import Ingest
from carbon_jupyter.server.metrics import SAMPLES

router = APIRouter(prefix="/api/v1", tags=["ingest"])

RunIdPath = Annotated[str, Path(pattern=RUN_ID_PATTERN, max_length=64, description="the run's id")]

_AUTH: dict[int | str, dict[str, Any]] = {
    401: {"description": "no token, or an unknown one"},
    403: {"description": "read token"},
}


@router.put(
    "/runs/{run_id}",
    responses={
        **_AUTH,
        400: {"description": "unknown wire_version"},
        409: {"description": "the run belongs to another project"},
        413: {"description": "body larger than --max-body"},
    },
)
def put_run(run_id: RunIdPath, body: RunBody, who: Ingester, request: Request) -> PutRunAnswer:
    """Store a run as it stands: when it starts (``running``) and when it ends (final figures).

    Safe to repeat. A run that has ended is never put back to ``running``: a
    late start answers ``unchanged``.
    """
    if body.id != run_id:
        raise problem(
            422,
            ["body", "id"],
            f"id {body.id!r} differs from the run id in the URL ({run_id!r})",
            "id_mismatch",
        )
    ingest: Ingest = request.app.state.ingest
    result = ingest.put_run(run_id, body, who)
    return PutRunAnswer(id=run_id, result=result)  # type: ignore[arg-type]


def _samples_schema() -> dict[str, Any]:
    """The JSON schema of a batch, with the sample's schema written in place."""
    schema = SamplesBody.model_json_schema()
    definitions = schema.pop("$defs", {})
    schema["properties"]["samples"]["items"] = definitions["SampleBody"]
    return schema


@router.post(
    "/runs/{run_id}/samples",
    response_model=SamplesAnswer,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _samples_schema()}},
        }
    },
    responses={
        **_AUTH,
        404: {"description": "the run is not known (PUT it first)"},
        409: {"description": "the run belongs to another project"},
        413: {"description": "body larger than --max-body"},
        422: {"description": "invalid samples, or more than --max-batch"},
    },
)
async def post_samples(run_id: RunIdPath, who: Ingester, request: Request) -> Response:
    """Store a batch of live samples (``SamplesBody``); samples stored before (same ``seq``)
    are skipped.

    The body is parsed straight from JSON by pydantic (this route takes most
    of a server's requests), then written in a thread.
    """
    try:
        body = SamplesBody.model_validate_json(await request.body())
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from None
    max_batch: int = request.app.state.settings.max_batch
    if len(body.samples) > max_batch:
        raise problem(
            422,
            ["body", "samples"],
            f"a batch holds at most {max_batch} samples (--max-batch); this one has "
            f"{len(body.samples)}: send it in parts",
            "batch_too_long",
        )
    ingest: Ingest = request.app.state.ingest
    stored = await run_in_threadpool(ingest.add_samples, run_id, body.samples, who)
    if stored:
        SAMPLES.inc(stored)
    return SafeJSONResponse({"received": len(body.samples), "stored": stored})
