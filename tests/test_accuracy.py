"""End to end: a tracked block on a RAPL tree drawing a known power reports the true energy.

The fake powercap tree is the only fake: a writer thread advances ``energy_uj`` as a
device drawing a constant power would, wrapping at ``max_energy_range_uj``. The tracker
finds it through ``CARBON_JUPYTER_POWERCAP_ROOT`` exactly as it would find the real one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import carbon_jupyter as cj
from carbon_jupyter.sensors import reset as reset_sensors
from tests.fake_powercap import CounterWriter, FakePowercap


@pytest.fixture(autouse=True)
def _fresh_sensors() -> Iterator[None]:
    reset_sensors()
    yield
    reset_sensors()


def tracked_energy_j(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    power_w: float,
    max_range_uj: int,
    seconds: float,
    interval: float,
) -> tuple[float, float, cj.Run]:
    tree = FakePowercap(tmp_path / "powercap", max_range_uj=max_range_uj)
    package = tree.add_package(0, energy_uj=max_range_uj - 1_000_000)
    monkeypatch.setenv("CARBON_JUPYTER_POWERCAP_ROOT", str(tree.root))
    with CounterWriter(
        package / "energy_uj",
        power_w=power_w,
        max_range_uj=max_range_uj,
        start_uj=max_range_uj - 1_000_000,
        interval_s=0.001,
    ) as writer:
        time.sleep(0.05)
        with cj.track("known power", interval=interval, intensity=100, sink=None) as handle:
            time.sleep(seconds)
    run = handle.run
    assert run is not None
    # The truth over the run's own window: from its first reading to its last.
    return run.cpu_energy_j, writer.energy_between_j(0.0, run.duration_s), run


def test_energy_within_half_a_percent_of_the_truth(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    measured, truth, run = tracked_energy_j(
        tmp_path,
        monkeypatch,
        power_w=65.0,
        max_range_uj=262_143_328_850,
        seconds=2.0,
        interval=1.0,
    )
    assert measured == pytest.approx(truth, rel=0.005)
    (cpu,) = [d for d in run.devices if d.device.kind == "cpu"]
    assert cpu.method == "rapl"


def test_energy_within_half_a_percent_across_several_wraparounds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A 50 J counter range at 60 W wraps every 0.83 s: three wraps in 2.5 s.
    measured, truth, _ = tracked_energy_j(
        tmp_path,
        monkeypatch,
        power_w=60.0,
        max_range_uj=50_000_000,
        seconds=2.5,
        interval=0.1,
    )
    assert truth > 3 * 50.0
    assert measured == pytest.approx(truth, rel=0.005)


def test_counter_energy_does_not_depend_on_the_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One tick in the whole run: the counter is still read exactly at start and stop.
    measured, truth, run = tracked_energy_j(
        tmp_path,
        monkeypatch,
        power_w=30.0,
        max_range_uj=262_143_328_850,
        seconds=1.5,
        interval=60.0,
    )
    assert len([s for s in run.samples if s.device_id.startswith("cpu")]) == 1
    assert measured == pytest.approx(truth, rel=0.005)
