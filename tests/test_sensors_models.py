"""The TDP table, the CPU load model, the CPU-time share and the RAM model."""

from __future__ import annotations

import itertools
from pathlib import Path

import psutil
import pytest

from carbon_jupyter.errors import ConfigError
from carbon_jupyter.sensors import cpu_model, hardware, memory
from carbon_jupyter.sensors.base import Sensor
from carbon_jupyter.sensors.cpu_share import CpuActivity, machine_cpu_seconds
from carbon_jupyter.sensors.process import ProcessTree

# -- the TDP table -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("brand", "watts", "source"),
    [
        ("Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz", 210, "codecarbon_cpu_power"),
        # Listed by ML CO2 Impact and CodeCarbon: ML CO2 Impact takes precedence.
        ("AMD EPYC 7763 64-Core Processor", 280, "mlco2_impact"),
        ("Intel(R) Xeon(R) CPU E5-2699 v4 @ 2.20GHz", 145, "codecarbon_cpu_power"),
        ("11th Gen Intel(R) Core(TM) i7-1165G7 @ 2.80GHz", 28, "codecarbon_cpu_power"),
        ("AMD Ryzen 7 7840U w/ Radeon 780M Graphics", 28, "codecarbon_cpu_power"),
        ("Intel(R) Xeon(R) Platinum 8480+", 350, "codecarbon_cpu_power"),
    ],
)
def test_cpu_brand_strings_find_their_tdp(brand: str, watts: float, source: str) -> None:
    assert hardware.lookup_tdp_w("cpu", brand) == (watts, source)


@pytest.mark.parametrize(
    "brand",
    [
        "AMD EPYC",  # a vendor and family word only
        "Intel(R) Xeon(R) CPU @ 2.20GHz",
        "Intel Xeon Processor (Skylake, IBRS)",
        "Apple M1 Pro",  # not the plain M1
        "Intel(R) Xeon(R) Platinum 8480",  # not the 8480+
        "Intel(R) Xeon(R) CPU E5-2650 v3 @ 2.30GHz",  # only v4 and the unversioned part listed
        "",
    ],
)
def test_no_false_match(brand: str) -> None:
    assert hardware.lookup_tdp_w("cpu", brand) is None


def test_gpu_rows_follow_source_precedence() -> None:
    assert hardware.lookup_tdp_w("gpu", "Tesla T4") == (70, "green_algorithms")
    assert hardware.lookup_tdp_w("gpu", "NVIDIA H100 PCIe 80GB") == (350, "nvidia_h100pcie_pb")
    assert hardware.lookup_tdp_w("gpu", "NVIDIA A100-PCIE-40GB") == (250, "green_algorithms")
    assert hardware.lookup_tdp_w("cpu", "NVIDIA A100-PCIE-40GB") is None


def test_cpuinfo_model_name_and_sockets(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: AMD EPYC 7763 64-Core Processor\nphysical id\t: 0\n\n"
        "processor\t: 1\nmodel name\t: AMD EPYC 7763 64-Core Processor\nphysical id\t: 1\n"
    )
    assert hardware.cpu_model_name(cpuinfo) == "AMD EPYC 7763 64-Core Processor"
    assert hardware.cpu_socket_count(cpuinfo) == 2
    assert hardware.cpu_socket_count(tmp_path / "absent") == 1


def test_constants_come_from_the_shipped_table() -> None:
    assert hardware.constant_value("ram_w_per_gb", "green_algorithms") == 0.3725
    assert hardware.constant_value("cpu_default_w_per_core", "green_algorithms") == 12.0


# -- the CPU model -------------------------------------------------------------------------


def test_load_curve_has_an_idle_floor_and_rises_with_load() -> None:
    tdp_w = 200.0
    powers = [cpu_model.cpu_power_w(tdp_w, u / 20) for u in range(21)]
    assert powers[0] == pytest.approx(0.12 * tdp_w)
    assert powers[-1] == pytest.approx(1.02 * tdp_w)
    assert all(a < b for a, b in itertools.pairwise(powers))
    assert cpu_model.cpu_power_w(tdp_w, 0.5) == pytest.approx(0.75 * tdp_w)
    assert cpu_model.cpu_power_w(tdp_w, -1) == powers[0]
    assert cpu_model.cpu_power_w(tdp_w, 7) == powers[-1]


