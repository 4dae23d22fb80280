"""Who looks at the dashboard: the token cookie, and the small sign-in page.

A browser cannot send an ``Authorization`` header by itself, so the dashboard
keeps the token in the cookie ``carbon_jupyter_token`` (HttpOnly,
SameSite=Strict, Secure over HTTPS), which :func:`carbon_jupyter.server.auth.principal`
reads like a Bearer token. ``POST /login`` checks a pasted token and sets the
cookie; ``/logout`` clears it. An open server (no tokens at all) needs neither.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from carbon_jupyter.server.auth import MAX_TOKEN_CHARS, TOKEN_COOKIE, Authenticator, principal
from carbon_jupyter.server.dashboard.render import render
from carbon_jupyter.server.queries import Principal

#: The longest sign-in form body read, in bytes.
MAX_LOGIN_BODY_BYTES = 4096
#: How long the browser keeps the cookie, in seconds (the token itself does not expire).
COOKIE_MAX_AGE_S = 30 * 24 * 3600

router = APIRouter(include_in_schema=False)


class SignInNeeded(Exception):
    """The request has no token (or an unknown one) and the server is not open."""

    def __init__(self, problem: str | None = None) -> None:
        super().__init__(problem or "sign in")
        self.problem = problem


def viewer(request: Request) -> Principal:
    """Who is asking, from the cookie or a Bearer header; :class:`SignInNeeded` if nobody."""
    try:
        return principal(request)
    except HTTPException as exc:
        if exc.status_code == 401:
            had_token = TOKEN_COOKIE in request.cookies or "authorization" in request.headers
            raise SignInNeeded(
                "That token is not known to this server or was revoked." if had_token else None
            ) from None
        raise


def is_open(request: Request) -> bool:
    """Whether the server holds no tokens (everyone is the local admin)."""
    auth: Authenticator = request.app.state.auth
    return auth.is_open()


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this server only, else the runs page."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def sign_in_page(
    request: Request,
    problem: str | None = None,
    status_code: int = 401,
    next_page: str | None = None,
) -> Response:
    """The sign-in form, coming back to ``next_page`` (else the page asked for)."""
    target = next_page or request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return render(
        "login.html",
        status_code=status_code,
        title="Sign in",
        who=None,
        open_server=False,
        bokeh=False,
        problem=problem,
        next=safe_next(target),
    )


@router.get("/login")
def login_form(request: Request) -> Response:
    """The sign-in form (on an open server, straight to the runs)."""
    if is_open(request):
        return RedirectResponse("/", status_code=303)
    next_page = safe_next(request.query_params.get("next"))
    return render(
        "login.html",
        title="Sign in",
        who=None,
        open_server=False,
        bokeh=False,
        problem=None,
        next=next_page,
    )


@router.post("/login")
async def login(request: Request) -> Response:
    """Check the pasted token; on success set the cookie and go back to the page asked for."""
    body = await request.body()
    if len(body) > MAX_LOGIN_BODY_BYTES:
        return sign_in_page(request, "That is too long to be a token.", 400, "/")
    try:
        form = parse_qs(body.decode("utf-8"), max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        return sign_in_page(request, "The form could not be read; paste the token again.", 400, "/")
    token = (form.get("token") or [""])[0].strip()
    target = safe_next((form.get("next") or ["/"])[0])
    auth: Authenticator = request.app.state.auth
    if auth.is_open():
        return RedirectResponse(target, status_code=303)
    if not token:
        return sign_in_page(request, "Paste a token first.", 400, target)
    found = auth.lookup(token) if len(token) <= MAX_TOKEN_CHARS else None
    if found is None:
        problem = "That token is not known to this server or was revoked."
        return sign_in_page(request, problem, 401, target)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        TOKEN_COOKIE,
        token,
        max_age=COOKIE_MAX_AGE_S,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


def _sign_out() -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(TOKEN_COOKIE, path="/", httponly=True, samesite="strict")
    return response


@router.post("/logout")
def logout_post() -> Response:
    """Forget the token cookie."""
    return _sign_out()


@router.get("/logout")
def logout_get() -> Response:
    """Forget the token cookie (a link works as well as the button)."""
    return _sign_out()
