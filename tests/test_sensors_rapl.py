"""RAPL over a fake powercap tree: which domains count, counters, wraparound, permissions."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from carbon_jupyter.errors import SensorError
from carbon_jupyter.measure.integrate import counter_delta_j
from carbon_jupyter.sensors import rapl
from carbon_jupyter.sensors.base import Probe, Sensor
from tests.fake_powercap import (
    CannotDropPrivileges,
    CounterWriter,
    FakePowercap,
    build_tree,
    deny_reads,
    run_unprivileged,
)


def _ids(probe: Probe) -> list[str]:
    return [s.info.device_id for s in probe.sensors]


def _zones(probe: Probe) -> set[str]:
    return {s.zone.name for s in probe.sensors if isinstance(s, rapl.RaplSensor)}


def test_one_socket_reads_package_counter_in_joules(tmp_path: Path) -> None:
    tree = build_tree(tmp_path / "powercap", sockets=1)
    probe = rapl.probe(tree.root)
    assert probe.problems == ()
    assert _ids(probe) == ["cpu:0"]
    sensor = probe.sensors[0]
    assert isinstance(sensor, Sensor)
    assert sensor.info.kind == "cpu"
    assert sensor.info.method == "rapl"
    first = sensor.read()
    assert first.counter_j == pytest.approx(1.0)
    assert first.counter_range_j == pytest.approx(262_143.32885)
    assert first.process_share is None
    second = sensor.read()
    assert second.process_share is not None
    assert 0.0 <= second.process_share <= 1.0
    sensor.close()
    sensor.close()


def test_two_sockets_with_dram_count_packages_and_dram_only(tmp_path: Path) -> None:
    tree = build_tree(tmp_path / "pc", sockets=2, dram=True, core=True, uncore=True, psys=True)
    probe = rapl.probe(tree.root)
    assert _ids(probe) == ["cpu:0", "cpu:1", "ram:dram0", "ram:dram1"]
    # core is :N:0, uncore :N:1, dram :N:2; psys is the top-level zone intel-rapl:2.
    assert _zones(probe) == {"intel-rapl:0", "intel-rapl:1", "intel-rapl:0:2", "intel-rapl:1:2"}
    kinds = {s.info.device_id: s.info.kind for s in probe.sensors}
    assert kinds == {"cpu:0": "cpu", "cpu:1": "cpu", "ram:dram0": "ram", "ram:dram1": "ram"}
    assert all(s.info.method == "rapl" for s in probe.sensors)
    assert len({s.info.name for s in probe.sensors}) == 4


def test_psys_alone_is_not_counted(tmp_path: Path) -> None:
    tree = FakePowercap(tmp_path / "pc")
    tree.add_psys(0, energy_uj=5)
    probe = rapl.probe(tree.root)
    assert probe.sensors == ()
    # Not "no tree": a RAPL tree whose package domains are hidden, and what to do about it.
    assert "no RAPL powercap tree" not in probe.problems[0]
    assert "only the psys" in probe.problems[0]
    assert "package domains are hidden" in probe.problems[0]


def test_amd_rapl_tree_is_read_and_never_together_with_intel_rapl(tmp_path: Path) -> None:
    amd = build_tree(tmp_path / "amd", sockets=1, prefix="amd-rapl")
    assert _zones(rapl.probe(amd.root)) == {"amd-rapl:0"}

    both = build_tree(tmp_path / "both", sockets=1)
    FakePowercap(both.root, prefix="amd-rapl").add_package(0)
    FakePowercap(both.root, prefix="intel-rapl-mmio").add_package(0)
    assert _zones(rapl.probe(both.root)) == {"intel-rapl:0"}


def test_nested_tree_and_dies(tmp_path: Path) -> None:
    control = tmp_path / "powercap" / "intel-rapl"
    package = FakePowercap(control).add_zone("intel-rapl:0", "package-0-die-1", 3_000_000)
    FakePowercap(package).add_zone("intel-rapl:0:0", "dram", 4_000_000)
    probe = rapl.probe(tmp_path / "powercap")
    assert _ids(probe) == ["cpu:0-die1", "ram:dram0"]
    assert [s.read().counter_j for s in probe.sensors] == [pytest.approx(3.0), pytest.approx(4.0)]


def test_missing_tree_says_why(tmp_path: Path) -> None:
    probe = rapl.probe(tmp_path / "absent")
    assert probe.sensors == ()
    assert len(probe.problems) == 1
    assert f"no RAPL powercap tree at {tmp_path / 'absent'}" in probe.problems[0]
    assert probe.expected  # how a VM is: doctor says it, notebooks do not repeat it


def test_root_comes_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = build_tree(tmp_path / "elsewhere", sockets=2)
    monkeypatch.setenv(rapl.ROOT_ENV, str(tree.root))
    assert _ids(rapl.probe()) == ["cpu:0", "cpu:1"]


def test_read_failure_raises_sensor_error(tmp_path: Path) -> None:
    tree = build_tree(tmp_path / "pc")
    sensor = rapl.probe(tree.root).sensors[0]
    (tree.root / "intel-rapl:0" / "energy_uj").unlink()
    with pytest.raises(SensorError, match="energy_uj"):
        sensor.read()


def test_unreadable_value_is_a_problem_not_a_sensor(tmp_path: Path) -> None:
    tree = build_tree(tmp_path / "pc", sockets=2)
    (tree.root / "intel-rapl:1" / "energy_uj").write_text("garbage\n")
    probe = rapl.probe(tree.root)
    assert _ids(probe) == ["cpu:0"]
    assert "intel-rapl:1" in probe.problems[0]


def test_wraparound_gives_the_energy_past_the_top(tmp_path: Path) -> None:
    tree = FakePowercap(tmp_path / "pc", max_range_uj=10_000_000)
    zone = tree.add_package(0, energy_uj=9_900_000)
    sensor = rapl.probe(tree.root).sensors[0]
    before = sensor.read()
    tree.set_energy_uj(zone, 200_000)
    after = sensor.read()
    assert before.counter_j is not None
    assert after.counter_j is not None
    assert after.counter_range_j == pytest.approx(10.0)
    assert counter_delta_j(before.counter_j, after.counter_j, after.counter_range_j) == (
        pytest.approx(0.3)
    )


def _wait_for(condition: object, what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"the fake counter never {what}"
        time.sleep(0.005)


@pytest.mark.parametrize(
    ("max_range_uj", "start_uj", "target_uj"),
    [
        pytest.param(262_143_328_850, 0, 200_000, id="no-wrap"),
        # 20 J range at 50 W: the first wrap comes 0.2 s after the start, the next 0.4 s later;
        # the last read comes just after the first.
        pytest.param(20_000_000, 10_000_000, 20_050_000, id="wrap"),
    ],
)
def test_counter_writer_energy_matches_truth(
    tmp_path: Path, max_range_uj: int, start_uj: int, target_uj: int
) -> None:
    tree = FakePowercap(tmp_path / "pc", max_range_uj=max_range_uj)
    zone = tree.add_package(0)
    sensor = rapl.probe(tree.root).sensors[0]
    writer = CounterWriter(zone / "energy_uj", 50.0, max_range_uj, start_uj, interval_s=0.001)
    with writer:
        first = sensor.read()
        _wait_for(lambda: writer.writes[-1][1] > target_uj, "advanced")
        last = sensor.read()
    assert first.counter_j is not None
    assert last.counter_j is not None
    assert (last.counter_j < first.counter_j) == (target_uj > max_range_uj)
    measured_j = counter_delta_j(first.counter_j, last.counter_j, last.counter_range_j)
    # Each reading is one of the values written; the energy between those two writes is
    # the true energy at the writer's power between their times.
    by_value = {u % max_range_uj: (t, u) for t, u in writer.writes}
    t0, u0 = by_value[round(first.counter_j * 1e6)]
    t1, u1 = by_value[round(last.counter_j * 1e6)]
    assert measured_j == pytest.approx((u1 - u0) / 1e6, abs=1e-6)
    assert measured_j == pytest.approx(writer.energy_between_j(t0, t1), abs=2e-6)
    assert measured_j > 0


@pytest.fixture
def world_readable_dir() -> Iterator[Path]:
    """A directory an unprivileged user can traverse (pytest's tmp_path is private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="fakepowercap-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_permission_denied_gives_one_problem_naming_the_fix(world_readable_dir: Path) -> None:
    tree = build_tree(world_readable_dir / "powercap", sockets=2, dram=True)

    def probe_summary() -> tuple[int, tuple[str, ...]]:
        found = rapl.probe(tree.root)
        assert not found.expected  # the user can fix this: it is said in the notebook
        return len(found.sensors), found.problems

    try:
        readable = run_unprivileged(probe_summary)
    except CannotDropPrivileges as exc:
        pytest.skip(f"cannot drop privileges here: {exc}")
    assert readable == (4, ())  # the same user reads the tree before the counters are closed

    for zone in ("intel-rapl:0", "intel-rapl:1", "intel-rapl:0:0", "intel-rapl:1:0"):
        deny_reads(tree.root / zone / "energy_uj")
    count, problems = run_unprivileged(probe_summary)
    assert count == 0
    assert len(problems) == 1
    assert f"sudo chmod o+r {tree.root}/intel-rapl:*/energy_uj" in problems[0]
    assert "udev" in problems[0]
    assert "CPU model" in problems[0]
