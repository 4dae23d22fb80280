"""GPUs through the whole tracker: counter and power-only GPUs, one lost mid-run, a replay.

NVML is faked at its boundary (tests/fake_nvml.py keeps the real signatures); the
sensors, sampler, tracker and store are the real ones.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

import carbon_jupyter as cj
from carbon_jupyter.model import Sample
from carbon_jupyter.sensors import nvml, replay
from carbon_jupyter.store import open_store
from tests.fake_nvml import FakeGpu, FakeNvml


class TickWatcher:
    """Waits for the sampler thread to take a reading after the fake's time moved."""

    def __init__(self) -> None:
        self.ticks = 0
        self.cond = threading.Condition()

    def __call__(self, samples: Sequence[Sample]) -> None:
        with self.cond:
            self.ticks += 1
            self.cond.notify_all()

    def wait_for_tick(self) -> None:
        with self.cond:
            seen = self.ticks
            assert self.cond.wait_for(lambda: self.ticks > seen, timeout=5)


def test_counter_and_power_gpus_and_a_gpu_lost_mid_run(tmp_path: Path) -> None:
    fake = FakeNvml(
        [
            FakeGpu(name="NVIDIA A100-SXM4-80GB", power_w=300.0, uuid="GPU-aaaa"),
            FakeGpu(name="Tesla P100", power_w=150.0, energy_counter=False, uuid="GPU-bbbb"),
        ]
    )
    sensors = nvml.probe("all", nvml=fake).sensors
    store = open_store(tmp_path / "gpu.db")
    tracker = cj.Tracker(
        "two gpus",
        sensors=sensors,
        sink=store,
        interval=0.05,
        intensity=500,
        clock=lambda: fake.t_s,
    )
    tracker.start()
    watcher = TickWatcher()
    tracker.subscribe(watcher)
    for _ in range(4):  # 2 s on both GPUs
        fake.advance(0.5, steps=1)
        watcher.wait_for_tick()
    fake.break_gpu(1)
    for _ in range(2):  # 1 s more; the P100 is gone
        fake.advance(0.5, steps=1)
        watcher.wait_for_tick()
    run = tracker.stop()
    for sensor in sensors:
        sensor.close()

    a100, p100 = run.devices
    assert (a100.method, p100.method) == ("nvml-energy", "nvml-power")
    assert a100.energy_j == pytest.approx(300.0 * 3.0)
    assert a100.error is None
    assert p100.energy_j == pytest.approx(150.0 * 2.0)  # what it drew until it was lost
    assert p100.error is not None and "lost" in p100.error.lower()
    assert run.status == "ok" and run.duration_s == pytest.approx(3.0)
    assert run.gpu_energy_j == pytest.approx(1200.0)
    assert run.co2_g == pytest.approx(1200.0 / 3.6e6 * 500)
    stored = store.get_run(run.id)
    assert [d.error is not None for d in stored.devices] == [False, True]
    assert stored.gpu_energy_j == pytest.approx(run.gpu_energy_j)


def test_replayed_trace_through_the_tracker_gives_the_traces_energy() -> None:
    trace = replay.load_trace("t4-inference")
    now = [0.0]
    sensor = replay.ReplaySensor(trace, clock=lambda: now[0], loop=False)
    tracker = cj.Tracker(
        "replay", sensors=[sensor], sink=None, interval=60, intensity=100, clock=lambda: now[0]
    )
    tracker.start()
    now[0] = trace.duration_s
    run = tracker.stop()
    assert run.devices[0].method == "replay"
    assert run.gpu_energy_j == pytest.approx(trace.energy_j, rel=1e-9)
