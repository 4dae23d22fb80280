"""One exception family. Every message names what went wrong and how to fix it."""

from __future__ import annotations


class CarbonError(Exception):
    """Base class for every error carbon-jupyter raises on purpose."""


class ConfigError(CarbonError, ValueError):
    """A setting or argument has a value that cannot be used."""


class UnknownLocationError(ConfigError):
    """A country or cloud region is not in the embedded tables."""


class SensorError(CarbonError):
    """A sensor could not be read. The sampler drops the sensor and the run goes on."""


class TrackingError(CarbonError, RuntimeError):
    """The tracker was used out of order (stop before start, nested start)."""


class StoreError(CarbonError):
    """The run store cannot be opened or written. The message names the file and the fix."""
