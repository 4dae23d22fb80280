"""Tokens, and who a request is.

A token belongs to one user and one project and has a scope: ``read`` (read
its project), ``ingest`` (send runs into its project, and read it) or
``admin`` (everything, every project, and managing tokens). The server keeps
only each token's SHA-256 (``tokens.token_hash``) and its first characters
(``prefix``), so a token is shown once, when it is created.

A request carries its token as ``Authorization: Bearer <token>``, or, for the
dashboard in a browser, in the cookie ``carbon_jupyter_token``. While the
database holds no tokens at all the server is *open*: every request is user
``local`` of project ``default`` with the ``admin`` scope (``carbon-jupyter
serve`` then listens only on a loopback address). Revoking every token does
not reopen it.

Lookups are cached for a few seconds (:data:`CACHE_TTL_S`), so ingesting
does not read the tokens table on every request; a revoked token stops
working within that time.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import Engine, func, select, update
from starlette.concurrency import run_in_threadpool

from carbon_jupyter.errors import ConfigError
from carbon_jupyter.server import times
from carbon_jupyter.server.api.errors import problem
from carbon_jupyter.server.db.accounts import ensure_project, ensure_user
from carbon_jupyter.server.db.engine import writing
from carbon_jupyter.server.db.schema import projects, tokens, users
from carbon_jupyter.server.queries import OPEN_PRINCIPAL, SCOPES, Principal

TOKEN_COOKIE = "carbon_jupyter_token"
#: Every token starts with this, so it can be recognised in a leaked file.
TOKEN_PREFIX = "cj_"
#: How long a token lookup (and "are there tokens at all") is trusted, in seconds.
CACHE_TTL_S = 5.0
#: The longest token accepted; anything longer is not one of ours.
MAX_TOKEN_CHARS = 200
#: The longest user or project name.
MAX_NAME_CHARS = 200
#: How many characters of a token are kept in clear to tell tokens apart.
SHOWN_PREFIX_CHARS = 10


def hash_token(token: str) -> str:
    """The SHA-256 hex digest the server keeps in place of ``token``."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def check_name(what: str, name: str) -> str:
    """A user or project name: 1 to 200 printable characters, trimmed."""
    clean = name.strip()
    if not clean or len(clean) > MAX_NAME_CHARS or not clean.isprintable():
        raise ConfigError(
            f"{what} {name!r} is not a name: give 1 to {MAX_NAME_CHARS} printable characters"
        )
    return clean


def check_scope(scope: str) -> str:
    if scope not in SCOPES:
        raise ConfigError(f"scope {scope!r} is not one of: {', '.join(SCOPES)}")
    return scope


def create_token(engine: Engine, user: str, project: str, scope: str = "ingest") -> str:
    """A new token for ``user`` in ``project`` with ``scope``; the clear text is returned once.

    The user and project are created if they are new. Raises ``ConfigError``
    for an empty or overlong name or an unknown scope.
    """
    return issue_token(engine, user, project, scope)[0]


def issue_token(engine: Engine, user: str, project: str, scope: str) -> tuple[str, int]:
    """Like :func:`create_token`, also giving the new token's id."""
    user = check_name("user", user)
    project = check_name("project", project)
    check_scope(scope)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with writing(engine) as conn:
        done = conn.execute(
            tokens.insert().values(
                token_hash=hash_token(token),
                prefix=token[:SHOWN_PREFIX_CHARS],
                user_id=ensure_user(conn, user),
                project_id=ensure_project(conn, project),
                scope=scope,
                created_at=times.now_iso(),
            )
        )
        key = done.inserted_primary_key
        assert key is not None
        token_id = int(key[0])
    return token, token_id


def revoke_token(engine: Engine, token_id: int) -> bool:
    """Revoke token ``token_id``; False when there is no such token or it was revoked already."""
    with writing(engine) as conn:
        done = conn.execute(
            update(tokens)
            .where(tokens.c.id == token_id, tokens.c.revoked_at.is_(None))
            .values(revoked_at=times.now_iso())
        )
        return bool(done.rowcount)


_TOKEN_LISTING = select(
    tokens.c.id,
    tokens.c.prefix,
    users.c.name.label("user"),
    projects.c.name.label("project"),
    tokens.c.scope,
    tokens.c.created_at,
    tokens.c.revoked_at,
).select_from(
    tokens.join(users, users.c.id == tokens.c.user_id).join(
        projects, projects.c.id == tokens.c.project_id
    )
)


def list_tokens(engine: Engine) -> list[dict[str, Any]]:
    """Every token (never its clear text): id, prefix, user, project, scope, created, revoked."""
    with engine.connect() as conn:
        rows = conn.execute(_TOKEN_LISTING.order_by(tokens.c.id))
        return [dict(row._mapping) for row in rows]


def token_info(engine: Engine, token_id: int) -> dict[str, Any] | None:
    """One token as :func:`list_tokens` lists it, or None."""
    with engine.connect() as conn:
        row = conn.execute(_TOKEN_LISTING.where(tokens.c.id == token_id)).first()
        return None if row is None else dict(row._mapping)


def has_tokens(engine: Engine) -> bool:
    """Whether the database holds any token (revoked ones count): the server is not open."""
    with engine.connect() as conn:
        return bool(conn.execute(select(func.count()).select_from(tokens)).scalar_one())


