"""Counters that misbehave: glitches, fast wraps, late reads, vanishing files, partial trees.

Each case drives a fake powercap tree written by a separate thread at a known power
(or, for timing faults, the sampler on an injected clock) and compares the energy the
tracker reports with the truth, and checks that the run says what went wrong.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import carbon_jupyter as cj
from carbon_jupyter.measure.integrate import counter_step
from carbon_jupyter.measure.sampler import Sampler
from carbon_jupyter.model import DeviceInfo, Run
from carbon_jupyter.sensors import discover, memory
from carbon_jupyter.sensors import reset as reset_sensors
from carbon_jupyter.sensors.base import Reading
from tests.fake_powercap import CounterWriter, FakePowercap, write_atomic
from tests.test_sampler import FakeClock, ManualEvent


@pytest.fixture(autouse=True)
def _fresh_sensors() -> Iterator[None]:
    reset_sensors()
    yield
    reset_sensors()


def track_tree(
    monkeypatch: pytest.MonkeyPatch,
    root: Path,
    *,
    seconds: float,
    interval: float = 1.0,
    during: Callable[[], None] | None = None,
    at_s: float = 0.0,
) -> Run:
    """Track ``seconds`` on the tree at ``root``; ``during`` runs ``at_s`` seconds in."""
    monkeypatch.setenv("CARBON_JUPYTER_POWERCAP_ROOT", str(root))
    with cj.track("truth", interval=interval, intensity=100, sink=None) as handle:
        if during is None:
            time.sleep(seconds)
        else:
            time.sleep(at_s)
            during()
            time.sleep(seconds - at_s)
    assert handle.run is not None
    return handle.run


def cpu_energy_j(run: Run, device_id: str = "cpu:0") -> float:
    (device,) = [d for d in run.devices if d.device.device_id == device_id]
    return device.energy_j


# -- the arithmetic -------------------------------------------------------------------------


def test_a_step_back_that_no_draw_explains_is_a_glitch_not_a_wrap() -> None:
    range_j = 262_143.0
    step = counter_step(5000.0, 4900.0, range_j, dt_s=1.0, max_power_w=300.0)
    assert step.kind == "glitch" and step.energy_j is None
    wrap = counter_step(range_j - 10.0, 20.0, range_j, dt_s=1.0, max_power_w=300.0)
    assert wrap.kind == "wrap" and wrap.energy_j == pytest.approx(30.0)
    jump = counter_step(100.0, 100_100.0, range_j, dt_s=1.0, max_power_w=300.0)
    assert jump.kind == "glitch"


def test_a_late_read_takes_the_wrap_count_that_fits_the_power_around_it() -> None:
    # 60 J range, 45 W for 5 s: 225 J is 3 wraps and 45 J; the readings alone show 45 J.
    step = counter_step(0.0, 45.0, 60.0, dt_s=5.0, max_power_w=100.0, hint_power_w=45.0)
    assert step.kind == "gap"
    assert step.energy_j == pytest.approx(225.0)
    assert step.max_wraps == 7  # 45 + 7 x 60 J fits 100 W x 5 s; 8 wraps would not
    unknown = counter_step(0.0, 45.0, 60.0, dt_s=5.0, max_power_w=100.0)
    assert unknown.kind == "gap" and unknown.energy_j == pytest.approx(45.0)


# -- end to end on fake powercap trees ------------------------------------------------------


def test_a_counter_that_steps_back_100_j_is_bridged_and_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = FakePowercap(tmp_path / "powercap")
    package = tree.add_package(0, energy_uj=50_000_000)
    with CounterWriter(package / "energy_uj", power_w=20.0, start_uj=50_000_000) as writer:

        def step_back() -> None:
            writer.start_uj -= 100_000_000  # firmware reset: 100 J lower, no wrap

        run = track_tree(monkeypatch, tree.root, seconds=3.0, during=step_back, at_s=1.5)
    truth_j = 20.0 * run.duration_s
    assert cpu_energy_j(run) == pytest.approx(truth_j, rel=0.03)  # was 262 kJ
    assert run.status == "ok"
    assert any("glitch" in w and "cpu:0" in w for w in run.warnings)


def test_a_forward_jump_never_reports_more_than_the_plausible_maximum(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = FakePowercap(tmp_path / "powercap")
    package = tree.add_package(0)
    (package / "constraint_0_max_power_uw").write_text("100000000\n")  # 100 W
    with CounterWriter(package / "energy_uj", power_w=30.0) as writer:

        def jump() -> None:
            writer.start_uj += 50_000_000_000  # +50 kJ in an instant

        run = track_tree(monkeypatch, tree.root, seconds=2.0, during=jump, at_s=1.0)
    assert cpu_energy_j(run) <= 100.0 * 1.5 * run.duration_s
    assert cpu_energy_j(run) == pytest.approx(30.0 * run.duration_s, rel=0.03)
    assert any("glitch" in w for w in run.warnings)


@pytest.mark.parametrize(
    ("range_j", "power_w", "interval", "seconds", "sockets"),
    [(60.0, 45.0, 5.0, 5.0, 1), (20.0, 45.0, 1.0, 3.0, 2)],
    ids=["60J-range-5s-interval", "20J-range-1s-interval-2-packages"],
)
def test_fast_wrapping_counters_are_read_often_enough(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    range_j: float,
    power_w: float,
    interval: float,
    seconds: float,
    sockets: int,
) -> None:
    range_uj = int(range_j * 1e6)
    tree = FakePowercap(tmp_path / "powercap", max_range_uj=range_uj)
    writers = [
        CounterWriter(tree.add_package(s) / "energy_uj", power_w, max_range_uj=range_uj)
        for s in range(sockets)
    ]
    for writer in writers:
        writer.start()
    try:
        run = track_tree(monkeypatch, tree.root, seconds=seconds, interval=interval)
    finally:
        for writer in writers:
            writer.stop()
    for socket in range(sockets):
        # Before: 85 J for 325 J (-74 %), and 0 J (-92 %) for one of two packages.
        assert cpu_energy_j(run, f"cpu:{socket}") == pytest.approx(
            power_w * run.duration_s, rel=0.02
        )
    # The private reads add no samples: the user's interval still sets what is stored.
    ticks = [s for s in run.samples if s.device_id == "cpu:0"]
    assert len(ticks) <= seconds / interval + 1
    assert not any("gap" in w or "glitch" in w for w in run.warnings)


def test_a_declared_maximum_power_sets_how_often_the_counter_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = FakePowercap(tmp_path / "powercap", max_range_uj=60_000_000)
    package = tree.add_package(0)
    (package / "constraint_0_max_power_uw").write_text("60000000\n")
    monkeypatch.setenv("CARBON_JUPYTER_POWERCAP_ROOT", str(tree.root))
    (sensor,) = [s for s in discover().sensors if s.info.method == "rapl"]
    assert sensor.max_power_w == pytest.approx(90.0)  # type: ignore[attr-defined]
    sampler = Sampler([sensor], interval_s=5.0)
    sampler.start()
    try:
        # 60 J at 90 W wraps in 0.67 s: read at least twice in that time.
        assert sampler.fast_period_s is not None
        assert sampler.fast_period_s <= 60.0 / 90.0 / 2
    finally:
        sampler.stop()


def test_a_counter_that_vanishes_is_said_in_this_run_and_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = FakePowercap(tmp_path / "powercap")
    first, second = tree.add_package(0), tree.add_package(1)
    writers = [CounterWriter(first / "energy_uj", 10.0), CounterWriter(second / "energy_uj", 10.0)]
    for writer in writers:
        writer.start()
    try:

        def garble() -> None:
            writers[1].stop()
            write_atomic(second / "energy_uj", "garbage\n")

        run = track_tree(monkeypatch, tree.root, seconds=2.0, during=garble, at_s=1.0)
        assert run.status == "ok"
        (lost,) = [w for w in run.warnings if "cpu:1" in w]
        assert "stopped answering" in lost and "low" in lost
        assert "not a count of microjoules" in lost  # not a permission problem
        assert "readable" not in lost

        # The next run in the same process still lacks package 1, and says so.
        later = track_tree(monkeypatch, tree.root, seconds=0.3)
        assert any("cpu:1" in w for w in later.warnings)
        assert cpu_energy_j(later, "cpu:0") > 0
    finally:
        for writer in writers:
            writer.stop()
    # Once the counter reads again, runs are clean.
    write_atomic(second / "energy_uj", "5\n")
    clean = track_tree(monkeypatch, tree.root, seconds=0.2)
    assert not any("cpu:1" in w for w in clean.warnings)


def test_a_dram_domain_on_one_package_keeps_the_model_for_the_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = FakePowercap(tmp_path / "powercap")
    tree.add_package(0)
    tree.add_subdomain(0, 0, "dram")
    tree.add_package(1)
    monkeypatch.setenv("CARBON_JUPYTER_POWERCAP_ROOT", str(tree.root))
    found = discover()
    ram = [s for s in found.sensors if s.info.kind == "ram"]
    assert {s.info.method for s in ram} == {"rapl", "ram-model"}
    (model,) = [s for s in ram if s.info.method == "ram-model"]
    (whole,) = memory.probe().sensors
    half_w, whole_w = model.read().power_w, whole.read().power_w
    assert half_w is not None and whole_w is not None
    assert half_w == pytest.approx(whole_w / 2)
    run = track_tree(monkeypatch, tree.root, seconds=0.2)
    assert any("package 0 only" in w and "package 1" in w for w in run.warnings)


# -- timing faults, on the sampler's injected clock -----------------------------------------


class WrappingCounter:
    """A counter at ``power_w`` wrapping at ``range_j``, with a declared maximum power."""

    def __init__(self, clock: FakeClock, power_w: float, range_j: float, max_w: float) -> None:
        self.info = DeviceInfo("cpu:0", "cpu", "Fake package", "rapl")
        self.clock, self.power_w, self.range_j = clock, power_w, range_j
        self.max_power_w = max_w
        self.t0 = clock()
        self.reads: list[float] = []

    def read(self) -> Reading:
        self.reads.append(self.clock())
        energy_j = (self.clock() - self.t0) * self.power_w % self.range_j
        return Reading(counter_j=energy_j, counter_range_j=self.range_j)

    def close(self) -> None:
        pass


def test_a_read_that_comes_too_late_is_estimated_and_said() -> None:
    clock, event = FakeClock(), ManualEvent()
    sensor = WrappingCounter(clock, power_w=5.0, range_j=10.0, max_w=20.0)
    sampler = Sampler([sensor], interval_s=1.0, clock=clock, event=event)
    sampler.start()
    assert sampler.fast_period_s == pytest.approx(10.0 / 20.0 / 2.5)
    for _ in range(3):
        clock.now += 0.2
        event.tick()
    clock.now += 7.0  # the thread was starved: 35 J, three wraps, pass unseen
    event.tick()
    clock.now += 0.2
    result = sampler.stop()
    (device,) = result.devices
    assert device.energy_j == pytest.approx(5.0 * result.duration_s)
    (late,) = result.warnings
    assert "gap of 7 s" in late and "cpu:0" in late and "wrap" in late


def test_no_device_reports_more_than_its_maximum_over_the_run() -> None:
    clock, event = FakeClock(), ManualEvent()
    sensor = WrappingCounter(clock, power_w=5.0, range_j=1e6, max_w=20.0)
    sampler = Sampler([sensor], interval_s=1.0, clock=clock, event=event)
    sampler.start()
    clock.now += 1.0
    event.tick()
    sensor.t0 -= 10_000.0  # the counter leaps 50 kJ ahead
    clock.now += 1.0
    event.tick()
    clock.now += 1.0
    result = sampler.stop()
    (device,) = result.devices
    assert device.energy_j <= 20.0 * result.duration_s
    assert device.energy_j == pytest.approx(15.0)
    assert any("glitch" in w for w in result.warnings)


def test_the_sampler_thread_reads_fast_counters_between_ticks() -> None:
    sensor = WrappingCounter(FakeClock(), power_w=5.0, range_j=1.0, max_w=10.0)
    sensor.clock = time.monotonic  # type: ignore[assignment]
    sensor.t0 = time.monotonic()
    sampler = Sampler([sensor], interval_s=2.0)
    sampler.start()
    done = threading.Event()
    done.wait(1.0)
    result = sampler.stop()
    # 1 J at 10 W wraps in 0.1 s: about 25 reads a second, none of them a sample.
    assert len(sensor.reads) >= 15
    assert result.samples and len(result.samples) == 1
    (device,) = result.devices
    assert device.energy_j == pytest.approx(5.0 * result.duration_s, rel=0.05)


def test_a_device_gone_from_the_machine_is_named_by_every_later_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    tree = FakePowercap(tmp_path / "powercap")
    tree.add_package(0)
    second = tree.add_package(1)

    def remove() -> None:
        shutil.rmtree(second)

    run = track_tree(monkeypatch, tree.root, seconds=1.5, during=remove, at_s=0.7)
    (lost,) = [w for w in run.warnings if w.startswith("cpu:1 ")]
    assert "is gone" in lost
    # Probed again, the machine no longer shows package 1; runs still say what they lack.
    reset_sensors()
    for _ in range(2):
        later = track_tree(monkeypatch, tree.root, seconds=0.2)
        assert [d.device.device_id for d in later.devices if d.device.kind == "cpu"] == ["cpu:0"]
        (missing,) = [w for w in later.warnings if w.startswith("cpu:1 ")]
        assert "earlier run" in missing and "not measured in this one" in missing
