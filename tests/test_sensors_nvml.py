"""The NVIDIA GPU sensor, driven through a fake NVML module with the real signatures."""

from __future__ import annotations

import ctypes
import inspect
import os
import subprocess
import sys

import pytest

from carbon_jupyter.errors import ConfigError, SensorError
from carbon_jupyter.sensors import nvml, nvml_samples
from carbon_jupyter.sensors.base import (
    Probe,
    Reading,
    Sensor,
    max_power_w,
    poll_period_s,
    read_energy,
)
from tests import fake_nvml
from tests.fake_nvml import (
    CONSTANTS,
    NVML_ERROR_DRIVER_NOT_LOADED,
    NVML_ERROR_GPU_IS_LOST,
    NVML_ERROR_LIBRARY_NOT_FOUND,
    FakeGpu,
    FakeNvml,
    api_functions,
)

A100 = "NVIDIA A100-SXM4-80GB"
P100 = "Tesla P100-PCIE-16GB"
UUIDS = (
    "GPU-11111111-aaaa-4000-8000-000000000000",
    "GPU-22222222-bbbb-4000-8000-000000000000",
    "GPU-33333333-cccc-4000-8000-000000000000",
)
#: Above Linux's PID_MAX_LIMIT (2**22): no process in any namespace has it.
HOST_ONLY_PID = 2**22 + 1


def three_gpus() -> FakeNvml:
    return FakeNvml(
        [FakeGpu(name=A100, uuid=u, power_w=100.0 + 10 * i) for i, u in enumerate(UUIDS)]
    )


def only_sensor(fake: FakeNvml) -> nvml.NvmlSensor:
    """The one GPU sensor a probe of ``fake`` makes."""
    [sensor] = nvml.probe("all", nvml=fake).sensors
    assert isinstance(sensor, nvml.NvmlSensor)
    return sensor


def ids(probe: Probe) -> list[str]:
    return [s.info.device_id for s in probe.sensors]


def close_all(probe: Probe) -> None:
    for sensor in probe.sensors:
        sensor.close()


# -- the fake stays true to pynvml ----------------------------------------------------


def test_fake_functions_have_the_real_pynvml_parameters() -> None:
    real = pytest.importorskip("pynvml")
    fake = FakeNvml()
    names = api_functions(fake)
    assert "nvmlDeviceGetProcessUtilization" in names
    assert "nvmlDeviceGetSamples" in names
    for name in names:
        assert hasattr(real, name), f"pynvml has no {name}; the fake invents it"
        real_params = list(inspect.signature(getattr(real, name)).parameters)
        fake_params = list(inspect.signature(getattr(fake, name)).parameters)
        assert fake_params == real_params, f"{name}: fake {fake_params} != pynvml {real_params}"


def test_fake_samples_are_laid_out_like_pynvmls() -> None:
    real = pytest.importorskip("pynvml")
    for name in ("c_nvmlSample_t", "c_nvmlValue_t"):
        real_fields = [(f[0], ctypes.sizeof(f[1])) for f in getattr(real, name)._fields_]
        fake_fields = [(f[0], ctypes.sizeof(f[1])) for f in getattr(fake_nvml, name)._fields_]
        assert fake_fields == real_fields, name


def test_fake_error_codes_are_the_real_ones() -> None:
    real = pytest.importorskip("pynvml")
    for name, value in CONSTANTS.items():
        assert getattr(real, name) == value, name
    assert real.NVMLError(NVML_ERROR_GPU_IS_LOST).value == NVML_ERROR_GPU_IS_LOST


# -- readings -------------------------------------------------------------------------


def test_gpu_with_energy_counter_is_measured_by_the_counter() -> None:
    fake = FakeNvml([FakeGpu(name=A100, uuid=UUIDS[0], power_w=300.0, power_limit_w=400.0)])
    fake.gpus[0].utilization_pct = 87
    fake.gpus[0].memory_used_b = 40 * 2**30
    probe = nvml.probe("all", nvml=fake)
    assert probe.problems == ()
    [sensor] = probe.sensors
    assert isinstance(sensor, Sensor)
    assert sensor.info.device_id == "gpu:0"
    assert sensor.info.kind == "gpu"
    assert sensor.info.name == A100
    assert sensor.info.uuid == UUIDS[0]
    assert sensor.info.method == "nvml-energy"
    assert sensor.info.power_limit_w == pytest.approx(400.0)

    start = sensor.read()
    fake.advance(10.0)
    end = sensor.read()
    assert start.counter_j is not None
    assert end.counter_j is not None
    assert end.counter_j - start.counter_j == pytest.approx(3000.0, abs=0.01)
    assert end.counter_range_j is None
    assert end.power_w == pytest.approx(300.0)
    assert end.utilization_pct == 87
    assert end.memory_used_b == 40 * 2**30
    close_all(probe)


