"""Settings shared by the Python API, the magics and the CLI.

Every setting has a default, a ``CARBON_JUPYTER_*`` environment variable for
scripts and CI, and an argument of :func:`carbon_jupyter.track` (or a magic
option) for one run. In a notebook ``%config CarbonMagics.interval = 0.5``
changes the kernel's default (see :mod:`carbon_jupyter.notebook.magics`).

===============================  =====================================  ==========
variable                         meaning                                default
===============================  =====================================  ==========
CARBON_JUPYTER_INTERVAL          sampling interval, seconds             1.0
CARBON_JUPYTER_ATTRIBUTION       ``device`` or ``process``              device
CARBON_JUPYTER_GPUS              ``all`` or indices ``0,1``             visible
CARBON_JUPYTER_DB                the SQLite file                        Jupyter data dir
CARBON_JUPYTER_COUNTRY           ISO code or name                       (none)
CARBON_JUPYTER_CLOUD_REGION      ``provider:region``                    (none)
CARBON_JUPYTER_INTENSITY         gCO2e/kWh                              (none)
CARBON_JUPYTER_PUE               power usage effectiveness              see intensity
CARBON_JUPYTER_POWERCAP_ROOT     powercap tree for RAPL                 /sys/class/powercap
CARBON_JUPYTER_REPLAY            replay a recorded GPU trace            (none)
CARBON_JUPYTER_STORE             ``off`` to keep runs in memory only    on
CARBON_JUPYTER_SERVER            a team server to forward runs to       (none)
CARBON_JUPYTER_TOKEN             that server's token                    (none)
CARBON_JUPYTER_FORWARD_INTERVAL  seconds between sends of live samples  90
===============================  =====================================  ==========

With ``CARBON_JUPYTER_SERVER`` set, every run is stored as usual and forwarded
to that server as well (:mod:`carbon_jupyter.forward`); ``%carbon server URL``
sets it for one kernel. A run is sent about a second after it begins and after
it ends, its first live samples after five seconds, and the later ones every
``CARBON_JUPYTER_FORWARD_INTERVAL`` seconds (90 keeps the sender under 0.01 %
of a core while a run is live; see ``benchmarks/bench_forward.py``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from carbon_jupyter.errors import ConfigError
from carbon_jupyter.measure.sampler import DEFAULT_INTERVAL_S, check_interval

ATTRIBUTIONS = ("device", "process")
#: Seconds between two sends to a team server while runs are live (see carbon_jupyter.forward).
DEFAULT_FORWARD_INTERVAL_S = 90.0
#: The shortest and longest forward interval accepted, in seconds.
FORWARD_INTERVAL_RANGE_S = (0.1, 3600.0)
PHASES = ("train", "inference", "other")


def check_attribution(value: str) -> str:
    if value not in ATTRIBUTIONS:
        raise ConfigError(f"attribution {value!r} is not one of: device, process")
    return value


def check_phase(value: str | None) -> str | None:
    if value is not None and value not in PHASES:
        raise ConfigError(f"phase {value!r} is not one of: {', '.join(PHASES)}")
    return value


def check_server_url(value: str) -> str:
    """A team server's base URL, ``http(s)://host[:port][/prefix]``, without a trailing slash."""
    from urllib.parse import urlsplit

    text = value.strip()
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 (a port that is not a number raises here)
    except ValueError:
        parts = None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.query
        or parts.fragment
        or parts.username
        or parts.password
        or any(c.isspace() for c in text)
    ):
        raise ConfigError(
            f"{value!r} is not a server address: give http(s)://host[:port], such as "
            "http://127.0.0.1:8787 or https://carbon.example.org"
        )
    return text.rstrip("/")


def check_forward_interval(value: float) -> float:
    low, high = FORWARD_INTERVAL_RANGE_S
    if not low <= value <= high:  # also refuses nan
        raise ConfigError(
            f"forward interval {value!r} is out of range: give seconds from {low:g} to {high:g}"
        )
    return float(value)


def check_items(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ConfigError(f"items must be a whole number of samples or requests, not {value!r}")
    try:
        count = int(value)
    except ValueError:
        raise ConfigError(f"items must be a whole number, not {value!r}") from None
    if count <= 0:
        raise ConfigError(f"items must be a positive number, not {count}")
    return count


@dataclass(frozen=True)
class Settings:
    """The defaults a tracker starts from, after the environment is applied."""

    interval_s: float = DEFAULT_INTERVAL_S
    attribution: str = "device"
    gpus: str | None = None
    store_enabled: bool = True
    #: The team server runs are forwarded to (``CARBON_JUPYTER_SERVER``); None: none.
    server_url: str | None = None
    #: The token sent to it (``CARBON_JUPYTER_TOKEN``); None for a server without tokens.
    server_token: str | None = None
    #: Seconds between sends to the server while runs are live.
    forward_interval_s: float = DEFAULT_FORWARD_INTERVAL_S

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        interval = env.get("CARBON_JUPYTER_INTERVAL")
        attribution = env.get("CARBON_JUPYTER_ATTRIBUTION", "device").strip().lower()
        store = env.get("CARBON_JUPYTER_STORE", "on").strip().lower()
        try:
            interval_s = check_interval(float(interval)) if interval else DEFAULT_INTERVAL_S
        except (ConfigError, ValueError) as exc:
            raise ConfigError(f"CARBON_JUPYTER_INTERVAL: {exc}") from None
        try:
            check_attribution(attribution)
        except ConfigError as exc:
            raise ConfigError(f"CARBON_JUPYTER_ATTRIBUTION: {exc}") from None
        if store not in ("on", "off", "1", "0", "true", "false", "yes", "no"):
            raise ConfigError(f"CARBON_JUPYTER_STORE must be on or off, not {store!r}")
        server = env.get("CARBON_JUPYTER_SERVER", "").strip()
        try:
            server_url = check_server_url(server) if server else None
        except ConfigError as exc:
            raise ConfigError(f"CARBON_JUPYTER_SERVER: {exc}") from None
        forward = env.get("CARBON_JUPYTER_FORWARD_INTERVAL", "").strip()
        try:
            forward_s = (
                check_forward_interval(float(forward)) if forward else DEFAULT_FORWARD_INTERVAL_S
            )
        except (ConfigError, ValueError) as exc:
            raise ConfigError(f"CARBON_JUPYTER_FORWARD_INTERVAL: {exc}") from None
        return cls(
            interval_s=interval_s,
            attribution=attribution,
            gpus=env.get("CARBON_JUPYTER_GPUS") or None,
            store_enabled=store in ("on", "1", "true", "yes"),
            server_url=server_url,
            server_token=env.get("CARBON_JUPYTER_TOKEN", "").strip() or None,
            forward_interval_s=forward_s,
        )
