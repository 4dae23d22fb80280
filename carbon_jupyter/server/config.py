"""The team server's settings, and how ``carbon-jupyter serve`` hands them to its workers.

Standard library only: the command line reads these limits when it builds its parser.

Each uvicorn worker builds its app from the environment
(:meth:`ServerSettings.from_env`), so ``serve`` puts the settings there
(:meth:`ServerSettings.to_env`) before it starts them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from carbon_jupyter.errors import ConfigError

#: The database (a path, ``sqlite:///PATH`` or ``postgresql://...``).
DB_ENV = "CARBON_JUPYTER_SERVER_DB"
#: The largest request body, in bytes.
MAX_BODY_ENV = "CARBON_JUPYTER_SERVER_MAX_BODY"
#: The most samples in one batch.
MAX_BATCH_ENV = "CARBON_JUPYTER_SERVER_MAX_BATCH"
#: Where submitted sweeps run: ``local``, ``none`` or ``dask://HOST:PORT``.
EXECUTOR_ENV = "CARBON_JUPYTER_SERVER_EXECUTOR"
#: The URL the server's executors (and Dask workers) reach it at.
URL_ENV = "CARBON_JUPYTER_SERVER_URL"
#: Seconds without word from a running part of a job before the job shows it ``lost``.
LOST_AFTER_ENV = "CARBON_JUPYTER_SERVER_LOST_AFTER_S"
DEFAULT_MAX_BODY_B = 4 * 1024 * 1024
#: The most samples one batch may hold unless ``--max-batch`` says otherwise.
DEFAULT_MAX_BATCH = 1000
#: The bounds of ``--max-body`` (1 KiB to 1 GiB) and ``--max-batch``.
MAX_BODY_RANGE_B = (1024, 1024**3)
MAX_BATCH_RANGE = (1, 10 * DEFAULT_MAX_BATCH)
#: A running part of a job is shown ``lost`` after this many seconds without word from it
#: unless ``--lost-after`` says otherwise. Clients send live samples every 90 s by default
#: (``CARBON_JUPYTER_FORWARD_INTERVAL``), and retry a server that does not answer within a
#: minute: ten minutes is several sends missed in a row, not one late.
DEFAULT_LOST_AFTER_S = 600.0
#: The bounds of ``--lost-after``, in seconds (one second to thirty days).
LOST_AFTER_RANGE_S = (1.0, 30 * 86400.0)


def default_db() -> str:
    """``$CARBON_JUPYTER_SERVER_DB``, else ``server.db`` beside the local store's default file."""
    override = os.environ.get(DB_ENV, "").strip()
    if override:
        return override
    from jupyter_core.paths import jupyter_data_dir

    return str(Path(jupyter_data_dir()) / "carbon_jupyter" / "server.db")


def check_max_body(value: int) -> int:
    low, high = MAX_BODY_RANGE_B
    if not low <= value <= high:
        raise ConfigError(f"--max-body {value} is out of range: give bytes from {low} to {high}")
    return value


def check_max_batch(value: int) -> int:
    low, high = MAX_BATCH_RANGE
    if not low <= value <= high:
        raise ConfigError(f"--max-batch {value} is out of range: give {low} to {high} samples")
    return value


def check_lost_after(value: float, name: str = "--lost-after") -> float:
    """``value`` when it is a number of seconds in :data:`LOST_AFTER_RANGE_S`, else one line."""
    low, high = LOST_AFTER_RANGE_S
    if not low <= value <= high:  # also refuses nan
        raise ConfigError(
            f"{name} {value:g} is out of range: give seconds from {low:.0f} to {high:.0f} "
            f"(default {DEFAULT_LOST_AFTER_S:g})"
        )
    return value


def lost_after_text(text: str, name: str = "--lost-after") -> float:
    """``--lost-after`` (or its variable) from text: seconds, else one line naming ``name``."""
    try:
        value = float(text.strip())
    except ValueError:
        low, high = LOST_AFTER_RANGE_S
        raise ConfigError(
            f"{name} {text!r} is not a number of seconds: give seconds from {low:.0f} to "
            f"{high:.0f}, such as {DEFAULT_LOST_AFTER_S:g}"
        ) from None
    return check_lost_after(value, name)


def _int_env(environ: Mapping[str, str], name: str, default: int) -> int:
    text = environ.get(name, "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r} is not a whole number") from None


def check_executor_text(text: str) -> str:
    """``local``, ``none`` or a Dask scheduler (``dask://HOST:PORT``); else one line naming them."""
    value = text.strip()
    scheme, sep, rest = value.partition("://")
    if value in ("local", "none") or (
        sep and scheme in ("dask", "tcp", "tls") and rest and " " not in rest
    ):
        return value
    raise ConfigError(
        f"--executor {text!r}: give local, none, or a Dask scheduler as dask://HOST:PORT"
    )


def server_url(host: str, port: int, url: str | None = None) -> str:
    """The URL executors reach a server on ``host:port`` at (``url`` when given)."""
    if url:
        return url.rstrip("/")
    if host in ("0.0.0.0", "::", ""):
        import socket

        host = socket.getfqdn()
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


@dataclass(frozen=True)
class ServerSettings:
    """What one server process needs: its database, its request limits, its sweep executor."""

    db: str
    max_body_b: int = DEFAULT_MAX_BODY_B
    max_batch: int = DEFAULT_MAX_BATCH
    executor: str = "local"
    url: str | None = None
    #: Seconds without word from a running part of a job before it is shown ``lost``.
    lost_after_s: float = DEFAULT_LOST_AFTER_S

    def __post_init__(self) -> None:
        check_max_body(self.max_body_b)
        check_max_batch(self.max_batch)
        check_executor_text(self.executor)
        check_lost_after(self.lost_after_s)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServerSettings:
        env = os.environ if environ is None else environ
        return cls(
            db=env.get(DB_ENV, "").strip() or default_db(),
            max_body_b=_int_env(env, MAX_BODY_ENV, DEFAULT_MAX_BODY_B),
            max_batch=_int_env(env, MAX_BATCH_ENV, DEFAULT_MAX_BATCH),
            executor=env.get(EXECUTOR_ENV, "").strip() or "local",
            url=env.get(URL_ENV, "").strip() or None,
            lost_after_s=lost_after_from_env(env),
        )

    def to_env(self) -> dict[str, str]:
        """The environment variables :meth:`from_env` reads these settings back from."""
        return {
            DB_ENV: self.db,
            MAX_BODY_ENV: str(self.max_body_b),
            MAX_BATCH_ENV: str(self.max_batch),
            EXECUTOR_ENV: self.executor,
            URL_ENV: self.url or "",
            LOST_AFTER_ENV: repr(self.lost_after_s),
        }


def lost_after_from_env(environ: Mapping[str, str] | None = None) -> float:
    """``$CARBON_JUPYTER_SERVER_LOST_AFTER_S``, else :data:`DEFAULT_LOST_AFTER_S`."""
    env = os.environ if environ is None else environ
    text = env.get(LOST_AFTER_ENV, "").strip()
    return lost_after_text(text, LOST_AFTER_ENV) if text else DEFAULT_LOST_AFTER_S
