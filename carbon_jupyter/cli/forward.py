"""``carbon-jupyter status`` and ``carbon-jupyter push``: runs on their way to a team server.

``carbon-jupyter status [--db PATH] [--server URL]``
    The store file, the team server runs are forwarded to (or "no server
    configured"), the requests waiting in the outbox, the last delivery and
    the last error; other servers the outbox still holds requests for.
``carbon-jupyter push [--server URL] [--token T] [--db PATH] [--label L] [--since 7d] ...``
    Send the local history (every run the filters select, with its devices and
    samples) to a team server once, after what waits in the outbox; prints how
    many runs and samples were sent and how many were new there. Pushing again
    stores nothing twice. The server and token default to
    ``CARBON_JUPYTER_SERVER`` and ``CARBON_JUPYTER_TOKEN``.

No server configured, a server that does not answer, or a token it refuses:
one line naming the fix, exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def _store_path(args: argparse.Namespace) -> Path:
    from carbon_jupyter.store import default_db_path

    return Path(args.db).expanduser().absolute() if args.db else default_db_path()


def _destination(args: argparse.Namespace, *, required: bool) -> Any:
    from carbon_jupyter.forward.config import Destination, destination
    from carbon_jupyter.forward.push import ForwardError
    from carbon_jupyter.settings import Settings

    settings = Settings.from_env()
    if args.server:
        token = args.token if args.token is not None else settings.server_token
        return Destination.of(args.server, token)
    found = destination(settings)
    if found is not None and args.token is not None:
        return Destination.of(found.url, args.token)
    if found is None and required:
        raise ForwardError(
            "no server configured: give --server URL, or set CARBON_JUPYTER_SERVER "
            "(and CARBON_JUPYTER_TOKEN)"
        )
    return found


def cmd_status(args: argparse.Namespace) -> int:
    from carbon_jupyter.forward.status import report

    for line in report(_store_path(args), _destination(args, required=False)).lines():
        print(line)
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from carbon_jupyter.forward.push import push

    destination = _destination(args, required=True)
    filters = {
        name: getattr(args, name)
        for name in ("label", "phase", "notebook", "status", "since")
        if getattr(args, name, None) is not None
    }
    result = push(
        destination,
        _store_path(args),
        filters=filters,
        progress=lambda text: print(text, file=sys.stderr, flush=True),
    )
    for line in result.lines():
        print(line)
    return 0


def register(sub: Any) -> None:
    """Add ``status`` and ``push`` to the ``carbon-jupyter`` subcommands."""
    status = sub.add_parser(
        "status", help="the team server runs are forwarded to, what waits, the last error"
    )
    status.add_argument("--server", help="report on this server (default: CARBON_JUPYTER_SERVER)")
    status.add_argument("--token", help="with --server: the token it is sent with")
    status.set_defaults(func=cmd_status)

    push = sub.add_parser("push", help="send the local history to a team server once")
    push.add_argument("--server", help="http(s)://host[:port] (default: CARBON_JUPYTER_SERVER)")
    push.add_argument("--token", help="the server's token (default: CARBON_JUPYTER_TOKEN)")
    push.add_argument("--label", help="label, * wildcards allowed")
    push.add_argument("--phase", choices=["train", "inference", "other"])
    push.add_argument("--notebook", help="notebook path or file name")
    push.add_argument("--status", choices=["running", "ok", "error", "interrupted", "lost"])
    push.add_argument("--since", help="e.g. 30m, 24h, 7d or an ISO date")
    push.set_defaults(func=cmd_push)
    for command in (status, push):
        command.add_argument("--db", default=None, help="the SQLite file (CARBON_JUPYTER_DB)")
