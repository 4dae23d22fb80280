"""The NVIDIA GPU sensor, driven through a fake NVML module with the real signatures."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys

import pytest

from carbon_jupyter.errors import ConfigError, SensorError
from carbon_jupyter.sensors import nvml
from carbon_jupyter.sensors.base import Probe, Sensor
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
    for name in names:
        assert hasattr(real, name), f"pynvml has no {name}; the fake invents it"
        real_params = list(inspect.signature(getattr(real, name)).parameters)
        fake_params = list(inspect.signature(getattr(fake, name)).parameters)
        assert fake_params == real_params, f"{name}: fake {fake_params} != pynvml {real_params}"


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


def test_gpu_without_counter_reports_power_for_the_sampler_to_integrate() -> None:
    gpu = FakeGpu(name="Tesla P100-PCIE-16GB", energy_counter=False, power_w=lambda t: 50.0 + t)
    fake = FakeNvml([gpu])
    probe = nvml.probe("all", nvml=fake)
    [sensor] = probe.sensors
    assert sensor.info.method == "nvml-power"
    assert sensor.read().power_w == pytest.approx(50.0)
    fake.advance(20.0)
    reading = sensor.read()
    assert reading.counter_j is None
    assert reading.power_w == pytest.approx(70.0)
    close_all(probe)


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