class ScriptedCpu:
    """Cumulative CPU seconds as the OS would report them, advanced by the test."""

    def __init__(self, cpus: int = 4) -> None:
        self.cpus = cpus
        self.busy_s = 100.0
        self.total_s = 1000.0
        self.tree_s = 10.0

    def advance(self, wall_s: float, busy_fraction: float, tree_s: float) -> None:
        self.total_s += wall_s * self.cpus
        self.busy_s += wall_s * self.cpus * busy_fraction
        self.tree_s += tree_s

    def activity(self) -> CpuActivity:
        return CpuActivity(
            machine_seconds=lambda: (self.busy_s, self.total_s), tree_seconds=lambda: self.tree_s
        )


def test_cpu_activity_busy_fraction_and_process_share() -> None:
    cpu = ScriptedCpu(cpus=4)
    activity = cpu.activity()
    assert activity.update() is None
    cpu.advance(wall_s=1.0, busy_fraction=0.5, tree_s=1.0)  # 2 busy CPU-seconds, 1 is ours
    delta = activity.update()
    assert delta is not None
    assert delta.busy_fraction == pytest.approx(0.5)
    assert delta.process_share == pytest.approx(0.5)
    cpu.advance(wall_s=1.0, busy_fraction=0.25, tree_s=3.0)  # a reaped child brings 3 s at once
    delta = activity.update()
    assert delta is not None
    assert delta.process_share == 1.0
    cpu.advance(wall_s=1.0, busy_fraction=0.0, tree_s=0.0)
    delta = activity.update()
    assert delta is not None
    assert (delta.busy_fraction, delta.process_share) == (0.0, 0.0)


def test_an_interval_too_short_to_resolve_keeps_the_previous_figures() -> None:
    cpu = ScriptedCpu(cpus=2)
    activity = cpu.activity()
    activity.update()
    cpu.advance(wall_s=1.0, busy_fraction=0.9, tree_s=1.8)
    busy = activity.update()
    assert busy is not None and busy.busy_fraction == pytest.approx(0.9)
    # A stop 5 ms after the last tick: no clock tick can show in that, busy or not.
    cpu.advance(wall_s=0.005, busy_fraction=0.0, tree_s=0.0)
    assert activity.update() == busy
    # The next interval is measured from the last resolved reading, the 5 ms included.
    cpu.advance(wall_s=0.995, busy_fraction=0.5, tree_s=0.0)
    after = activity.update()
    assert after is not None and after.busy_fraction == pytest.approx(0.995 * 0.5)


def test_cpu_model_power_follows_load() -> None:
    cpu = ScriptedCpu(cpus=8)
    info = cpu_model.probe(activity=cpu.activity()).sensors[0].info
    sensor = cpu_model.CpuModelSensor(info, tdp_w=100.0, activity=cpu.activity())
    first = sensor.read()
    assert first.process_share is None
    assert first.power_w == pytest.approx(cpu_model.cpu_power_w(100.0, 0.1))  # since boot
    readings = []
    for busy in (0.0, 0.3, 1.0):
        cpu.advance(wall_s=1.0, busy_fraction=busy, tree_s=8.0 * busy / 2)
        readings.append(sensor.read())
    assert [r.utilization_pct for r in readings] == [0.0, pytest.approx(30.0), 100.0]
    powers = [r.power_w or 0.0 for r in readings]
    assert powers[0] == pytest.approx(12.0)  # the idle floor of a 100 W CPU
    assert powers[0] < powers[1] < powers[2]
    assert [r.process_share for r in readings[1:]] == [pytest.approx(0.5), pytest.approx(0.5)]


