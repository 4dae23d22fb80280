"""Which team server this process forwards runs to, and with which token.

The environment sets it (``CARBON_JUPYTER_SERVER``, ``CARBON_JUPYTER_TOKEN``,
``CARBON_JUPYTER_FORWARD_INTERVAL``; see :mod:`carbon_jupyter.settings`);
``%carbon server URL [--token T]`` and ``%carbon server off`` change it for the
rest of the process (:func:`set_server`, :func:`switch_off`,
:func:`follow_environment`).

A :class:`Destination` names where requests go: the server's base URL and a
fingerprint of the token (``token_id``). Requests waiting in the outbox carry
both, so a request is only ever sent with the token it was made for (two
kernels with tokens of two projects never send each other's runs), and the
token itself is never written to the file.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field

from carbon_jupyter.settings import (
    DEFAULT_FORWARD_INTERVAL_S,
    Settings,
    check_forward_interval,
    check_server_url,
)


def token_id(token: str | None) -> str:
    """A short fingerprint of ``token`` (``""`` for none): tells tokens apart, reveals nothing."""
    if not token:
        return ""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Destination:
    """A team server and the token runs are sent to it with."""

    url: str
    token: str | None = field(default=None, repr=False)
    interval_s: float = DEFAULT_FORWARD_INTERVAL_S

    @property
    def token_id(self) -> str:
        return token_id(self.token)

    @property
    def key(self) -> tuple[str, str]:
        """What the outbox and the lease are kept per: (server URL, token fingerprint)."""
        return (self.url, self.token_id)

    @classmethod
    def of(cls, url: str, token: str | None = None, interval_s: float | None = None) -> Destination:
        """A destination from user input: the URL checked, an empty token taken as none."""
        interval = Settings.from_env().forward_interval_s if interval_s is None else interval_s
        return cls(
            url=check_server_url(url),
            token=(token or "").strip() or None,
            interval_s=check_forward_interval(interval),
        )


_UNSET = object()
_lock = threading.Lock()
#: What ``%carbon server`` chose for this process: a Destination, None (off) or _UNSET.
_chosen: object = _UNSET


def destination(settings: Settings | None = None) -> Destination | None:
    """Where this process forwards runs now, or None when no server is configured."""
    with _lock:
        chosen = _chosen
    if chosen is not _UNSET:
        return chosen if isinstance(chosen, Destination) else None
    found = Settings.from_env() if settings is None else settings
    if found.server_url is None:
        return None
    return Destination(found.server_url, found.server_token, found.forward_interval_s)


def set_server(url: str, token: str | None = None) -> Destination:
    """Forward this process's runs to ``url`` from now on (``%carbon server URL``)."""
    global _chosen
    chosen = Destination.of(url, token)
    with _lock:
        _chosen = chosen
    return chosen


def switch_off() -> None:
    """Forward nothing from this process any more, whatever the environment says."""
    global _chosen
    with _lock:
        _chosen = None


def follow_environment() -> None:
    """Forget :func:`set_server` / :func:`switch_off`: the environment decides again."""
    global _chosen
    with _lock:
        _chosen = _UNSET
