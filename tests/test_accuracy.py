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
from carbon_jupyter.sensors import discover
from carbon_jupyter.sensors import reset as reset_sensors
from carbon_jupyter.sensors.base import Reading
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
    """Track ``seconds`` on a package drawing ``power_w``; return (measured, truth, run).

    The truth is the energy the package drew between the two instants whose counter
    values the tracker read first and last: the writer logs when it wrote each value,
    so every value a reader sees has a known time. (Comparing with ``power_w`` times
    the run's duration instead would add the writer's own scheduling lag, which on a
    loaded machine can reach tens of milliseconds.)
    """
    tree = FakePowercap(tmp_path / "powercap", max_range_uj=max_range_uj)
    package = tree.add_package(0, energy_uj=max_range_uj - 1_000_000)
    monkeypatch.setenv("CARBON_JUPYTER_POWERCAP_ROOT", str(tree.root))
    (sensor,) = [s for s in discover().sensors if s.info.method == "rapl"]
    seen_uj: list[int] = []
    real_read = sensor.read

    def read_and_note() -> Reading:
        reading = real_read()
        assert reading.counter_j is not None
        seen_uj.append(round(reading.counter_j * 1e6))
        return reading

    monkeypatch.setattr(sensor, "read", read_and_note)
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
    written_at = {unwrapped % max_range_uj: t for t, unwrapped in writer.writes}
    first_t, last_t = written_at[seen_uj[0]], written_at[seen_uj[-1]]
    # The counter's window is the run's own, up to the writer's lag.
    assert last_t - first_t == pytest.approx(run.duration_s, abs=0.25)
    return run.cpu_energy_j, writer.energy_between_j(first_t, last_t), run


def test_energy_within_half_a_percent_of_the_truth(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    measured, truth, run = tracked_energy_j(
        tmp_path,
        monkeypatch,
        power_w=65.0,
        max_range_uj=262_143_328_850,
        seconds=3.0,
        interval=1.0,
    )
    assert measured == pytest.approx(truth, rel=0.005)
    (cpu,) = [d for d in run.devices if d.device.kind == "cpu"]
    assert cpu.method == "rapl"


def test_energy_within_half_a_percent_across_several_wraparounds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A 50 J counter range at 60 W wraps every 0.83 s: three wraps in 3 s.
    measured, truth, _ = tracked_energy_j(
        tmp_path,
        monkeypatch,
        power_w=60.0,
        max_range_uj=50_000_000,
        seconds=3.0,
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


def test_only_findings_a_user_can_act_on_are_said_in_a_notebook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    monkeypatch.setenv("CARBON_JUPYTER_POWERCAP_ROOT", str(tmp_path / "no-tree"))
    with caplog.at_level(logging.INFO, logger="carbon_jupyter"):
        found = discover()
    assert any("no RAPL powercap tree" in p for p in found.problems)  # doctor shows it
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    assert not any("no RAPL powercap tree" in r.getMessage() for r in warnings)
    assert any("no RAPL powercap tree" in r.getMessage() for r in infos)
    # A tree the kernel exposes but cannot read is the user's to fix: said at WARNING.
    reset_sensors()
    tree = FakePowercap(tmp_path / "garbled")
    package = tree.add_package(0)
    (package / "energy_uj").write_text("not a number\\n")
    monkeypatch.setenv("CARBON_JUPYTER_POWERCAP_ROOT", str(tree.root))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="carbon_jupyter"):
        discover()
    assert any(
        r.levelno == logging.WARNING and "rapl" in r.getMessage().lower() for r in caplog.records
    )