def test_gpu_without_counter_integrates_the_drivers_power_samples() -> None:
    gpu = FakeGpu(name=P100, energy_counter=False, power_w=lambda t: 50.0 + t)
    fake = FakeNvml([gpu])
    sensor = only_sensor(fake)
    assert sensor.info.method == "nvml-power"
    assert sensor.info.detail == nvml_samples.DETAIL_SAMPLES
    # Read often enough that the driver's bounded buffer never drops a sample unseen.
    assert sensor.poll_period_s == nvml_samples.BUFFER_READ_PERIOD_S
    start = sensor.read()
    assert start.counter_j is not None
    assert start.power_w == pytest.approx(50.0)
    totals_j: list[float] = []
    for _ in range(10):  # read every 2 s, within the 2.4 s the buffer holds
        fake.advance(2.0)
        reading = sensor.read()
        assert reading.counter_j is not None
        assert reading.counter_range_j is None
        totals_j.append(reading.counter_j)
    # Linear power: the driver's samples integrate to the exact energy, 50 W + 1 W/s for 20 s.
    assert totals_j[-1] - start.counter_j == pytest.approx(1200.0)
    assert reading.power_w == pytest.approx(70.0)
    sensor.close()


def test_gpu_without_counter_or_sample_buffer_asks_to_be_polled() -> None:
    gpu = FakeGpu(name=P100, energy_counter=False, power_samples=False, power_w=lambda t: 50.0 + t)
    fake = FakeNvml([gpu])
    sensor = only_sensor(fake)
    assert sensor.info.method == "nvml-power"
    assert sensor.info.detail == "power polled every 0.05 s and integrated by trapezoid"
    assert sensor.poll_period_s == pytest.approx(0.05)
    assert poll_period_s(sensor) == pytest.approx(0.05)
    assert sensor.read().power_w == pytest.approx(50.0)
    fake.advance(20.0)
    reading = sensor.read()
    assert reading.counter_j is None
    assert reading.power_w == pytest.approx(70.0)
    sensor.close()


def test_polled_gpus_cheap_read_is_one_power_query() -> None:
    gpu = FakeGpu(name=P100, energy_counter=False, power_samples=False, power_w=120.0)
    fake = FakeNvml([gpu])
    sensor = only_sensor(fake)
    fake.gpus[0].utilization_pct = 50
    before = len(fake.calls)
    reading = read_energy(sensor)
    assert reading.power_w == pytest.approx(120.0)
    assert reading == Reading(power_w=reading.power_w)
    assert fake.calls[before:] == ["nvmlDeviceGetPowerUsage"]
    sensor.close()


def test_counter_gpus_cheap_read_is_the_counter_alone() -> None:
    fake = FakeNvml([FakeGpu(name=A100, power_w=300.0)])
    sensor = only_sensor(fake)
    fake.advance(1.0)
    before = len(fake.calls)
    reading = read_energy(sensor)
    assert reading.counter_j == pytest.approx(300.0)
    assert reading == Reading(counter_j=reading.counter_j)
    assert fake.calls[before:] == ["nvmlDeviceGetTotalEnergyConsumption"]
    assert sensor.poll_period_s is None
    sensor.close()


def test_sampled_gpus_cheap_read_is_the_sample_total_alone() -> None:
    fake = FakeNvml([FakeGpu(name=P100, energy_counter=False, power_w=200.0)])
    sensor = only_sensor(fake)
    first = read_energy(sensor)
    fake.advance(1.0)
    before = len(fake.calls)
    second = read_energy(sensor)
    assert fake.calls[before:] == ["nvmlDeviceGetSamples"]
    assert (second.utilization_pct, second.process_share, second.memory_used_b) == (None,) * 3
    assert first.counter_j is not None and second.counter_j is not None
    assert second.counter_j - first.counter_j == pytest.approx(200.0)
    assert second.power_w == pytest.approx(200.0)
    sensor.close()


