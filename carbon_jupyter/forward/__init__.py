"""Forwarding runs to a team server (``carbon-jupyter serve``), from notebooks and scripts.

With ``CARBON_JUPYTER_SERVER`` (and ``CARBON_JUPYTER_TOKEN``) set, or after
``%carbon server URL --token T`` in a notebook, every tracked run is stored in
the local file as before *and* sent to the server, its live samples included,
so the server's dashboard shows it while it runs::

    export CARBON_JUPYTER_SERVER=https://carbon.example.org
    export CARBON_JUPYTER_TOKEN=cj_...        # carbon-jupyter serve token create ...

The parts, in the order a run travels:

:mod:`~carbon_jupyter.forward.sink`
    what the tracker calls: an in-memory enqueue, nothing else.
:mod:`~carbon_jupyter.forward.messages`
    the requests (:mod:`~carbon_jupyter.forward.wire` bodies), samples numbered
    as the local store numbers them.
:mod:`~carbon_jupyter.forward.sender`
    one background thread per process and server: it sends a run about a
    second after it begins and after it ends, its first live samples after five
    seconds and later ones every ``CARBON_JUPYTER_FORWARD_INTERVAL`` seconds
    (default 90), keeping them first in the outbox while the server is not known
    to be up.
:mod:`~carbon_jupyter.forward.registry`
    that thread, one per process, store file and server; stopped at exit.
:mod:`~carbon_jupyter.forward.outbox`
    the requests waiting, in the store's own SQLite file, with the lease that
    lets one process at a time send them: a restarted kernel, or
    ``carbon-jupyter push``, delivers what an earlier process left.
:mod:`~carbon_jupyter.forward.delivery`
    HTTP (httpx): what is retried with backoff (no connection, timeouts, 5xx,
    429) and what is set aside (other 4xx), so one bad request blocks nothing.
:mod:`~carbon_jupyter.forward.push`
    ``carbon-jupyter push``: the local history, sent once.
:mod:`~carbon_jupyter.forward.status`
    the server, what is waiting, the last delivery and the last error.

Nothing reaches the network unless a server is configured.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from carbon_jupyter.forward.config import (
    Destination,
    destination,
    follow_environment,
    set_server,
    switch_off,
)

if TYPE_CHECKING:
    from carbon_jupyter.forward.sender import Sender
    from carbon_jupyter.forward.sink import ForwardSink

__all__ = [
    "Destination",
    "destination",
    "follow_environment",
    "forwarding_sink",
    "server_command",
    "set_server",
    "start_sender",
    "switch_off",
]


def start_sender(store_path: Path | None = None) -> Sender | None:
    """Start this process's sender for the configured server (None when there is none).

    It delivers at once what an earlier process left in the outbox of ``store_path``
    (default: the store).
    """
    found = destination()
    if found is None:
        return None
    from carbon_jupyter.forward.registry import sender_for
    from carbon_jupyter.store import default_db_path

    path = Path(store_path).expanduser().absolute() if store_path else default_db_path()
    return sender_for(path, found)


def forwarding_sink(store_path: Path | None = None) -> ForwardSink | None:
    """A sink forwarding to the configured server through the outbox of ``store_path``.

    None when no server is configured.
    """
    sender = start_sender(store_path)
    if sender is None:
        return None
    from carbon_jupyter.forward.sink import ForwardSink

    return ForwardSink(sender)


def server_command(url: str | None, token: str | None = None) -> list[str]:
    """``%carbon server [URL|off] [--token T]``: do it, and say what it did, line by line.

    ``URL`` forwards from now on (the token defaults to ``CARBON_JUPYTER_TOKEN``) and
    says whether the server answered ``/api/v1/me`` within 2 s; ``off`` stops
    forwarding in this process; None says where runs go now.
    """
    from carbon_jupyter.forward.status import report

    if url is None:
        return report().lines()[1:]
    if url == "off":
        switch_off()
        return [
            "forwarding is off in this kernel; runs are stored here only (requests already "
            "waiting stay in the outbox for `carbon-jupyter push`)"
        ]
    from carbon_jupyter.forward.push import check_server
    from carbon_jupyter.settings import Settings

    chosen = set_server(url, token if token is not None else Settings.from_env().server_token)
    answered, said = check_server(chosen, timeout_s=2.0)
    lines = [f"forwarding runs to {chosen.url} (every {chosen.interval_s:g} s), and storing "
             "them here"]  # fmt: skip
    sender = start_sender()
    if answered:
        lines.append(said)
        if sender is not None:
            sender.retry_now()  # what waits goes now, not after the backoff
    else:
        lines += [f"not delivered yet: {said}", "runs wait in the outbox and go when it answers"]
    return lines
