"""The background sampler: reads every sensor at start, on every tick, and at stop.

How a device's energy is obtained:

* A device with an energy counter (RAPL, NVML on Volta and newer) is read at
  the exact moment of :meth:`Sampler.start` and :meth:`Sampler.stop`; its
  energy is the sum of counter differences between consecutive readings
  (wraparound handled in :func:`carbon_jupyter.integrate.counter_delta_j`).
  The result does not depend on the interval; ticks only add points to the
  live plot and let the sampler see every wrap of a fast-wrapping counter.
* A device with power readings only is integrated by trapezoid between
  readings, so its accuracy does depend on the interval.

The process's share of each interval (``Reading.process_share``) is applied
to that interval's energy, giving the process total next to the device total.

Sensors belong to whoever made them (usually the process-wide set from
:func:`carbon_jupyter.sensors.discover`); the sampler only reads them.

The thread is a daemon named ``carbon-sampler`` that sleeps on
``Event.wait(interval)``, so stop returns at once. It never raises into the
user's code: a sensor whose read fails is dropped for the rest of the run with
one message, and the run goes on with the others.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from carbon_jupyter.errors import ConfigError, TrackingError
from carbon_jupyter.integrate import counter_delta_j, trapezoid_j
from carbon_jupyter.model import DeviceEnergy, DeviceInfo, Sample
from carbon_jupyter.notices import logger, notice_once
from carbon_jupyter.sensors.base import Reading, Sensor

MIN_INTERVAL_S = 0.05
MAX_INTERVAL_S = 60.0
DEFAULT_INTERVAL_S = 1.0
#: Samples kept in memory per run (all devices together); the store keeps everything.
MAX_BUFFERED_SAMPLES = 200_000

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
    t_s: float = 0.0
    counter_j: float | None = None
    power_w: float | None = None
    energy_j: float = 0.0
    process_energy_j: float | None = None
    last_share: float | None = None
    error: str | None = None
    active: bool = True

    @property
    def info(self) -> DeviceInfo:
        return self.sensor.info


@dataclass
class SamplerResult:
    """What a finished sampler measured."""

    duration_s: float
    devices: tuple[DeviceEnergy, ...]
    samples: tuple[Sample, ...] = field(repr=False)


class Sampler:
    """Reads ``sensors`` every ``interval_s`` seconds between :meth:`start` and :meth:`stop`.

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
        self._states = [_DeviceState(sensor=s) for s in sensors]
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
                self._stopped_at = t_s
                listeners = list(self._listeners)
            for listener in listeners:
                self._notify(listener, final)
        return self.result()

    def result(self) -> SamplerResult:
        """What has been measured so far (a live snapshot while running)."""
        with self._lock:
            duration_s = (
                self._stopped_at if self._stopped_at is not None else self._clock() - self._t0
            )
            devices = tuple(_device_energy(s, duration_s) for s in self._states)
            return SamplerResult(duration_s, devices, tuple(self._samples))

    def samples_since(self, count: int) -> list[Sample]:
        """Samples after the first ``count`` (a cursor for views that poll)."""
        with self._lock:
            return list(self._samples)[count:]

    # -- thread -------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop_event.wait(self.interval_s):
            try:
                with self._lock:
                    new = self._tick_locked(self._clock() - self._t0)
                    listeners = list(self._listeners)
                for listener in listeners:
                    self._notify(listener, new)
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
        reading = self._read(state)
        if reading is None:
            return
        state.t_s = 0.0
        state.counter_j = reading.counter_j
        state.power_w = reading.power_w

    def _tick_locked(self, t_s: float) -> list[Sample]:
        new: list[Sample] = []
        for state in self._states:
            if not state.active:
                continue
            reading = self._read(state)
            if reading is None:
                continue
            new.append(self._advance(state, reading, t_s))
        self._samples.extend(new)
        return new

    def _read(self, state: _DeviceState) -> Reading | None:
        try:
            return state.sensor.read()
        except Exception as exc:
            state.active = False
            state.error = f"{type(exc).__name__}: {exc}"
            notice_once(
                f"sensor-failed-{state.info.device_id}",
                f"carbon-jupyter: stopped reading {state.info.name} ({state.info.device_id}): "
                f"{exc}. Its energy up to now is kept; the run goes on with the other devices.",
            )
            return None

    def _advance(self, state: _DeviceState, reading: Reading, t_s: float) -> Sample:
        dt = t_s - state.t_s
        if reading.counter_j is not None and state.counter_j is not None:
            delta_j = counter_delta_j(state.counter_j, reading.counter_j, reading.counter_range_j)
        elif reading.power_w is not None and state.power_w is not None:
            delta_j = trapezoid_j(state.t_s, state.power_w, t_s, reading.power_w)
        elif reading.power_w is not None:
            # First usable power reading: count from now on.
            delta_j = 0.0
        else:
            delta_j = 0.0
        state.energy_j += delta_j

        share = reading.process_share if reading.process_share is not None else state.last_share
        if share is not None:
            share = min(max(share, 0.0), 1.0)
            state.process_energy_j = (state.process_energy_j or 0.0) + delta_j * share
            state.last_share = share

        power_w = reading.power_w
        if power_w is None and dt > 0:
            power_w = delta_j / dt
        state.t_s = t_s
        state.counter_j = reading.counter_j
        state.power_w = reading.power_w
        return Sample(
            t_s=t_s,
            device_id=state.info.device_id,
            power_w=power_w,
            energy_j=state.energy_j,
            utilization_pct=reading.utilization_pct,
            memory_used_b=reading.memory_used_b,
            process_energy_j=state.process_energy_j,
        )


def _device_energy(state: _DeviceState, duration_s: float) -> DeviceEnergy:
    return DeviceEnergy(
        device=state.info,
        energy_j=state.energy_j,
        process_energy_j=state.process_energy_j,
        mean_power_w=state.energy_j / duration_s if duration_s > 0 else None,
        error=state.error,
    )
