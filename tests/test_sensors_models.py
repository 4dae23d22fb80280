"""The TDP table, the CPU load model, the CPU-time share and the RAM model."""

from __future__ import annotations

import csv
import itertools
import time
from importlib import resources
from pathlib import Path

import psutil
import pytest

from carbon_jupyter.errors import ConfigError
from carbon_jupyter.sensors import cpu_model, hardware, memory, virtual
from carbon_jupyter.sensors.base import Sensor
from carbon_jupyter.sensors.cpu_share import CARRY_HORIZON_S, CpuActivity, machine_cpu_seconds
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
    tmp_path.mkdir(parents=True, exist_ok=True)
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
    cpu.advance(wall_s=1.0, busy_fraction=0.0, tree_s=0.0)
    delta = activity.update()
    assert delta is not None
    assert (delta.busy_fraction, delta.process_share) == (0.0, 0.0)


def test_tree_time_beyond_the_busy_time_is_carried_not_dropped() -> None:
    cpu = ScriptedCpu(cpus=4)
    activity = cpu.activity()
    activity.update()
    # A child found late brings 3 CPU-seconds at once; the machine was busy for 1.
    cpu.advance(wall_s=1.0, busy_fraction=0.25, tree_s=3.0)
    first = activity.update()
    assert first is not None and first.process_share == 1.0
    assert activity.carried_s == pytest.approx(2.0)
    # The next intervals have busy time the tree did not use: the carry fills it.
    attributed = 1.0
    for _ in range(2):
        cpu.advance(wall_s=1.0, busy_fraction=0.5, tree_s=0.5)  # 2 busy, 0.5 ours
        delta = activity.update()
        assert delta is not None
        attributed += delta.process_share * 2.0
    assert attributed == pytest.approx(3.0 + 1.0)
    assert activity.carried_s == pytest.approx(0.0)


def test_a_carry_is_forgotten_after_the_horizon() -> None:
    cpu = ScriptedCpu(cpus=2)
    activity = CpuActivity(
        machine_seconds=lambda: (cpu.busy_s, cpu.total_s), tree_seconds=lambda: cpu.tree_s, cpus=2
    )
    activity.update()
    cpu.advance(wall_s=1.0, busy_fraction=0.5, tree_s=2.0)  # 1 s beyond the busy time
    activity.update()
    assert activity.carried_s == pytest.approx(1.0)
    cpu.advance(wall_s=CARRY_HORIZON_S + 1.0, busy_fraction=1.0, tree_s=2.0 * CARRY_HORIZON_S + 2)
    activity.update()  # no spare busy time in that long interval: the old carry expires
    cpu.advance(wall_s=1.0, busy_fraction=1.0, tree_s=0.0)
    later = activity.update()
    assert later is not None and later.process_share == 0.0


def test_an_interval_too_short_to_resolve_keeps_the_previous_figures() -> None:
    cpu = ScriptedCpu(cpus=2)
    activity = cpu.activity()
    activity.update()
    cpu.advance(wall_s=1.0, busy_fraction=0.9, tree_s=1.8)
    busy = activity.update()
    assert busy is not None and busy.busy_fraction == pytest.approx(0.9)
    # A stop 5 ms after the last tick: no clock tick can show in that, busy or not.
    cpu.advance(wall_s=0.005, busy_fraction=0.0, tree_s=0.0)
    short = activity.update()
    assert short is not None and not short.resolved
    assert (short.busy_fraction, short.process_share) == (busy.busy_fraction, busy.process_share)
    # Its raw figures are still there for whoever integrates power over every interval.
    assert short.interval_total_s == pytest.approx(0.01)
    assert short.interval_busy_fraction == 0.0
    # The next share is measured from the last resolved reading, the 5 ms included.
    cpu.advance(wall_s=0.995, busy_fraction=0.5, tree_s=0.0)
    after = activity.update()
    assert after is not None and after.busy_fraction == pytest.approx(0.995 * 0.5)
    assert after.interval_busy_fraction == pytest.approx(0.5)


