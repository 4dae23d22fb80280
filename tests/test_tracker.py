"""The Python API: track() as context manager and decorator, Tracker, sinks, errors."""

from __future__ import annotations

import time
from collections.abc import Sequence

import pytest

import carbon_jupyter as cj
from carbon_jupyter.errors import ConfigError, TrackingError
from carbon_jupyter.model import DeviceInfo, Run, Sample
from carbon_jupyter.sensors.base import Reading


class SteadySensor:
    """A counter device drawing ``power_w`` on the real monotonic clock."""

    def __init__(
        self,
        power_w: float,
        kind: str = "cpu",
        device_id: str = "cpu:0",
        method: str = "rapl",
        share: float | None = 0.5,
    ) -> None:
        self.info = DeviceInfo(device_id, kind, f"Steady {kind}", method)  # type: ignore[arg-type]
        self.power_w = power_w
        self.share = share
        self.t0 = time.monotonic()

    def read(self) -> Reading:
        return Reading(
            counter_j=(time.monotonic() - self.t0) * self.power_w, process_share=self.share
        )

    def close(self) -> None:
        pass


class ListSink:
    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def begin_run(self, run: Run) -> None:
        self.calls.append(("begin", run))

    def add_samples(self, run_id: str, samples: Sequence[Sample]) -> None:
        self.calls.append(("samples", list(samples)))

    def finish_run(self, run: Run) -> None:
        self.calls.append(("finish", run))


class BrokenSink(ListSink):
    def add_samples(self, run_id: str, samples: Sequence[Sample]) -> None:
        raise OSError("disk full")

    def finish_run(self, run: Run) -> None:
        raise OSError("disk full")


def sensors() -> list[SteadySensor]:
    return [
        SteadySensor(30.0),
        SteadySensor(200.0, "gpu", "gpu:0", "nvml-energy", share=None),
        SteadySensor(3.0, "ram", "ram", "ram-model", share=0.1),
    ]


def test_context_manager_records_energy_co2_and_methods() -> None:
    sink = ListSink()
    with cj.track(
        "block", phase="train", interval=0.05, intensity=400, pue=1.2, sensors=sensors(), sink=sink
    ) as handle:
        time.sleep(0.3)
    run = handle.run
    assert run is not None and run.status == "ok"
    assert run.duration_s == pytest.approx(0.3, abs=0.1)
    assert run.cpu_energy_j == pytest.approx(30.0 * run.duration_s, rel=0.05)
    assert run.gpu_energy_j == pytest.approx(200.0 * run.duration_s, rel=0.05)
    assert run.energy_j == pytest.approx(run.cpu_energy_j + run.gpu_energy_j + run.ram_energy_j)
    assert run.co2_g == pytest.approx(run.energy_j / 3.6e6 * 1.2 * 400)
    assert {d.device.device_id: d.method for d in run.devices} == {
        "cpu:0": "rapl",
        "gpu:0": "nvml-energy",
        "ram": "ram-model",
    }
    assert run.estimated  # the RAM figure is a model
    assert run.intensity.chosen_by == "argument"
    kinds = [c[0] for c in sink.calls]
    assert kinds[0] == "begin" and kinds[-1] == "finish"
    assert sink.calls[0][1].status == "running"  # type: ignore[union-attr]
    flushed = [s for kind, batch in sink.calls if kind == "samples" for s in batch]  # type: ignore[union-attr]
    assert len(flushed) == len(run.samples)  # every sample reached the sink, none twice
    assert "Wh" in repr(run) and "rapl" in repr(run)


def test_process_attribution_uses_the_process_share() -> None:
    with cj.track(
        interval=0.05, intensity=100, attribution="process", sensors=sensors(), sink=None
    ) as handle:
        time.sleep(0.2)
    run = handle.run
    assert run is not None
    cpu = next(d for d in run.devices if d.device.device_id == "cpu:0")
    assert cpu.process_energy_j == pytest.approx(cpu.energy_j * 0.5, rel=0.05)
    assert run.cpu_energy_j == pytest.approx(cpu.process_energy_j)
    # The GPU gave no process share: its device total stands in.
    assert run.gpu_energy_j == pytest.approx(run.devices[1].energy_j)


def test_exception_in_block_is_recorded_and_propagates_unchanged() -> None:
    sink = ListSink()
    error = ValueError("bad batch")
    with (
        pytest.raises(ValueError, match="bad batch") as caught,
        cj.track("fails", sensors=sensors(), sink=sink, interval=0.05, intensity=1) as handle,
    ):
        raise error
    assert caught.value is error
    run = handle.run
    assert run is not None and run.status == "error"
    assert run.error == "ValueError: bad batch"
    assert sink.calls[-1][0] == "finish"


def test_keyboard_interrupt_is_recorded_as_interrupted() -> None:
    with (
        pytest.raises(KeyboardInterrupt),
        cj.track(sensors=sensors(), sink=None, intensity=1) as handle,
    ):
        raise KeyboardInterrupt
    assert handle.run is not None and handle.run.status == "interrupted"


def test_decorator_tracks_each_call_and_keeps_the_return_value() -> None:
    @cj.track(
        phase="inference", items=8, sensors=sensors(), sink=None, intensity=100, interval=0.05
    )
    def predict(x: int) -> int:
        time.sleep(0.05)
        return x * 2

    assert predict(21) == 42
    run = predict.last_run  # type: ignore[attr-defined]
    assert run.label.endswith("predict") and run.items == 8
    assert run.energy_per_item_j == pytest.approx(run.energy_j / 8)
    assert run.co2_per_item_g == pytest.approx(run.co2_g / 8)


def test_failing_sink_does_not_stop_measuring(caplog: pytest.LogCaptureFixture) -> None:
    tracker = cj.Tracker("x", sensors=sensors(), sink=BrokenSink(), interval=0.05, intensity=1)
    tracker.start()
    time.sleep(1.2)  # long enough for a live flush to fail
    run = tracker.stop()
    assert run.status == "ok" and run.energy_j > 0
    assert sum("could not save run" in r.message for r in caplog.records) == 1


def test_bad_arguments_fail_before_the_block_runs() -> None:
    with pytest.raises(ConfigError, match="phase 'training' is not one of"):
        cj.track(phase="training")
    with pytest.raises(ConfigError, match="attribution"):
        cj.track(attribution="kernel")
    with pytest.raises(ConfigError, match=r"0\.05 to 60"):
        cj.track(interval=0.001)
    with pytest.raises(ConfigError, match="items"):
        cj.track(items=0)


def test_tracker_misuse_is_a_clear_error() -> None:
    tracker = cj.Tracker(sensors=[], sink=None, intensity=1)
    with pytest.raises(TrackingError, match="before start"):
        tracker.stop()
    tracker.start()
    with pytest.raises(TrackingError, match="already started"):
        tracker.start()
    first = tracker.stop()
    assert tracker.stop() is first


def test_top_level_readers_see_the_stored_run() -> None:
    with cj.track("stored", interval=0.05, intensity=100, sensors=sensors()) as handle:
        time.sleep(0.2)
    run = handle.run
    assert run is not None
    (stored,) = cj.runs(label="stored")
    assert stored.id == run.id and stored.energy_j == pytest.approx(run.energy_j)
    assert len(cj.samples(run.id[:8])) == len(run.samples)
    (row,) = cj.totals(by="label")
    assert row["label"] == "stored" and row["count"] == 1
    assert row["co2_g"] == pytest.approx(run.co2_g)