@pytest.mark.parametrize(("limit_w", "expected_w"), [(400.0, 600.0), (250.0, 375.0), (None, None)])
@pytest.mark.parametrize("energy_counter", [True, False])
def test_every_gpu_declares_a_plausible_maximum_from_its_power_limit(
    limit_w: float | None, expected_w: float | None, energy_counter: bool
) -> None:
    gpu = FakeGpu(name=A100, energy_counter=energy_counter, power_limit_w=limit_w)
    sensor = only_sensor(FakeNvml([gpu]))
    assert max_power_w(sensor) == (pytest.approx(expected_w) if expected_w else None)
    sensor.close()


def test_an_empty_sample_buffer_at_probe_means_polling() -> None:
    gpu = FakeGpu(name=P100, energy_counter=False, sample_buffer_len=0)
    sensor = only_sensor(FakeNvml([gpu]))
    assert sensor.poll_period_s == pytest.approx(0.05)
    assert "polled" in sensor.info.detail
    assert sensor.read().counter_j is None
    sensor.close()


def test_a_gpu_lost_while_its_samples_are_read_raises_sensor_error() -> None:
    fake = FakeNvml([FakeGpu(name=P100, energy_counter=False)])
    sensor = only_sensor(fake)
    fake.advance(1.0)
    fake.break_gpu(0, NVML_ERROR_GPU_IS_LOST, "nvmlDeviceGetSamples")
    for read in (sensor.read, sensor.read_energy):
        with pytest.raises(SensorError, match=r"power samples of GPU 0 \(Tesla P100.*lost"):
            read()
    sensor.close()
    with pytest.raises(SensorError, match="closed"):
        sensor.read_energy()


def test_gpu_with_neither_counter_nor_power_is_left_out_with_a_reason() -> None:
    fake = FakeNvml([FakeGpu(name="GeForce GT 710", energy_counter=False, power_reading=False)])
    probe = nvml.probe("all", nvml=fake)
    assert probe.sensors == ()
    [problem] = probe.problems
    assert "GPU 0 (GeForce GT 710)" in problem
    assert "not measured" in problem
    assert not fake.initialized


def test_an_nvml_error_mid_run_raises_sensor_error_naming_the_gpu_and_the_fix() -> None:
    fake = FakeNvml([FakeGpu(name=A100, uuid=UUIDS[0], power_w=250.0)])
    [sensor] = nvml.probe("all", nvml=fake).sensors
    sensor.read()
    fake.advance(1.0)
    fake.break_gpu(0, NVML_ERROR_GPU_IS_LOST)
    with pytest.raises(SensorError) as caught:
        sensor.read()
    message = str(caught.value)
    assert f"GPU 0 ({A100})" in message
    assert "lost" in message
    assert "reset" in message
    sensor.close()
    assert not fake.initialized


def test_a_figure_the_gpu_does_not_offer_is_none_not_an_error() -> None:
    fake = FakeNvml([FakeGpu(name=A100, power_w=200.0)])
    [sensor] = nvml.probe("all", nvml=fake).sensors
    fake.break_gpu(0, fake.NVML_ERROR_NOT_SUPPORTED, "nvmlDeviceGetUtilizationRates")
    reading = sensor.read()
    assert reading.utilization_pct is None
    assert reading.counter_j is not None
    sensor.close()


def test_closing_every_sensor_shuts_nvml_down_once() -> None:
    fake = three_gpus()
    probe = nvml.probe("all", nvml=fake)
    assert len(probe.sensors) == 3
    assert fake.init_count == 1
    probe.sensors[0].close()
    probe.sensors[0].close()
    probe.sensors[1].close()
    assert fake.initialized
    probe.sensors[2].close()
    assert fake.shutdown_count == 1
    assert not fake.initialized
    with pytest.raises(SensorError, match="closed"):
        probe.sensors[0].read()


# -- which GPUs -------------------------------------------------------------------------


def test_without_cuda_visible_devices_every_gpu_is_measured() -> None:
    probe = nvml.probe(nvml=three_gpus())
    assert ids(probe) == ["gpu:0", "gpu:1", "gpu:2"]
    close_all(probe)


