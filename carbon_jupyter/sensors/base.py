"""What every sensor offers the sampler.

A sensor is one device (a RAPL package, a GPU, the machine's memory, a CPU
model, a replayed trace). The sampler calls :meth:`Sensor.read` at the start of
a run, on every tick, and at the stop; each call returns a :class:`Reading`.

A reading carries whichever of these the device can give:

* ``counter_j`` - a hardware energy counter in joules, which may wrap at
  ``counter_range_j`` (RAPL ``max_energy_range_uj``). The sampler takes
  differences between consecutive readings (see :mod:`carbon_jupyter.measure.integrate`),
  so the energy of a run is exact at start and stop whatever the interval.
* ``power_w`` - the power drawn now. Where there is no counter the sampler
  integrates it by trapezoid.
* ``process_share`` - the fraction (0..1) of the device's activity since the
  previous reading that belongs to this process tree; None when unknown.
* ``utilization_pct`` and ``memory_used_b`` for the live view.

Sensors raise :class:`carbon_jupyter.errors.SensorError` when a reading fails;
the sampler then drops that sensor for the rest of the run, says so once, and
records it in the run's warnings.

A counter need not be hardware's own: a source that integrates power itself
(the CPU model, a GPU's buffered driver samples) may return its running total
as ``counter_j`` with no range, and the sampler treats it as a counter.

Optional members a sensor may have (read through the helpers below, so
sensors written before them keep working):

* ``max_power_w`` - the most power the device can plausibly draw, in watts.
  A counter step that implies more is a glitch, not a wrap, and the sampler
  reads a wrapping counter at least twice per ``counter_range_j / max_power_w``.
* ``read_energy()`` - a cheap reading of the counter (or power) alone, for the
  sampler's private fast reads between the user's ticks.
* ``poll_period_s`` - for a device with power readings only, how often the
  sampler should read its power to integrate it accurately, whatever the
  user's interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from carbon_jupyter.model import DeviceInfo


@dataclass(frozen=True)
class Reading:
    """One reading of one device. See the module docstring for the fields."""

    counter_j: float | None = None
    counter_range_j: float | None = None
    power_w: float | None = None
    process_share: float | None = None
    utilization_pct: float | None = None
    memory_used_b: int | None = None


@runtime_checkable
class Sensor(Protocol):
    """A source of readings for one device."""

    info: DeviceInfo

    def read(self) -> Reading:
        """Read the device now. Raises SensorError on failure."""
        ...

    def close(self) -> None:
        """Release what the sensor holds (file handles, NVML). Safe to call twice."""
        ...


@dataclass(frozen=True)
class Probe:
    """What probing one source found: sensors that work, or why there are none.

    ``problems`` are the sentences ``carbon-jupyter doctor`` prints: each names
    what failed and, where the user can fix it, how. ``expected`` marks findings
    that are simply how this machine is (no RAPL tree in a VM, no NVIDIA
    software on a laptop): doctor prints them, notebooks do not repeat them.
    ``warnings`` are the findings every run measured with these sensors carries
    in ``Run.warnings``: a device the machine has but no sensor reads, a source
    that covers only part of what it should.
    """

    source: str
    sensors: tuple[Sensor, ...]
    problems: tuple[str, ...] = ()
    expected: bool = False
    warnings: tuple[str, ...] = ()


def max_power_w(sensor: Sensor) -> float | None:
    """The sensor's plausible maximum power in watts, if it knows one."""
    value = getattr(sensor, "max_power_w", None)
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


def poll_period_s(sensor: Sensor) -> float | None:
    """How often a power-only sensor asks to be read, in seconds, if it asks."""
    value = getattr(sensor, "poll_period_s", None)
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


def read_energy(sensor: Sensor) -> Reading:
    """The sensor's cheap counter-or-power reading, or its full reading if it has none."""
    fast = getattr(sensor, "read_energy", None)
    reading: Reading = fast() if callable(fast) else sensor.read()
    return reading