def test_cpu_model_power_follows_load_and_integrates_itself() -> None:
    cpu = ScriptedCpu(cpus=8)
    clock = [0.0]
    model = cpu_model.tdp_power_model(100.0)
    info = cpu_model.probe(activity=cpu.activity()).sensors[0].info
    sensor = cpu_model.CpuModelSensor(info, model, cpu.activity(), clock=lambda: clock[0])
    assert sensor.max_power_w == pytest.approx(1.5 * 102.0)
    first = sensor.read()
    # No interval yet: a zero for the counter, nothing else (no since-boot average).
    assert (first.counter_j, first.power_w, first.process_share) == (0.0, None, None)
    readings = []
    for busy in (0.0, 0.3, 1.0):
        cpu.advance(wall_s=2.0, busy_fraction=busy, tree_s=16.0 * busy / 2)
        clock[0] += 2.0
        readings.append(sensor.read())
    assert [r.utilization_pct for r in readings] == [0.0, pytest.approx(30.0), 100.0]
    powers = [r.power_w or 0.0 for r in readings]
    assert powers[0] == pytest.approx(12.0)  # the idle floor of a 100 W CPU
    assert powers[0] < powers[1] < powers[2]
    assert [r.process_share for r in readings[1:]] == [pytest.approx(0.5), pytest.approx(0.5)]
    assert readings[-1].counter_j == pytest.approx(2.0 * sum(powers))
    assert readings[-1].counter_range_j is None


def test_cpu_model_energy_counts_every_stretch_once_even_unresolved_ones() -> None:
    cpu = ScriptedCpu(cpus=2)
    clock = [0.0]
    model = cpu_model.tdp_power_model(100.0)
    info = cpu_model.probe(activity=cpu.activity()).sensors[0].info
    sensor = cpu_model.CpuModelSensor(info, model, cpu.activity(), clock=lambda: clock[0])
    sensor.read()
    expected_j = 0.0
    for wall_s, busy in ((1.0, 0.9), (0.005, 0.0), (0.995, 0.5), (0.002, 1.0), (0.5, 0.2)):
        cpu.advance(wall_s=wall_s, busy_fraction=busy, tree_s=0.0)
        clock[0] += wall_s
        reading = sensor.read()
        expected_j += model.power_w(busy) * wall_s
        assert reading.counter_j == pytest.approx(expected_j)
    # The live figures of a stretch too short to resolve are those of the one before.
    cpu.advance(wall_s=0.01, busy_fraction=1.0, tree_s=0.0)
    clock[0] += 0.01
    short = sensor.read()
    assert short.utilization_pct == reading.utilization_pct
    assert short.power_w == reading.power_w


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
    assert sensor.info.power_limit_w == 150.0
    assert sensor.read().counter_j == 0.0
    time.sleep(0.2)
    second = sensor.read()
    assert second.power_w is not None
    assert 0.12 * 150 <= second.power_w <= 1.02 * 150
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


# -- the CPU model in a virtual machine -------------------------------------------------


AWS = {"sys_vendor": "Amazon EC2", "product_name": "m5.large"}
GCP = {"sys_vendor": "Google", "product_name": "Google Compute Engine"}


def fake_machine(
    tmp_path: Path,
    model_name: str,
    *,
    hypervisor: bool = True,
    dmi: dict[str, str] | None = None,
    cpu_part: str | None = None,
) -> tuple[Path, Path]:
    """A /proc/cpuinfo and a /sys/class/dmi/id folder for a machine of two logical CPUs."""
    flags = "fpu vme sse sse2 avx2" + (" hypervisor" if hypervisor else "")
    part = f"CPU part\t: {cpu_part}\n" if cpu_part else ""
    tmp_path.mkdir(parents=True, exist_ok=True)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "".join(
            f"processor\t: {n}\nmodel name\t: {model_name}\nphysical id\t: 0\n"
            f"flags\t\t: {flags}\n{part}\n"
            for n in range(2)
        )
    )
    dmi_dir = tmp_path / "dmi"
    dmi_dir.mkdir()
    for name, value in (dmi or {}).items():
        (dmi_dir / name).write_text(value + "\n")
    return cpuinfo, dmi_dir


def csv_coefficients() -> dict[str, tuple[float, float]]:
    """name -> (min, max) W per vCPU, read from the shipped CSV."""
    text = (resources.files("carbon_jupyter") / "data" / "vcpu_power.csv").read_text()
    return {
        row["name"]: (float(row["min_w_per_vcpu"]), float(row["max_w_per_vcpu"]))
        for row in csv.DictReader(text.splitlines())
    }


def per_vcpu_w(vcpus: int, coefficients: tuple[float, float], utilisation: float) -> float:
    low, high = coefficients
    return vcpus * (low + utilisation * (high - low))


