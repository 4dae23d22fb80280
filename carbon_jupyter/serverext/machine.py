"""The machine's power now, for the sidebar: sampled only while someone is looking.

:class:`MachinePower` runs a :class:`~carbon_jupyter.measure.sampler.Sampler` over the
machine's sensors (the same ones a tracked cell uses: RAPL or the CPU model,
memory, the visible GPUs) in the Jupyter server process. The sampler starts on
the first :meth:`MachinePower.poll` and stops once nobody has polled for
``idle_s`` seconds (:meth:`MachinePower.stop_if_idle`, which the server calls
periodically), so an idle server reads no hardware.

The figures are device totals: everything the CPUs, memory and GPUs drew,
whoever drew it. A device measured by a model (``cpu-model``, ``ram-model``) is
marked ``estimated``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from carbon_jupyter.measure.sampler import Sampler, check_interval
from carbon_jupyter.model import MODEL_METHODS, Sample
from carbon_jupyter.sensors.base import Sensor


@dataclass(frozen=True)
class DevicePower:
    """The latest power of one device; ``power_w`` is None until the first tick."""

    device_id: str
    kind: str
    name: str
    method: str
    power_w: float | None

    @property
    def estimated(self) -> bool:
        return self.method in MODEL_METHODS


@dataclass(frozen=True)
class MachineReading:
    """What :meth:`MachinePower.poll` returns: per-device power and their sum."""

    running: bool
    interval_s: float
    devices: tuple[DevicePower, ...]

    @property
    def power_w(self) -> float | None:
        """The sum over devices with a reading, None before the first reading."""
        known = [d.power_w for d in self.devices if d.power_w is not None]
        return sum(known) if known else None

    @property
    def estimated(self) -> bool:
        return any(d.estimated for d in self.devices)


def _discovered_sensors() -> Sequence[Sensor]:
    from carbon_jupyter.sensors import discover

    return discover().sensors


class MachinePower:
    """Samples the machine's sensors while polled; see the module docstring.

    ``sensors`` returns the sensors to read (default: :func:`carbon_jupyter.sensors.discover`);
    ``clock`` is injectable for tests. Every method is blocking and thread-safe: call them
    from a worker thread, not the server's event loop.
    """

    def __init__(
        self,
        *,
        interval_s: float = 1.0,
        idle_s: float = 10.0,
        sensors: Callable[[], Sequence[Sensor]] = _discovered_sensors,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval_s = check_interval(interval_s)
        self.idle_s = float(idle_s)
        self._sensors = sensors
        self._clock = clock
        self._lock = threading.Lock()  # start / stop
        self._data_lock = threading.Lock()  # latest samples; the sampler thread takes only this
        self._sampler: Sampler | None = None
        self._devices: tuple[Sensor, ...] = ()
        self._latest: dict[str, Sample] = {}
        self._last_poll = 0.0

    @property
    def running(self) -> bool:
        return self._sampler is not None

    def poll(self) -> MachineReading:
        """The latest power of each device; starts sampling if it was stopped."""
        with self._lock:
            self._last_poll = self._clock()
            if self._sampler is None:
                self._start_locked()
            running = self._sampler is not None
        with self._data_lock:
            latest = dict(self._latest)
        devices = tuple(
            DevicePower(
                device_id=s.info.device_id,
                kind=s.info.kind,
                name=s.info.name,
                method=s.info.method,
                power_w=_power_of(latest.get(s.info.device_id)),
            )
            for s in self._devices
        )
        return MachineReading(running=running, interval_s=self.interval_s, devices=devices)

    def stop_if_idle(self) -> bool:
        """Stop sampling when nobody polled for ``idle_s`` seconds; True if it stopped now."""
        with self._lock:
            if self._sampler is None or self._clock() - self._last_poll < self.idle_s:
                return False
            self._stop_locked()
            return True

    def close(self) -> None:
        """Stop sampling now (the server is shutting down)."""
        with self._lock:
            if self._sampler is not None:
                self._stop_locked()

    # -- inside the lock -----------------------------------------------------------------
    def _start_locked(self) -> None:
        sensors = tuple(self._sensors())
        self._devices = sensors
        with self._data_lock:
            self._latest = {}
        if not sensors:
            return
        # Two ticks in memory is all a reading needs; nothing is stored.
        sampler = Sampler(sensors, interval_s=self.interval_s, max_samples=2 * len(sensors))
        sampler.subscribe(self._on_samples)
        sampler.start()
        self._sampler = sampler

    def _stop_locked(self) -> None:
        sampler, self._sampler = self._sampler, None
        if sampler is not None:
            sampler.stop()
        with self._data_lock:
            self._latest = {}

    def _on_samples(self, samples: Sequence[Sample]) -> None:
        with self._data_lock:
            for sample in samples:
                self._latest[sample.device_id] = sample


def _power_of(sample: Sample | None) -> float | None:
    return None if sample is None else sample.power_w