def test_cpu_model_probe_is_an_estimate_with_its_tdp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cpu_model.CPU_TDP_ENV, "150")
    probe = cpu_model.probe()
    assert probe.problems == ()
    (sensor,) = probe.sensors
    assert isinstance(sensor, Sensor)
    assert (sensor.info.device_id, sensor.info.kind, sensor.info.method) == (
        "cpu",
        "cpu",
        "cpu-model",
    )
    assert sensor.info.detail.startswith("estimate:")
    assert f"150 W set by {cpu_model.CPU_TDP_ENV}" in sensor.info.detail
    reading = sensor.read()
    assert reading.power_w is not None
    assert 0.12 * 150 <= reading.power_w <= 1.02 * 150
    second = sensor.read()
    assert second.process_share is not None
    assert 0.0 <= second.process_share <= 1.0


@pytest.mark.parametrize("value", ["abc", "0", "-5", "inf", "nan"])
def test_bad_tdp_override_is_a_config_error(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(cpu_model.CPU_TDP_ENV, value)
    with pytest.raises(ConfigError, match=cpu_model.CPU_TDP_ENV):
        cpu_model.probe()


def test_tdp_from_table_times_sockets_else_per_core_default() -> None:
    tdp_w, note = cpu_model.resolve_tdp_w("AMD EPYC 7763 64-Core Processor", sockets=2)
    assert tdp_w == 560.0
    assert "mlco2_impact" in note
    cores = psutil.cpu_count(logical=False)
    tdp_w, note = cpu_model.resolve_tdp_w("AMD EPYC")
    if cores:
        assert tdp_w == 12.0 * cores
        assert "Green Algorithms" in note
    else:
        assert tdp_w == 85.0
    assert "not in the TDP table" in note


# -- the RAM model -------------------------------------------------------------------------


def test_ram_model_is_installed_gb_times_w_per_gb() -> None:
    (sensor,) = memory.probe().sensors
    assert isinstance(sensor, Sensor)
    assert (sensor.info.device_id, sensor.info.kind, sensor.info.method) == (
        "ram",
        "ram",
        "ram-model",
    )
    installed_gb = psutil.virtual_memory().total / 2**30
    reading = sensor.read()
    assert reading.power_w == pytest.approx(installed_gb * 0.3725)
    assert "estimate" in sensor.info.detail
    assert "Green Algorithms" in sensor.info.detail
    assert reading.memory_used_b is not None
    assert reading.memory_used_b > 0
    assert reading.process_share is not None
    ours = ProcessTree().rss_bytes() / reading.memory_used_b
    assert reading.process_share == pytest.approx(min(1.0, ours), rel=0.2)


def test_ram_w_per_gb_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(memory.RAM_W_PER_GB_ENV, "0.5")
    (sensor,) = memory.probe().sensors
    assert sensor.read().power_w == pytest.approx(psutil.virtual_memory().total / 2**30 * 0.5)
    monkeypatch.setenv(memory.RAM_W_PER_GB_ENV, "lots")
    with pytest.raises(ConfigError, match=memory.RAM_W_PER_GB_ENV):
        memory.probe()


def test_machine_cpu_seconds_are_consistent() -> None:
    busy_s, total_s = machine_cpu_seconds()
    assert 0.0 <= busy_s <= total_s


def test_ram_share_is_read_at_most_every_refresh_interval() -> None:
    now = [0.0]
    (probed,) = memory.probe().sensors
    sensor = memory.RamModelSensor(
        probed.info, 10.0, ProcessTree(), refresh_s=5.0, clock=lambda: now[0]
    )
    first = sensor.read()
    ballast = b"x" * (256 * 2**20)  # 256 MiB more resident in this process
    now[0] = 1.0
    cached = sensor.read()
    assert (cached.process_share, cached.memory_used_b) == (
        first.process_share,
        first.memory_used_b,
    )
    now[0] = 5.0
    fresh = sensor.read()
    assert fresh.process_share is not None and first.process_share is not None
    assert fresh.process_share > first.process_share
    assert fresh.power_w == first.power_w == 10.0
    del ballast
