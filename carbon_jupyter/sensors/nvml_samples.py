"""Power-only NVIDIA GPUs: the driver's own power samples, integrated.

A GPU without an energy counter (method ``nvml-power``) gives its power draw
only. Read once per user tick (1 s by default) and integrated by trapezoid,
power misses what happens between the reads: on a load that steps between
100 W for 1.3 s and 300 W for 0.7 s the figure is off by -41 % to +18 %
depending on where the reads fall, and the error does not average out. So the
user's interval never sets how power is integrated; one of two paths does:

* **The driver's sample buffer** (preferred). The driver samples the GPU's
  power on its own, about every 20 ms, and keeps the latest couple of seconds
  of samples (``nvidia-smi -q -d POWER`` shows them as "Power Samples").
  :class:`PowerSampleBuffer` fetches those newer than the last one it saw
  (``nvmlDeviceGetSamples(handle, NVML_TOTAL_POWER_SAMPLES, last_seen_us)``)
  on every read and adds their trapezoids, on the driver's own timestamps, to
  a running total in joules. The sensor reports that total as a counter
  (``Reading.counter_j`` without a range), so the energy of a run is the
  difference between its first and last readings, as for a hardware counter.
  Each end of that window is the driver's latest sample before the read, so
  it may lag the read by about one sample period.
* **Fast polling**, where the driver keeps no power samples: the sensor asks
  the sampler to read its power every :data:`POLL_PERIOD_S` seconds, on a
  private tick between the user's ticks, and the sampler integrates those
  readings by trapezoid.

The total never goes backwards: only samples newer than the last seen are
added, in timestamp order, and a value below zero counts as zero. A read
that finds nothing new (``NVML_ERROR_NOT_FOUND``) keeps the total where it is.

When reads come further apart than the buffer reaches back (an interval
longer than the buffer's couple of seconds, or the time between runs), the
oldest samples of the gap are gone: the gap is bridged by one trapezoid from
the last sample seen to the first one still held, and its length is added to
:attr:`PowerSampleBuffer.bridged_s`. The samples still held count in full;
the bridge is exact where power was steady or changed linearly across the
gap, and otherwise only as good as the two samples either side of it. The
sampler reads the sensor on every user tick, so at the default 1 s interval
the buffer does not overflow during a run.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import ModuleType
from typing import Any

#: Seconds between power reads of a GPU whose driver keeps no power samples.
#:
#: A trapezoid across a step in power is wrong by at most the step times half a
#: period, and the errors at a rising and a falling edge cancel but for the
#: difference of their offsets within a period: on the 100 W / 300 W trace above
#: at most 10 J in each 2 s cycle of 340 J (3 %), and near zero on average when
#: edges fall at random. Reading faster gains little, as the power NVML reports
#: is itself refreshed only every few tens of milliseconds, and a read is a
#: single cheap query (no utilisation or process queries on this path). It is
#: also the sampler's shortest interval.
POLL_PERIOD_S = 0.05
#: Seconds between reads of the driver's sample buffer, whatever the user's interval:
#: the buffer holds a few seconds of samples (about 120 at 20 ms on current drivers),
#: so reading it every second keeps any from being dropped before they are seen.
BUFFER_READ_PERIOD_S = 1.0

#: Members of NVML's value union by value type (``NVML_VALUE_TYPE_*``).
_VALUE_MEMBERS: tuple[tuple[str, int, str], ...] = (
    ("NVML_VALUE_TYPE_DOUBLE", 0, "dVal"),
    ("NVML_VALUE_TYPE_UNSIGNED_INT", 1, "uiVal"),
    ("NVML_VALUE_TYPE_UNSIGNED_LONG", 2, "ulVal"),
    ("NVML_VALUE_TYPE_UNSIGNED_LONG_LONG", 3, "ullVal"),
    ("NVML_VALUE_TYPE_SIGNED_LONG_LONG", 4, "sllVal"),
    ("NVML_VALUE_TYPE_SIGNED_INT", 5, "siVal"),
    ("NVML_VALUE_TYPE_UNSIGNED_SHORT", 6, "usVal"),
)

#: Driver answers that mean "nothing new to read this time", not a failure.
_NOTHING_NEW = (
    ("NVML_ERROR_NOT_FOUND", 6),
    # The buffer grew between the binding's two calls (size, then fetch).
    ("NVML_ERROR_INSUFFICIENT_SIZE", 7),
)

#: A step between samples longer than this many times the usual spacing is a gap.
_GAP_FACTOR = 2.0

DETAIL_SAMPLES = "power integrated from the driver's power samples (nvmlDeviceGetSamples)"
DETAIL_POLLED = f"power polled every {POLL_PERIOD_S:g} s and integrated by trapezoid"


class SampleValueError(ValueError):
    """A sample value of a type NVML did not document when this was written."""


def sample_value(nvml: ModuleType, value_type: int, value: Any) -> float:
    """The number in one NVML sample: a plain number, or the union member ``value_type`` names.

    Raises :class:`SampleValueError` for a value type this code does not know.
    """
    if isinstance(value, (int, float)):
        return float(value)
    for name, default, member in _VALUE_MEMBERS:
        if value_type == int(getattr(nvml, name, default)):
            return float(getattr(value, member))
    raise SampleValueError(f"NVML sample value of unknown type {value_type}")


class PowerSampleBuffer:
    """The running integral of one GPU's power samples from the driver; see the module docstring.

    Made by :meth:`open`. :meth:`fetch` raises the binding's ``NVMLError`` for a
    real failure (a lost GPU) and :class:`SampleValueError` for an unknown value
    type; the caller holds the lock (one sensor reads it).
    """

    def __init__(self, nvml: ModuleType, handle: Any) -> None:
        self._nvml = nvml
        self._handle = handle
        self._sampling_type = int(getattr(nvml, "NVML_TOTAL_POWER_SAMPLES", 0))
        self._nothing_new = frozenset(int(getattr(nvml, n, d)) for n, d in _NOTHING_NEW)
        #: Joules since the first sample seen.
        self.energy_j = 0.0
        #: The newest sample's power in watts (None before the first sample).
        self.power_w: float | None = None
        #: Seconds of driver time bridged across samples the buffer no longer held.
        self.bridged_s = 0.0
        #: The usual time between the driver's samples, in seconds (None until seen).
        self.spacing_s: float | None = None
        self._last_us = 0

    @classmethod
    def open(cls, nvml: ModuleType, handle: Any) -> PowerSampleBuffer | None:
        """A buffer primed with the samples the driver holds now, or None where it holds none.

        None where the binding or driver does not offer power samples (any NVML
        error, an unknown value type) or the buffer is empty: that GPU's power is
        polled instead.
        """
        if not callable(getattr(nvml, "nvmlDeviceGetSamples", None)):
            return None
        buffer = cls(nvml, handle)
        try:
            buffer.fetch()
        except (nvml.NVMLError, SampleValueError):
            return None
        return buffer if buffer.power_w is not None else None

    def fetch(self) -> None:
        """Add the samples newer than the last one seen to :attr:`energy_j`."""
        try:
            value_type, samples = self._nvml.nvmlDeviceGetSamples(
                self._handle, self._sampling_type, self._last_us
            )
        except self._nvml.NVMLError as exc:
            if getattr(exc, "value", None) in self._nothing_new:
                return
            raise
        points = sorted(
            (int(s.timeStamp), sample_value(self._nvml, value_type, s.sampleValue)) for s in samples
        )
        self._add(points)

    def _add(self, points: Iterable[tuple[int, float]]) -> None:
        """Integrate ``(timestamp_us, milliwatts)`` points, oldest first."""
        for t_us, value_mw in points:
            if t_us <= self._last_us:
                continue  # seen already, or a stale duplicate
            power_w = max(value_mw, 0.0) / 1000.0
            if self.power_w is not None:
                dt_s = (t_us - self._last_us) / 1e6
                self.energy_j += 0.5 * (self.power_w + power_w) * dt_s
                self._note_spacing(dt_s)
            self._last_us, self.power_w = t_us, power_w

    def _note_spacing(self, dt_s: float) -> None:
        if self.spacing_s is None or dt_s < self.spacing_s:
            self.spacing_s = dt_s
        elif dt_s > _GAP_FACTOR * self.spacing_s:
            self.bridged_s += dt_s - self.spacing_s