def test_cuda_visible_devices_by_index(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,0")
    probe = nvml.probe(nvml=three_gpus())
    assert ids(probe) == ["gpu:2", "gpu:0"]
    assert probe.problems == ()
    close_all(probe)


def test_cuda_visible_devices_by_uuid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", UUIDS[1])
    probe = nvml.probe(nvml=three_gpus())
    assert ids(probe) == ["gpu:1"]
    assert probe.sensors[0].info.uuid == UUIDS[1]
    close_all(probe)


@pytest.mark.parametrize("prefix", ["GPU-3333", "33333333-cc", "gpu-33333333"])
def test_cuda_visible_devices_by_uuid_prefix(monkeypatch: pytest.MonkeyPatch, prefix: str) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", prefix)
    probe = nvml.probe(nvml=three_gpus())
    assert ids(probe) == ["gpu:2"]
    close_all(probe)


@pytest.mark.parametrize("value", ["", "-1", "NoDevFiles"])
def test_cuda_visible_devices_that_hides_every_gpu(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", value)
    fake = three_gpus()
    probe = nvml.probe(nvml=fake)
    assert probe.sensors == ()
    [problem] = probe.problems
    assert "CUDA_VISIBLE_DEVICES" in problem
    assert "--gpus all" in problem
    assert fake.init_count == 0


def test_cuda_visible_devices_stops_at_an_entry_that_names_no_gpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,7,0")
    probe = nvml.probe(nvml=three_gpus())
    assert ids(probe) == ["gpu:1"]
    [problem] = probe.problems
    assert "no GPU 7" in problem
    assert "0, 1, 2" in problem
    close_all(probe)


def test_ambiguous_uuid_prefix_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-")
    probe = nvml.probe(nvml=three_gpus())
    assert probe.sensors == ()
    assert "several GPU UUIDs" in probe.problems[0]


def test_gpus_all_overrides_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    probe = nvml.probe("all", nvml=three_gpus())
    assert ids(probe) == ["gpu:0", "gpu:1", "gpu:2"]
    close_all(probe)


@pytest.mark.parametrize("gpus", ["0,2", [0, 2], ["0", UUIDS[2][:8]], (2, 0, 2)])
def test_gpus_as_a_list_of_indices_or_uuids(
    monkeypatch: pytest.MonkeyPatch, gpus: str | list[int | str]
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    probe = nvml.probe(gpus, nvml=three_gpus())
    assert sorted(ids(probe)) == ["gpu:0", "gpu:2"]
    close_all(probe)


def test_an_index_that_does_not_exist_is_a_config_error_naming_the_valid_ones() -> None:
    fake = three_gpus()
    with pytest.raises(ConfigError) as caught:
        nvml.probe([0, 5], nvml=fake)
    message = str(caught.value)
    assert "no GPU 5" in message
    assert "0, 1, 2" in message
    assert "'all'" in message
    assert not fake.initialized


def test_an_unknown_uuid_argument_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="GPU-ffff"):
        nvml.probe("GPU-ffff", nvml=three_gpus())


def test_a_mig_instance_is_measured_through_its_parent_gpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mig = "MIG-9d0c6b1e-1111-5000-9000-000000000000"
    fake = FakeNvml(
        [
            FakeGpu(name=A100, uuid=UUIDS[0]),
            FakeGpu(name=A100, uuid=UUIDS[1], power_w=150.0, mig_uuids=(mig,)),
        ]
    )
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", mig)
    probe = nvml.probe(nvml=fake)
    [sensor] = probe.sensors
    assert sensor.info.device_id == "gpu:1"
    assert sensor.info.uuid == mig
    assert sensor.info.name == f"{A100} MIG 1g.10gb"
    assert sensor.info.method == "nvml-energy"
    assert "whole of GPU 1" in sensor.info.detail
    first = sensor.read()
    fake.advance(2.0)
    second = sensor.read()
    assert first.counter_j is not None
    assert second.counter_j is not None
    assert second.counter_j - first.counter_j == pytest.approx(300.0, abs=0.01)
    sensor.close()


# -- NVML missing ---------------------------------------------------------------------------


@pytest.mark.parametrize("code", [NVML_ERROR_LIBRARY_NOT_FOUND, NVML_ERROR_DRIVER_NOT_LOADED])
def test_no_driver_means_no_sensors_and_one_problem(code: int) -> None:
    probe = nvml.probe(nvml=FakeNvml(init_error=code))
    assert probe.sensors == ()
    assert probe.problems == (nvml.NO_GPU_PROBLEM,)
    assert "GPU energy is not measured" in probe.problems[0]


def test_no_gpus_at_all_is_said_once() -> None:
    fake = FakeNvml([])
    probe = nvml.probe(nvml=fake)
    assert probe.sensors == ()
    assert len(probe.problems) == 1
    assert "no NVIDIA GPU" in probe.problems[0]
    assert not fake.initialized


def test_missing_pynvml_package_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    probe = nvml.probe()
    assert probe.sensors == ()
    [problem] = probe.problems
    assert "pip install nvidia-ml-py" in problem


def test_the_real_nvml_on_this_machine_never_raises() -> None:
    probe = nvml.probe("all")
    try:
        assert probe.sensors or probe.problems
        for sensor in probe.sensors:
            reading = sensor.read()
            assert reading.counter_j is not None or reading.power_w is not None
    finally:
        close_all(probe)


# -- the process's share ------------------------------------------------------------------


def test_process_share_is_our_sm_utilisation_over_everyones() -> None:
    fake = FakeNvml([FakeGpu(name=A100, power_w=300.0)])
    fake.gpus[0].utilization_pct = 80
    [sensor] = nvml.probe("all", nvml=fake).sensors
    fake.advance(0.5)
    fake.add_process_sample(0, os.getpid(), 60)
    fake.add_process_sample(0, 1, 20)  # another process this namespace can see
    fake.advance(0.5)
    assert sensor.read().process_share == pytest.approx(0.75)

    # Only samples newer than the last reading count.
    fake.add_process_sample(0, 1, 50)
    fake.advance(0.5)
    assert sensor.read().process_share == pytest.approx(0.0)
    sensor.close()


def test_process_share_counts_our_child_processes() -> None:
    fake = FakeNvml([FakeGpu(name=A100)])
    [sensor] = nvml.probe("all", nvml=fake).sensors
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        fake.advance(0.1)
        fake.add_process_sample(0, child.pid, 90)
        fake.add_process_sample(0, 1, 10)
        assert sensor.read().process_share == pytest.approx(0.9)
    finally:
        child.kill()
        child.wait()
        sensor.close()


def test_samples_from_before_the_probe_are_not_counted() -> None:
    fake = FakeNvml([FakeGpu(name=A100)])
    fake.gpus[0].utilization_pct = 0
    fake.advance(0.1)
    fake.add_process_sample(0, os.getpid(), 100)
    [sensor] = nvml.probe("all", nvml=fake).sensors
    fake.advance(1.0)
    # Nothing ran since the probe and the GPU is idle: nothing of it is ours.
    assert sensor.read().process_share == 0.0
    sensor.close()


def test_process_share_is_unknown_when_the_gpu_is_busy_but_no_process_is_reported() -> None:
    fake = FakeNvml([FakeGpu(name=A100)])
    fake.gpus[0].utilization_pct = 95
    [sensor] = nvml.probe("all", nvml=fake).sensors
    fake.advance(1.0)
    assert sensor.read().process_share is None
    sensor.close()


def test_process_share_is_unknown_when_only_host_pids_are_reported() -> None:
    """Inside a container NVML reports host PIDs; none of them is ours or visible to us."""
    fake = FakeNvml([FakeGpu(name=A100)])
    [sensor] = nvml.probe("all", nvml=fake).sensors
    fake.advance(0.1)
    fake.add_process_sample(0, HOST_ONLY_PID, 70)
    assert sensor.read().process_share is None
    sensor.close()


def test_process_share_is_unknown_where_the_driver_does_not_report_it() -> None:
    fake = FakeNvml([FakeGpu(name="NVIDIA GeForce RTX 3090", process_samples=None)])
    [sensor] = nvml.probe("all", nvml=fake).sensors
    fake.advance(1.0)
    reading = sensor.read()
    assert reading.process_share is None
    assert reading.counter_j is not None
    sensor.close()
