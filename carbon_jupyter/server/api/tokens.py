"""Token administration over HTTP, for admin tokens (the CLI does the same: ``serve token``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request

from carbon_jupyter.errors import ConfigError
from carbon_jupyter.server import auth
from carbon_jupyter.server.api.errors import problem
from carbon_jupyter.server.api.models import NewToken, TokenCreate, TokenInfo
from carbon_jupyter.server.auth import Admin

router = APIRouter(prefix="/api/v1", tags=["tokens"])

TokenId = Annotated[int, Path(ge=1, le=2**31 - 1, description="the token's id")]


def _authenticator(request: Request) -> auth.Authenticator:
    found: auth.Authenticator = request.app.state.auth
    return found


def _unknown(token_id: int) -> Exception:
    return problem(404, ["path", "token_id"], f"no active token {token_id}", "unknown_token")


@router.get("/tokens")
def list_tokens(who: Admin, request: Request) -> list[TokenInfo]:
    """Every token, revoked ones included; never a token's clear text."""
    del who
    return [TokenInfo(**t) for t in auth.list_tokens(_authenticator(request).engine)]


@router.post("/tokens", status_code=201, responses={422: {"description": "bad name or scope"}})
def create_token(body: TokenCreate, who: Admin, request: Request) -> NewToken:
    """A new token for ``user`` in ``project``; its clear text is in this answer only."""
    del who
    authenticator = _authenticator(request)
    try:
        token, token_id = auth.issue_token(
            authenticator.engine, body.user, body.project, body.scope
        )
    except ConfigError as exc:
        field = "project" if str(exc).startswith("project") else "user"
        raise problem(422, ["body", field], str(exc), "bad_name") from None
    authenticator.forget()
    info = auth.token_info(authenticator.engine, token_id)
    if info is None:  # revoked by someone else in the same instant
        raise _unknown(token_id)
    return NewToken(token=token, **info)


@router.delete("/tokens/{token_id}", responses={404: {"description": "no such active token"}})
def revoke_token(token_id: TokenId, who: Admin, request: Request) -> TokenInfo:
    """Revoke a token; it stops working within a few seconds on every server process."""
    del who
    authenticator = _authenticator(request)
    if not auth.revoke_token(authenticator.engine, token_id):
        raise _unknown(token_id)
    authenticator.forget()
    info = auth.token_info(authenticator.engine, token_id)
    if info is None:
        raise _unknown(token_id)
    return TokenInfo(**info)