@pytest.mark.parametrize(
    ("brand", "dmi", "expected"),
    [
        ("Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz", AWS, "Cascade Lake"),
        ("Intel(R) Xeon(R) Platinum 8175M CPU @ 2.50GHz", AWS, "Skylake"),
        ("Intel(R) Xeon(R) CPU E5-2686 v4 @ 2.30GHz", {"sys_vendor": "Xen"}, "Broadwell"),
        ("AMD EPYC 7B12", GCP, "EPYC 2nd Gen"),
    ],
)
def test_a_vm_is_estimated_per_vcpu_for_its_microarchitecture(
    tmp_path: Path, brand: str, dmi: dict[str, str], expected: str
) -> None:
    cpuinfo, dmi_dir = fake_machine(tmp_path, brand, dmi=dmi)
    model = cpu_model.resolve_power_model(
        hardware.cpu_model_name(cpuinfo), cpuinfo=cpuinfo, dmi_dir=dmi_dir, environ={}, vcpus=2
    )
    row = csv_coefficients()[expected]
    for u in (0.0, 0.25, 0.5, 1.0):
        assert model.power_w(u) == pytest.approx(per_vcpu_w(2, row, u))
    assert "virtual machine (the hypervisor CPU flag" in model.note
    assert f"the {expected} row" in model.note
    assert "Cloud Carbon Footprint" in model.note


def test_the_issue_machine_an_unnamed_epyc_vm_uses_the_providers_mean(tmp_path: Path) -> None:
    """A 2-vCPU VM reporting "AMD EPYC" used 12 W x 2 cores = 24 W; per vCPU it is far less."""
    cpuinfo, dmi_dir = fake_machine(tmp_path, "AMD EPYC")
    (sensor,) = cpu_model.probe(cpuinfo=cpuinfo, dmi_dir=dmi_dir, environ={}).sensors
    rows = csv_coefficients()
    mean = (
        sum(rows[p][0] for p in ("aws", "gcp", "azure")) / 3,
        sum(rows[p][1] for p in ("aws", "gcp", "azure")) / 3,
    )
    vcpus = psutil.cpu_count(logical=True)
    assert isinstance(sensor, cpu_model.CpuModelSensor)
    for u in (0.0, 0.5, 1.0):
        assert sensor.model.power_w(u) == pytest.approx(per_vcpu_w(vcpus, mean, u))
    assert sensor.max_power_w == pytest.approx(1.5 * per_vcpu_w(vcpus, mean, 1.0))
    detail = sensor.info.detail
    assert detail.startswith("estimate:")
    assert "microarchitecture unknown ('AMD EPYC'" in detail
    assert "mean of the AWS average, GCP median and Azure average rows" in detail
    # With a provider known from the environment, that provider's row is used.
    model = cpu_model.resolve_power_model(
        "AMD EPYC", cpuinfo=cpuinfo, dmi_dir=dmi_dir, environ={"AWS_REGION": "eu-west-1"}, vcpus=2
    )
    assert model.power_w(0.5) == pytest.approx(per_vcpu_w(2, rows["aws"], 0.5))
    assert "AWS average row" in model.note and "AWS_REGION" in model.note


def test_a_microarchitecture_the_data_lacks_falls_back_to_the_provider(tmp_path: Path) -> None:
    cpuinfo, dmi_dir = fake_machine(tmp_path, "AMD EPYC 7B13", dmi=GCP)
    model = cpu_model.resolve_power_model(
        "AMD EPYC 7B13", cpuinfo=cpuinfo, dmi_dir=dmi_dir, environ={}, vcpus=4
    )
    assert model.power_w(0.3) == pytest.approx(per_vcpu_w(4, csv_coefficients()["gcp"], 0.3))
    assert "GCP median row" in model.note


def test_graviton2_from_the_arm_cpu_part_on_aws(tmp_path: Path) -> None:
    cpuinfo, dmi_dir = fake_machine(
        tmp_path, "", dmi={"sys_vendor": "Amazon EC2"}, cpu_part="0xd0c", hypervisor=False
    )
    model = cpu_model.resolve_power_model(
        "", cpuinfo=cpuinfo, dmi_dir=dmi_dir, environ={}, vcpus=2, machine="aarch64"
    )
    assert model.power_w(1.0) == pytest.approx(per_vcpu_w(2, csv_coefficients()["Graviton2"], 1.0))
    assert "DMI 'Amazon EC2'" in model.note


