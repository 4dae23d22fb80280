"""The background sampler: reads every sensor at start, on every tick, and at stop.

How a device's energy is obtained (the arithmetic is in
:class:`carbon_jupyter.measure.meter.DeviceMeter`):

* A device with an energy counter (RAPL, NVML on Volta and newer, or a source
  that integrates power itself) is read at the exact moment of
  :meth:`Sampler.start` and :meth:`Sampler.stop`; its energy is the sum of the
  counter's steps between consecutive readings, each judged against the
  device's plausible maximum power (a wrap, or a glitch that is bridged). The
  result does not depend on the interval.
* A wrapping counter is read privately at least twice per period in which it
  could wrap at full power, whatever the user's interval; a power-only device
  as often as it asks (``poll_period_s``), integrated by trapezoid.
* Whatever may make a device's figure wrong (a glitch, a late read, a device
  that stopped answering, sampled rather than counted energy) is one line of
  :attr:`SamplerResult.warnings`.

The process's share (``Reading.process_share``, read on the user's ticks) is
applied to the device energy since the previous tick, giving the process
total next to the device total.

Sensors belong to whoever made them (usually the process-wide set from
:func:`carbon_jupyter.sensors.discover`); the sampler only reads them.

The thread is a daemon named ``carbon-sampler`` that sleeps on
``Event.wait(interval)``, so stop returns at once. It never raises into the
user's code: a sensor whose read fails is dropped for the rest of the run with
one message and a run warning, and the run goes on with the others.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from carbon_jupyter.errors import ConfigError, TrackingError
from carbon_jupyter.measure.device_health import note_alive, note_lost
from carbon_jupyter.measure.integrate import wrap_period_s
from carbon_jupyter.measure.meter import DeviceMeter
from carbon_jupyter.model import DeviceEnergy, DeviceInfo, Sample
from carbon_jupyter.notices import logger, notice_once
from carbon_jupyter.sensors.base import Reading, Sensor, max_power_w, poll_period_s, read_energy

MIN_INTERVAL_S = 0.05
MAX_INTERVAL_S = 60.0
DEFAULT_INTERVAL_S = 1.0
#: Samples kept in memory per run (all devices together); the store keeps everything.
MAX_BUFFERED_SAMPLES = 200_000
#: Private reads of a wrapping counter per period in which it can wrap at full power.
READS_PER_WRAP = 2.5
#: The shortest private read period, in seconds.
MIN_FAST_PERIOD_S = 0.005
#: Seconds beyond three expected read periods before a power-only device's gap is reported.
LATE_MARGIN_S = 1.0

Listener = Callable[[Sequence[Sample]], None]


def check_interval(interval_s: float) -> float:
    """Return ``interval_s`` as a float, or raise ConfigError naming the accepted range."""
    try:
        value = float(interval_s)
    except (TypeError, ValueError):
        raise ConfigError(
            f"sampling interval {interval_s!r} is not a number of seconds; "
            f"use a value from {MIN_INTERVAL_S} to {MAX_INTERVAL_S}"
        ) from None
    if not MIN_INTERVAL_S <= value <= MAX_INTERVAL_S:
        raise ConfigError(
            f"sampling interval {value:g} s is out of range; "
            f"use a value from {MIN_INTERVAL_S} to {MAX_INTERVAL_S} seconds"
        )
    return value


@dataclass
class _DeviceState:
    sensor: Sensor
    meter: DeviceMeter
    #: Seconds between private energy reads (None: read on the user's ticks only).
    fast_period_s: float | None = None
    #: Device energy and time at the previous full tick, for the plotted power.
    tick_energy_j: float = 0.0
    tick_t_s: float = 0.0
    active: bool = True

    @property
    def info(self) -> DeviceInfo:
        return self.sensor.info


@dataclass
class SamplerResult:
    """What a finished sampler measured, and what may make it wrong (``warnings``)."""

    duration_s: float
    devices: tuple[DeviceEnergy, ...]
    samples: tuple[Sample, ...] = field(repr=False)
    warnings: tuple[str, ...] = ()


class Sampler:
    """Reads ``sensors`` every ``interval_s`` seconds between :meth:`start` and :meth:`stop`.

    Between those ticks it reads, privately, the devices that need it: a
    wrapping counter at least twice per ``counter_range_j / max_power_w`` (see
    :mod:`carbon_jupyter.sensors.base`), a power-only device every
    ``poll_period_s``. Those reads add energy but no samples: the user's
    interval sets what is plotted and stored, not how accurate the figure is.

    ``clock`` (seconds, monotonic) and ``event`` are injectable for tests.
    Listeners added with :meth:`subscribe` receive each tick's samples from the
    sampler thread; they must be quick and must not block.
    """

    def __init__(
        self,
        sensors: Sequence[Sensor],
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        event: threading.Event | None = None,
        max_samples: int = MAX_BUFFERED_SAMPLES,
    ) -> None:
        self.interval_s = check_interval(interval_s)
        self._clock = clock
        self._stop_event = event if event is not None else threading.Event()
        self._states = [
            _DeviceState(sensor=s, meter=DeviceMeter(s.info, max_power_w(s))) for s in sensors
        ]
        self._samples: deque[Sample] = deque(maxlen=max_samples)
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0
        self._stopped_at: float | None = None

    # -- public -----------------------------------------------------------------------
    @property
    def devices(self) -> tuple[DeviceInfo, ...]:
        return tuple(s.info for s in self._states)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._stopped_at is None

    @property
    def fast_period_s(self) -> float | None:
        """Seconds between the private reads, or None when the user's ticks are enough."""
        periods = [
            s.fast_period_s
            for s in self._states
            if s.active and s.fast_period_s is not None and s.fast_period_s < self.interval_s
        ]
        return min(periods) if periods else None

    def subscribe(self, listener: Listener, *, replay: bool = False) -> Callable[[], None]:
        """Call ``listener(samples)`` after every tick; returns a function that unsubscribes.

        ``replay=True`` first hands the listener every sample taken so far (a view
        that appears after the run started), in order, before any new tick.
        """
        with self._lock:
            self._listeners.append(listener)
            if replay and self._samples:
                self._notify(listener, list(self._samples), locked=True)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def start(self) -> None:
        """Read every sensor now (the run's zero) and start the sampling thread."""
        if self._thread is not None:
            raise TrackingError("this sampler was already started; make a new one per run")
        self._t0 = self._clock()
        with self._lock:
            for state in self._states:
                self._first_reading(state)
        self._stop_event.clear()
        self._thread = threading.Thread(target=self._loop, name="carbon-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> SamplerResult:
        """Stop the thread, read every sensor once more, and return what was measured."""
        if self._thread is None:
            raise TrackingError("the sampler was never started")
        if self._stopped_at is None:
            self._stop_event.set()
            self._thread.join()
            with self._lock:
                t_s = self._clock() - self._t0
                final = self._tick_locked(t_s)
                for state in self._states:
                    state.meter.finish()
                self._stopped_at = t_s
                listeners = list(self._listeners)
            for listener in listeners:
                self._notify(listener, final)
        return self.result()

    def result(self) -> SamplerResult:
        """What has been measured so far (a live snapshot while running)."""
        with self._lock:
            if self._thread is None:
                duration_s = 0.0  # not started yet: nothing measured
            elif self._stopped_at is not None:
                duration_s = self._stopped_at
            else:
                duration_s = self._clock() - self._t0
            devices = tuple(s.meter.energy(duration_s) for s in self._states)
            warnings = tuple(w for s in self._states for w in _warnings(s, duration_s))
            return SamplerResult(duration_s, devices, tuple(self._samples), warnings)

    def samples_since(self, count: int) -> list[Sample]:
        """Samples after the first ``count`` (a cursor for views that poll)."""
        with self._lock:
            return list(self._samples)[count:]

    # -- thread -------------------------------------------------------------------------
    def _loop(self) -> None:
        next_full = self._clock() + self.interval_s
        last_read = self._clock()
        while True:
            fast_s = self.fast_period_s
            full = fast_s is None or next_full <= last_read + fast_s
            if fast_s is None:
                wait_s = self.interval_s
            else:
                due = next_full if full else last_read + fast_s
                wait_s = max(0.0, due - self._clock())
            if self._stop_event.wait(wait_s):
                return
            try:
                if full:
                    with self._lock:
                        new = self._tick_locked(self._clock() - self._t0)
                        listeners = list(self._listeners)
                    for listener in listeners:
                        self._notify(listener, new)
                    next_full = self._clock() + self.interval_s
                else:
                    with self._lock:
                        self._fast_tick_locked(self._clock() - self._t0)
                last_read = self._clock()
            except Exception as exc:  # never let the thread die silently
                logger.exception("carbon-jupyter sampler tick failed: %s", exc)

    def _notify(self, listener: Listener, samples: Sequence[Sample], locked: bool = False) -> None:
        try:
            listener(samples)
        except Exception as exc:
            notice_once(
                f"listener-{id(listener)}",
                f"carbon-jupyter: a live view stopped updating ({type(exc).__name__}: {exc}); "
                "the measurement goes on",
            )
            if locked:
                self._listeners.remove(listener)
                return
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

    # -- readings -----------------------------------------------------------------------
    def _first_reading(self, state: _DeviceState) -> None:
        reading = self._read(state, 0.0)
        if reading is None:
            return
        state.meter.start(reading, 0.0)
        note_alive(state.info.device_id)
        periods = [poll_period_s(state.sensor)]
        wrap_s = wrap_period_s(reading.counter_range_j, state.meter.max_power_w)
        if reading.counter_j is not None and wrap_s is not None:
            periods.append(wrap_s / READS_PER_WRAP)
        known = [p for p in periods if p is not None]
        if known:
            state.fast_period_s = max(MIN_FAST_PERIOD_S, min(known))
        expected_s = min(self.interval_s, state.fast_period_s or self.interval_s)
        state.meter.late_after_s = max(3 * expected_s, expected_s + LATE_MARGIN_S)

    def _tick_locked(self, t_s: float) -> list[Sample]:
        new: list[Sample] = []
        for state in self._states:
            if not state.active:
                continue
            reading = self._read(state, t_s)
            if reading is None:
                continue
            new.append(self._advance(state, reading, t_s))
        self._samples.extend(new)
        return new

    def _fast_tick_locked(self, t_s: float) -> None:
        for state in self._states:
            if state.active and state.fast_period_s is not None:
                reading = self._read(state, t_s, fast=True)
                if reading is not None:
                    state.meter.advance(reading, t_s, charge=False)

    def _read(self, state: _DeviceState, t_s: float, *, fast: bool = False) -> Reading | None:
        try:
            return read_energy(state.sensor) if fast else state.sensor.read()
        except Exception as exc:
            state.active = False
            error = f"{type(exc).__name__}: {exc}"
            state.meter.fail(error, t_s)
            note_lost(state.info, error)
            notice_once(
                f"sensor-failed-{state.info.device_id}",
                f"carbon-jupyter: stopped reading {state.info.name} ({state.info.device_id}): "
                f"{str(exc).rstrip('.')}. Its energy up to now is kept and the run carries a "
                "warning; the run goes on with the other devices.",
            )
            return None

    def _advance(self, state: _DeviceState, reading: Reading, t_s: float) -> Sample:
        meter = state.meter
        meter.advance(reading, t_s)
        power_w = reading.power_w
        dt_s = t_s - state.tick_t_s
        if power_w is None and meter.bridging:
            power_w = meter.interval_power_w  # the glitch's energy is not known yet
        elif power_w is None and dt_s > 0:
            power_w = (meter.energy_j - state.tick_energy_j) / dt_s
        state.tick_t_s, state.tick_energy_j = t_s, meter.energy_j
        return Sample(
            t_s=t_s,
            device_id=state.info.device_id,
            power_w=power_w,
            energy_j=meter.energy_j,
            utilization_pct=reading.utilization_pct,
            memory_used_b=reading.memory_used_b,
            process_energy_j=meter.process_energy_j,
        )


def _warnings(state: _DeviceState, duration_s: float) -> list[str]:
    lines = state.meter.warnings(duration_s)
    info = state.info
    if info.method == "nvml-power" and state.meter.started:
        lines.append(
            f"{info.device_id} ({info.name}) has no energy counter: its energy is integrated "
            "from sampled power (nvml-power), not read from a counter"
        )
    return lines
