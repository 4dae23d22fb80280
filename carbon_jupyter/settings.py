"""Settings shared by the Python API, the magics and the CLI.

Every setting has a default, a ``CARBON_JUPYTER_*`` environment variable for
scripts and CI, and an argument of :func:`carbon_jupyter.track` (or a magic
option) for one run. In a notebook ``%config CarbonMagics.interval = 0.5``
changes the kernel's default (see :mod:`carbon_jupyter.notebook.magics`).

=============================  ===================================  ==========
variable                       meaning                              default
=============================  ===================================  ==========
CARBON_JUPYTER_INTERVAL        sampling interval, seconds           1.0
CARBON_JUPYTER_ATTRIBUTION     ``device`` or ``process``            device
CARBON_JUPYTER_GPUS            ``all`` or indices ``0,1``           visible
CARBON_JUPYTER_DB              the SQLite file                      Jupyter data dir
CARBON_JUPYTER_COUNTRY         ISO code or name                     (none)
CARBON_JUPYTER_CLOUD_REGION    ``provider:region``                  (none)
CARBON_JUPYTER_INTENSITY       gCO2e/kWh                            (none)
CARBON_JUPYTER_PUE             power usage effectiveness            see intensity
CARBON_JUPYTER_POWERCAP_ROOT   powercap tree for RAPL               /sys/class/powercap
CARBON_JUPYTER_REPLAY          replay a recorded GPU trace          (none)
CARBON_JUPYTER_STORE           ``off`` to keep runs in memory only  on
=============================  ===================================  ==========
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from carbon_jupyter.errors import ConfigError
from carbon_jupyter.measure.sampler import DEFAULT_INTERVAL_S, check_interval

ATTRIBUTIONS = ("device", "process")
PHASES = ("train", "inference", "other")


def check_attribution(value: str) -> str:
    if value not in ATTRIBUTIONS:
        raise ConfigError(f"attribution {value!r} is not one of: device, process")
    return value


def check_phase(value: str | None) -> str | None:
    if value is not None and value not in PHASES:
        raise ConfigError(f"phase {value!r} is not one of: {', '.join(PHASES)}")
    return value


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
        return cls(
            interval_s=interval_s,
            attribution=attribution,
            gpus=env.get("CARBON_JUPYTER_GPUS") or None,
            store_enabled=store in ("on", "1", "true", "yes"),
        )