@pytest.mark.parametrize(
    ("brand", "arch"),
    [
        ("Intel(R) Xeon(R) Platinum 8275CL CPU @ 3.00GHz", "Cascade Lake"),
        ("Intel(R) Xeon(R) Platinum 8124M CPU @ 3.00GHz", "Skylake"),
        ("Intel(R) Xeon(R) CPU E5-2666 v3 @ 2.90GHz", "Haswell"),
        ("Intel(R) Xeon(R) CPU E5-2670 v2 @ 2.50GHz", "Ivy Bridge"),
        ("Intel(R) Xeon(R) CPU E5-2670 0 @ 2.60GHz", "Sandy Bridge"),
        ("Intel(R) Xeon(R) E-2176G CPU @ 3.70GHz", "Coffee Lake"),
        ("AMD EPYC 7571", "EPYC 1st Gen"),
        ("AMD EPYC 7R32", "EPYC 2nd Gen"),
        ("AMD EPYC 7763 64-Core Processor", None),  # 3rd generation: not in the data
        ("Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz", None),  # Ice Lake: not in the data
        ("AMD EPYC", None),
        ("AWS Graviton2", "Graviton2"),
    ],
)
def test_microarchitecture_from_the_model_name(brand: str, arch: str | None) -> None:
    assert virtual.microarchitecture(brand, machine="x86_64") == arch


def test_bare_metal_keeps_the_tdp_load_curve(tmp_path: Path) -> None:
    brand = "Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz"
    for dmi in ({}, {"sys_vendor": "Amazon EC2", "product_name": "c5.metal"}):
        cpuinfo, dmi_dir = fake_machine(tmp_path / str(len(dmi)), brand, hypervisor=False, dmi=dmi)
        model = cpu_model.resolve_power_model(brand, cpuinfo=cpuinfo, dmi_dir=dmi_dir, environ={})
        assert model.power_w(0.5) == pytest.approx(cpu_model.cpu_power_w(210.0, 0.5))
        assert model.note.startswith("bare metal")


def test_vm_detection_can_be_overridden(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cpuinfo, dmi_dir = fake_machine(tmp_path, "AMD EPYC")
    assert virtual.detect(cpuinfo=cpuinfo, dmi_dir=dmi_dir, environ={}).virtual
    off = {virtual.VIRTUAL_ENV: "0"}
    assert not virtual.detect(cpuinfo=cpuinfo, dmi_dir=dmi_dir, environ=off).virtual
    qemu = tmp_path / "qemu"
    qemu.mkdir()
    (qemu / "sys_vendor").write_text("QEMU\n")
    found = virtual.detect(cpuinfo=tmp_path / "absent", dmi_dir=qemu, environ={})
    assert (found.virtual, found.evidence) == (True, "DMI 'QEMU'")
    with pytest.raises(ConfigError, match=virtual.VIRTUAL_ENV):
        virtual.detect(cpuinfo=cpuinfo, dmi_dir=dmi_dir, environ={virtual.VIRTUAL_ENV: "maybe"})
    # The TDP override still wins over everything.
    monkeypatch.setenv(cpu_model.CPU_TDP_ENV, "40")
    model = cpu_model.resolve_power_model("AMD EPYC", cpuinfo=cpuinfo, dmi_dir=dmi_dir, environ={})
    assert model.power_w(1.0) == pytest.approx(cpu_model.cpu_power_w(40.0, 1.0))
    assert cpu_model.CPU_TDP_ENV in model.note


def test_ram_detail_says_a_vm_memory_is_its_own(tmp_path: Path) -> None:
    cpuinfo, dmi_dir = fake_machine(tmp_path, "AMD EPYC")
    (sensor,) = memory.probe(cpuinfo=cpuinfo, dmi_dir=dmi_dir, environ={}).sensors
    assert "virtual machine" in sensor.info.detail
    assert "the guest's own" in sensor.info.detail
    assert sensor.read().power_w == pytest.approx(psutil.virtual_memory().total / 2**30 * 0.3725)
    bare, bare_dmi = fake_machine(tmp_path / "bare", "AMD EPYC", hypervisor=False)
    (sensor,) = memory.probe(cpuinfo=bare, dmi_dir=bare_dmi, environ={}).sensors
    assert "virtual machine" not in sensor.info.detail


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
