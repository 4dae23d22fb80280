"""The sampler: counters read exactly at start and stop, trapezoids, failures, listeners."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from carbon_jupyter.errors import ConfigError, SensorError, TrackingError
from carbon_jupyter.measure.sampler import Sampler, check_interval
from carbon_jupyter.model import DeviceInfo, Sample
from carbon_jupyter.sensors.base import Reading


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class ManualEvent(threading.Event):
    """An Event whose wait() returns only when the test says tick() or set()."""

    def __init__(self) -> None:
        super().__init__()
        self._ticks = threading.Semaphore(0)
        self.waiting = threading.Event()
        self.ticked = threading.Semaphore(0)

    def wait(self, timeout: float | None = None) -> bool:
        if self.is_set():
            return True
        self.waiting.set()
        self._ticks.acquire()
        self.waiting.clear()
        return self.is_set()

    def set(self) -> None:
        super().set()
        self._ticks.release()

    def tick(self) -> None:
        """Let the sampler thread run one tick and wait until it asks to sleep again."""
        assert self.waiting.wait(2)
        self.waiting.clear()
        self._ticks.release()
        assert self.waiting.wait(2)


class CounterSensor:
    """A device with an energy counter at a constant power, on the injected clock."""

    def __init__(
        self,
        clock: FakeClock,
        power_w: float,
        range_j: float | None = None,
        device_id: str = "cpu:0",
        start_j: float = 0.0,
    ) -> None:
        self.info = DeviceInfo(device_id, "cpu", "Fake CPU", "rapl")
        self.clock = clock
        self.power_w = power_w
        self.range_j = range_j
        self.start = clock()
        self.start_j = start_j
        self.fail_after: float | None = None

    def read(self) -> Reading:
        if self.fail_after is not None and self.clock() >= self.fail_after:
            raise SensorError("device lost")
        energy = self.start_j + (self.clock() - self.start) * self.power_w
        if self.range_j:
            energy %= self.range_j
        return Reading(counter_j=energy, counter_range_j=self.range_j, process_share=0.25)

    def close(self) -> None:
        pass


class PowerSensor:
    """A device with power readings only, following ``profile(t)``."""

    def __init__(self, clock: FakeClock, profile: Callable[[float], float]) -> None:
        self.info = DeviceInfo("gpu:0", "gpu", "Fake GPU", "nvml-power")
        self.clock = clock
        self.profile = profile

    def read(self) -> Reading:
        return Reading(power_w=self.profile(self.clock()), utilization_pct=50.0)

    def close(self) -> None:
        pass


def run_sampler(sampler: Sampler, event: ManualEvent, clock: FakeClock, steps: list[float]) -> None:
    sampler.start()
    for dt in steps:
        clock.now += dt
        event.tick()


def test_counter_energy_is_exact_whatever_the_interval() -> None:
    clock, event = FakeClock(), ManualEvent()
    sensor = CounterSensor(clock, power_w=42.0)
    sampler = Sampler([sensor], interval_s=1.0, clock=clock, event=event)
    run_sampler(sampler, event, clock, [0.7, 1.3, 0.2])
    clock.now += 0.35  # stop between ticks
    result = sampler.stop()
    (device,) = result.devices
    assert result.duration_s == pytest.approx(2.55)
    assert device.energy_j == pytest.approx(42.0 * 2.55)
    assert device.process_energy_j == pytest.approx(42.0 * 2.55 * 0.25)
    assert [s.t_s for s in result.samples] == pytest.approx([0.7, 2.0, 2.2, 2.55])
    assert result.samples[-1].energy_j == pytest.approx(device.energy_j)


def test_counter_wraps_several_times_in_a_long_run() -> None:
    clock, event = FakeClock(), ManualEvent()
    # 100 W against a 262 J range: wraps every 2.62 s; ticks every second see each wrap.
    sensor = CounterSensor(clock, power_w=100.0, range_j=262.0, start_j=200.0)
    sampler = Sampler([sensor], interval_s=1.0, clock=clock, event=event)
    run_sampler(sampler, event, clock, [1.0] * 10)
    result = sampler.stop()
    assert result.devices[0].energy_j == pytest.approx(1000.0)


def test_power_only_device_is_integrated_by_trapezoid() -> None:
    clock, event = FakeClock(), ManualEvent()
    t0 = clock.now
    sensor = PowerSensor(clock, lambda t: 100.0 + 10.0 * (t - t0))  # a ramp: trapezoid is exact
    sampler = Sampler([sensor], interval_s=0.5, clock=clock, event=event)
    run_sampler(sampler, event, clock, [0.5] * 4)
    result = sampler.stop()
    assert result.devices[0].energy_j == pytest.approx(100.0 * 2 + 0.5 * 10.0 * 4)
    assert result.devices[0].process_energy_j is None
    assert result.samples[0].utilization_pct == 50.0


def test_failing_sensor_is_dropped_and_the_run_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    clock, event = FakeClock(), ManualEvent()
    good = CounterSensor(clock, power_w=10.0, device_id="cpu:0")
    bad = CounterSensor(clock, power_w=20.0, device_id="cpu:1")
    bad.fail_after = clock.now + 1.5
    sampler = Sampler([good, bad], interval_s=1.0, clock=clock, event=event)
    run_sampler(sampler, event, clock, [1.0, 1.0, 1.0])
    result = sampler.stop()
    by_id = {d.device.device_id: d for d in result.devices}
    assert by_id["cpu:0"].energy_j == pytest.approx(30.0)
    assert by_id["cpu:1"].energy_j == pytest.approx(20.0)  # what it had before it failed
    assert by_id["cpu:1"].error is not None and "device lost" in by_id["cpu:1"].error
    assert sum("stopped reading" in r.message for r in caplog.records) == 1


def test_listeners_receive_each_tick_and_a_broken_one_is_removed() -> None:
    clock, event = FakeClock(), ManualEvent()
    sampler = Sampler([CounterSensor(clock, 5.0)], interval_s=1.0, clock=clock, event=event)
    received: list[Sample] = []
    sampler.subscribe(received.extend)
    calls = []

    def broken(samples: object) -> None:
        calls.append(1)
        raise RuntimeError("view closed")

    sampler.subscribe(broken)
    run_sampler(sampler, event, clock, [1.0, 1.0])
    sampler.stop()
    assert [s.t_s for s in received] == pytest.approx([1.0, 2.0, 2.0])
    assert len(calls) == 1


def test_stop_returns_at_once_with_a_long_interval() -> None:
    sampler = Sampler([], interval_s=60.0)
    sampler.start()
    stopper = threading.Thread(target=sampler.stop)
    stopper.start()
    stopper.join(timeout=2.0)
    assert not stopper.is_alive()


@pytest.mark.parametrize("bad", [0.01, 61, "fast", None])
def test_interval_out_of_range_names_the_range(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"0\.05 to 60"):
        check_interval(bad)  # type: ignore[arg-type]


def test_start_twice_and_stop_before_start_are_errors() -> None:
    sampler = Sampler([], interval_s=1.0)
    with pytest.raises(TrackingError, match="never started"):
        sampler.stop()
    sampler.start()
    with pytest.raises(TrackingError, match="already started"):
        sampler.start()
    sampler.stop()


def test_a_late_listener_gets_the_samples_so_far_first() -> None:
    clock, event = FakeClock(), ManualEvent()
    sampler = Sampler([CounterSensor(clock, 5.0)], interval_s=1.0, clock=clock, event=event)
    run_sampler(sampler, event, clock, [1.0, 1.0])
    received: list[Sample] = []
    sampler.subscribe(received.extend, replay=True)
    clock.now += 1.0
    event.tick()
    sampler.stop()
    assert [s.t_s for s in received] == pytest.approx([1.0, 2.0, 3.0, 3.0])