class Authenticator:
    """Resolves tokens to principals for one server process, with a short cache."""

    def __init__(self, engine: Engine, ttl_s: float = CACHE_TTL_S) -> None:
        self.engine = engine
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._open: tuple[bool, float] | None = None
        self._known: dict[str, tuple[Principal | None, float]] = {}
        self._open_principal: Principal | None = None

    def forget(self) -> None:
        """Drop every cached answer (after tokens changed in this process)."""
        with self._lock:
            self._open = None
            self._known.clear()

    def is_open(self) -> bool:
        """Whether the database holds no tokens (cached for ``ttl_s``)."""
        now = time.monotonic()
        cached = self._open
        if cached is not None and cached[1] > now:
            return cached[0]
        value = not has_tokens(self.engine)
        self._open = (value, now + self.ttl_s)
        return value

    def peek_open(self) -> bool | None:
        """Whether the server is open, if known without asking the database."""
        cached = self._open
        if cached is None or cached[1] <= time.monotonic():
            return None
        if cached[0] and self._open_principal is None:
            return None
        return cached[0]

    def peek(self, token: str) -> tuple[bool, Principal | None]:
        """``(True, principal or None)`` when ``token`` is cached, else ``(False, None)``."""
        cached = self._known.get(hash_token(token))
        if cached is None or cached[1] <= time.monotonic():
            return False, None
        return True, cached[0]

    def open_principal(self) -> Principal:
        """User ``local`` of project ``default``, admin, with their ids (created on first use)."""
        if self._open_principal is None:
            with writing(self.engine) as conn:
                user_id = ensure_user(conn, OPEN_PRINCIPAL.user)
                project_id = ensure_project(conn, OPEN_PRINCIPAL.project)
            self._open_principal = Principal(
                OPEN_PRINCIPAL.user, OPEN_PRINCIPAL.project, "admin", user_id, project_id
            )
        return self._open_principal

    def lookup(self, token: str) -> Principal | None:
        """The principal of ``token``, or None when it is unknown or revoked."""
        digest = hash_token(token)
        now = time.monotonic()
        cached = self._known.get(digest)
        if cached is not None and cached[1] > now:
            return cached[0]
        stmt = (
            select(
                users.c.name.label("user"),
                projects.c.name.label("project"),
                tokens.c.scope,
                tokens.c.user_id,
                tokens.c.project_id,
            )
            .select_from(
                tokens.join(users, users.c.id == tokens.c.user_id).join(
                    projects, projects.c.id == tokens.c.project_id
                )
            )
            .where(tokens.c.token_hash == digest, tokens.c.revoked_at.is_(None))
        )
        with self.engine.connect() as conn:
            row = conn.execute(stmt).first()
        found = (
            Principal(row.user, row.project, row.scope, row.user_id, row.project_id)
            if row is not None
            else None
        )
        with self._lock:
            if len(self._known) > 10_000:
                self._known.clear()
            self._known[digest] = (found, now + self.ttl_s)
        return found


_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def _token_of(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise problem(
                401,
                ["header", "authorization"],
                "the Authorization header must be 'Bearer <token>'",
                "bad_authorization",
                _CHALLENGE,
            )
        return value.strip()
    return request.cookies.get(TOKEN_COOKIE) or None


def _missing_token() -> Exception:
    return problem(
        401,
        ["header", "authorization"],
        "this server needs a token: send 'Authorization: Bearer <token>' "
        "(an admin creates one with `carbon-jupyter serve token create`)",
        "missing_token",
        _CHALLENGE,
    )


def _invalid_token() -> Exception:
    return problem(
        401,
        ["header", "authorization"],
        "the token is not known to this server or was revoked: ask an admin for a new one",
        "invalid_token",
        _CHALLENGE,
    )


def principal(request: Request) -> Principal:
    """Who sent ``request``: raises a 401 ``HTTPException`` without a known token unless open.

    May read the database (on a cache miss), so call it from a thread, not
    the event loop; routes use :func:`require`, which does.
    """
    auth: Authenticator = request.app.state.auth
    token = _token_of(request)
    if auth.is_open():
        return auth.open_principal()
    if token is None:
        raise _missing_token()
    found = auth.lookup(token) if len(token) <= MAX_TOKEN_CHARS else None
    if found is None:
        raise _invalid_token()
    return found


async def current_principal(request: Request) -> Principal:
    """:func:`principal` as an async dependency: answered from the cache on the event loop
    when it can be (every request but the first few seconds'), else in a thread."""
    auth: Authenticator = request.app.state.auth
    token = _token_of(request)
    is_open = auth.peek_open()
    if is_open:
        return auth.open_principal()
    if is_open is False:
        if token is None:
            raise _missing_token()
        if len(token) > MAX_TOKEN_CHARS:
            raise _invalid_token()
        known, found = auth.peek(token)
        if known:
            if found is None:
                raise _invalid_token()
            return found
    return await run_in_threadpool(principal, request)


def require(scope: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency giving the request's principal if its token has ``scope``, else 403."""
    check_scope(scope)

    async def dependency(who: Annotated[Principal, Depends(current_principal)]) -> Principal:
        allowed = who.is_admin or scope == "read" or (scope == "ingest" and who.can_ingest)
        if not allowed:
            raise problem(
                403,
                ["header", "authorization"],
                f"this token's scope is {who.scope!r}; this request needs {scope!r} (or admin)",
                "insufficient_scope",
            )
        return who

    return dependency


#: The request's principal, any scope.
Reader = Annotated[Principal, Depends(require("read"))]
#: The request's principal, with a token that may ingest.
Ingester = Annotated[Principal, Depends(require("ingest"))]
#: The request's principal, with an admin token.
Admin = Annotated[Principal, Depends(require("admin"))]
