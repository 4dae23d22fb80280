"""``carbon-jupyter serve``: the team server, and its tokens.

``carbon-jupyter serve [--host 127.0.0.1] [--port 8787] [--db PATH|postgresql://...]
[--workers N] [--max-body BYTES] [--max-batch N] [--lost-after SECONDS]``
    Bring the database up to date (Alembic), then serve the API, the
    dashboard and ``/metrics`` with uvicorn. Without any token the server is
    open to everyone who can reach it, so it then refuses a host other than
    a loopback address. A running part of a distributed job that the server
    has heard nothing from for ``--lost-after`` seconds is shown ``lost``.
``carbon-jupyter serve token create --user NAME --project NAME [--scope ingest|read|admin]``
    Print a new token (only the token, on stdout; what it is on stderr). The
    server keeps only its SHA-256, so it is shown this once.
``carbon-jupyter serve token list`` / ``carbon-jupyter serve token revoke ID``
    The tokens (never their clear text), and revoking one.

The database is ``--db``, else ``$CARBON_JUPYTER_SERVER_DB``, else
``server.db`` beside the local store (``<jupyter data dir>/carbon_jupyter``).
A database that cannot be opened is one line naming the fix, exit code 2.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

from carbon_jupyter.errors import ConfigError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8787
MAX_WORKERS = 64
_MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_APP_FACTORY = "carbon_jupyter.server.app:app_from_env"


def _whole(low: int, high: int, what: str) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {what}: give a whole number from {low} to {high}"
            )
        return value

    return parse


def _lost_after(text: str) -> float:
    """``--lost-after``: seconds within the server's bounds, else argparse's one line."""
    from carbon_jupyter.server.config import DEFAULT_LOST_AFTER_S, LOST_AFTER_RANGE_S

    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    low, high = LOST_AFTER_RANGE_S
    if not low <= value <= high:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of seconds: give seconds from {low:.0f} to {high:.0f} "
            f"(default {DEFAULT_LOST_AFTER_S:g})"
        )
    return value


def register(sub: Any) -> None:
    """Add ``serve`` (and ``serve token ...``) to the ``carbon-jupyter`` subcommands."""
    from carbon_jupyter.server.config import MAX_BATCH_RANGE, MAX_BODY_RANGE_B

    serve = sub.add_parser(
        "serve",
        help="run the team server (API, dashboard, /metrics), or manage its tokens",
        description="Run the team server, or manage its tokens (`serve token --help`).",
    )
    serve.add_argument(
        "--host", default=DEFAULT_HOST, help=f"address to listen on ({DEFAULT_HOST})"
    )
    serve.add_argument(
        "--port", type=_whole(1, 65535, "a port"), default=DEFAULT_PORT, help="port (8787)"
    )
    serve.add_argument(
        "--db", default=None, help="a SQLite file or postgresql:// URL (CARBON_JUPYTER_SERVER_DB)"
    )
    serve.add_argument(
        "--workers",
        type=_whole(1, MAX_WORKERS, "a number of worker processes"),
        default=1,
        help="server processes sharing the port (1)",
    )
    serve.add_argument(
        "--max-body",
        type=_whole(*MAX_BODY_RANGE_B, "a size in bytes"),
        default=None,
        help="largest request body in bytes (4 MiB)",
    )
    serve.add_argument(
        "--max-batch",
        type=_whole(*MAX_BATCH_RANGE, "a number of samples"),
        default=None,
        help="most samples in one batch (1000)",
    )
    serve.add_argument(
        "--executor",
        default=None,
        help="where submitted sweeps run: local (this machine, one configuration at a time; "
        "the default), dask://HOST:PORT (a Dask cluster), or none (CARBON_JUPYTER_SERVER_EXECUTOR)",
    )
    serve.add_argument(
        "--url",
        default=None,
        help="the URL the hosts running sweeps reach this server at (default: from --host and "
        "--port; CARBON_JUPYTER_SERVER_URL)",
    )
    serve.add_argument(
        "--lost-after",
        type=_lost_after,
        default=None,
        metavar="SECONDS",
        help="show a running part of a job lost after this many seconds without word from it "
        "(600; CARBON_JUPYTER_SERVER_LOST_AFTER_S)",
    )
    serve.add_argument("--access-log", action="store_true", help="log every request")
    serve.set_defaults(func=cmd_serve)

    actions = serve.add_subparsers(dest="serve_command", metavar="{token}")
    token = actions.add_parser("token", help="create, list or revoke tokens")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    create = token_sub.add_parser("create", help="print a new token (shown once)")
    create.add_argument("--user", required=True, help="who the token is for")
    create.add_argument("--project", required=True, help="the project its runs go into")
    create.add_argument(
        "--scope",
        choices=["ingest", "read", "admin"],
        default="ingest",
        help="ingest (send and read runs), read, or admin (everything); default ingest",
    )
    create.set_defaults(func=cmd_token_create)
    listing = token_sub.add_parser("list", help="the tokens (never their clear text)")
    listing.set_defaults(func=cmd_token_list)
    revoke = token_sub.add_parser("revoke", help="revoke a token by its id")
    revoke.add_argument("token_id", type=_whole(1, 2**31 - 1, "a token id"))
    revoke.set_defaults(func=cmd_token_revoke)
    for command in (create, listing, revoke):
        command.add_argument(
            "--db",
            dest="token_db",
            default=None,
            help="a SQLite file or postgresql:// URL (CARBON_JUPYTER_SERVER_DB)",
        )


def _need_extra() -> None:
    """Refuse with the fix when the ``server`` extra is not installed."""
    import importlib.util

    missing = [
        name
        for name in ("fastapi", "uvicorn", "sqlalchemy", "alembic", "prometheus_client")
        if importlib.util.find_spec(name) is None
    ]
    if missing:
        raise ConfigError(
            f"the team server needs {', '.join(missing)}: pip install 'carbon-jupyter[server]'"
        )


def _db(args: argparse.Namespace) -> str:
    from carbon_jupyter.server.config import default_db

    return str(getattr(args, "token_db", None) or args.db or default_db())


def _existing_database(args: argparse.Namespace) -> Any:
    """The engine of a database that must exist already (for listing and revoking)."""
    from carbon_jupyter.server.db.engine import DatabaseError, database_url, migrate, open_database

    db = _db(args)
    url = database_url(db)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        raise DatabaseError(
            f"there is no server database at {url.removeprefix('sqlite:///')}: give --db, or "
            "create a token first (`carbon-jupyter serve token create`)"
        )
    engine = open_database(db)
    migrate(engine)
    return engine


def cmd_token_create(args: argparse.Namespace) -> int:
    _need_extra()
    from carbon_jupyter.server import auth
    from carbon_jupyter.server.db.engine import describe, migrate, open_database

    engine = open_database(_db(args))
    try:
        migrate(engine)
        token, token_id = auth.issue_token(engine, args.user, args.project, args.scope)
    finally:
        engine.dispose()
    print(
        f"token {token_id}: user {args.user.strip()}, project {args.project.strip()}, scope "
        f"{args.scope}, on {describe(engine)}. It is shown only now; the server keeps its hash.",
        file=sys.stderr,
    )
    print(token)
    return 0


def cmd_token_list(args: argparse.Namespace) -> int:
    _need_extra()
    from carbon_jupyter.server import auth

    engine = _existing_database(args)
    try:
        found = auth.list_tokens(engine)
    finally:
        engine.dispose()
    if not found:
        print("no tokens: the server is open (loopback only); `serve token create` makes one")
        return 0
    print(
        f"{'id':>4}  {'prefix':<12} {'user':<16} {'project':<16} {'scope':<7} "
        f"{'created':<24} revoked"
    )
    for t in found:
        print(
            f"{t['id']:>4}  {t['prefix'] + '…':<12} {t['user'][:16]:<16} {t['project'][:16]:<16} "
            f"{t['scope']:<7} {t['created_at'][:23]:<24} {(t['revoked_at'] or '-')[:23]}"
        )
    return 0


def cmd_token_revoke(args: argparse.Namespace) -> int:
    _need_extra()
    from carbon_jupyter.server import auth

    engine = _existing_database(args)
    try:
        done = auth.revoke_token(engine, args.token_id)
    finally:
        engine.dispose()
    if not done:
        raise ConfigError(
            f"there is no active token {args.token_id}: see `carbon-jupyter serve token list`"
        )
    print(f"revoked token {args.token_id}; servers stop accepting it within a few seconds")
    return 0


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (or ``localhost``)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]"), port))
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {host}:{port} ({exc.strerror}): give another --port or --host"
            ) from None


def cmd_serve(args: argparse.Namespace) -> int:
    if getattr(args, "serve_command", None) is not None:  # pragma: no cover - argparse routes it
        raise ConfigError("give a token command: create, list or revoke")
    # Counters are shared between workers through files; prometheus_client reads this
    # variable when first imported, so it is set before anything imports it.
    made_dir: str | None = None
    if not os.environ.get(_MULTIPROC_ENV):
        made_dir = tempfile.mkdtemp(prefix="carbon-jupyter-metrics-")
        os.environ[_MULTIPROC_ENV] = made_dir
    try:
        return _serve(args)
    finally:
        if made_dir is not None:
            shutil.rmtree(made_dir, ignore_errors=True)


def _serve(args: argparse.Namespace) -> int:
    _need_extra()
    import uvicorn

    from carbon_jupyter.server.auth import has_tokens
    from carbon_jupyter.server.config import (
        EXECUTOR_ENV,
        URL_ENV,
        ServerSettings,
        check_executor_text,
        lost_after_from_env,
        server_url,
    )
    from carbon_jupyter.server.db.engine import describe, migrate, open_database

    db = _db(args)
    defaults = ServerSettings(db=db)
    executor = check_executor_text(
        args.executor or os.environ.get(EXECUTOR_ENV, "").strip() or "local"
    )
    url = server_url(args.host, args.port, args.url or os.environ.get(URL_ENV, "").strip() or None)
    lost_after_s = args.lost_after if args.lost_after is not None else lost_after_from_env()
    settings = ServerSettings(
        db=db,
        max_body_b=args.max_body or defaults.max_body_b,
        max_batch=args.max_batch or defaults.max_batch,
        executor=executor,
        url=url,
        lost_after_s=lost_after_s,
    )
    engine = open_database(db)
    try:
        migrate(engine)
        guarded = has_tokens(engine)
        where = describe(engine)
    finally:
        engine.dispose()
    if not guarded and not is_loopback(args.host):
        raise ConfigError(
            f"refusing to listen on {args.host} without tokens (anyone could read and write): "
            "create one with `carbon-jupyter serve token create --user NAME --project NAME "
            "--scope admin`, or listen on 127.0.0.1"
        )
    _check_port_free(args.host, args.port)
    os.environ.update(settings.to_env())
    access = "tokens required" if guarded else "open (no tokens; loopback only)"
    print(
        f"carbon-jupyter server on http://{args.host}:{args.port}/ with {where}, "
        f"{args.workers} worker(s), {access}, sweeps: {executor}, "
        f"parts lost after {lost_after_s:g} s without word",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(
        _APP_FACTORY,
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        access_log=args.access_log,
        log_level="info" if args.access_log else "warning",
        timeout_graceful_shutdown=10,
    )
    return 0
