"""The replay sensor: a recorded power trace played against an injected clock."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import pytest

from carbon_jupyter.errors import ConfigError, SensorError
from carbon_jupyter.measure.integrate import integrate_power_j
from carbon_jupyter.sensors import replay
from carbon_jupyter.sensors.base import Sensor
from carbon_jupyter.sensors.replay import ReplaySensor, Trace, load_trace

ROOT = Path(__file__).resolve().parent.parent
TRACES_DIR = ROOT / "carbon_jupyter" / "data" / "traces"


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, t_s: float = 1000.0) -> None:
        self.t_s = t_s

    def __call__(self) -> float:
        return self.t_s


def triangle() -> Trace:
    """100 W -> 200 W -> 100 W over 20 s: 3000 J."""
    return Trace(
        name="triangle",
        device_name="Test GPU",
        t_s=(0.0, 10.0, 20.0),
        power_w=(100.0, 200.0, 100.0),
        utilization_pct=(0.0, 100.0, 0.0),
        memory_used_b=(0, 1000, 0),
    )


def counter(sensor: ReplaySensor) -> float:
    value = sensor.read().counter_j
    assert value is not None
    return value


# -- playback --------------------------------------------------------------------------


def test_power_is_interpolated_between_rows() -> None:
    clock = Clock()
    sensor = ReplaySensor(triangle(), clock=clock)
    first = sensor.read()
    assert first.power_w == pytest.approx(100.0)
    assert first.counter_j == 0.0
    clock.t_s += 5.0
    reading = sensor.read()
    assert reading.power_w == pytest.approx(150.0)
    assert reading.utilization_pct == pytest.approx(50.0)
    assert reading.memory_used_b == 500
    clock.t_s += 10.0
    assert sensor.read().power_w == pytest.approx(150.0)


def test_counter_is_the_exact_integral_of_the_trace() -> None:
    clock = Clock()
    sensor = ReplaySensor(triangle(), clock=clock)
    sensor.read()
    clock.t_s += 5.0
    assert counter(sensor) == pytest.approx(625.0)  # (100 + 150) / 2 * 5
    clock.t_s += 5.0
    assert counter(sensor) == pytest.approx(1500.0)
    clock.t_s += 10.0
    assert counter(sensor) == pytest.approx(3000.0)
    assert triangle().energy_j == pytest.approx(3000.0)


def test_a_run_through_a_builtin_trace_measures_the_trace_energy_whatever_the_reads() -> None:
    trace = load_trace("a100-train")
    clock = Clock()
    sensor = ReplaySensor(trace, clock=clock)
    start = counter(sensor)
    rng = random.Random(7)
    total_j = 0.0
    previous = start
    while clock.t_s - 1000.0 < trace.duration_s:
        clock.t_s = min(clock.t_s + rng.uniform(0.05, 3.0), 1000.0 + trace.duration_s)
        now = counter(sensor)
        assert now >= previous
        total_j += now - previous
        previous = now
    expected_j = integrate_power_j(zip(trace.t_s, trace.power_w, strict=True))
    assert total_j == pytest.approx(expected_j, rel=1e-12)
    assert trace.energy_j == pytest.approx(expected_j, rel=1e-12)


def test_the_trace_starts_at_the_first_reading_not_at_construction() -> None:
    clock = Clock()
    sensor = ReplaySensor(triangle(), clock=clock)
    clock.t_s += 50.0
    assert sensor.read().power_w == pytest.approx(100.0)
    clock.t_s += 10.0
    assert sensor.read().power_w == pytest.approx(200.0)


def test_looping_starts_the_trace_over() -> None:
    clock = Clock()
    trace = triangle()
    sensor = ReplaySensor(trace, clock=clock)
    sensor.read()
    clock.t_s += 2 * trace.duration_s + 5.0
    reading = sensor.read()
    assert reading.power_w == pytest.approx(trace.power_at(5.0))
    assert reading.counter_j == pytest.approx(2 * 3000.0 + 625.0)


def test_without_looping_the_last_power_holds() -> None:
    clock = Clock()
    sensor = ReplaySensor(triangle(), clock=clock, loop=False)
    sensor.read()
    clock.t_s += 30.0
    reading = sensor.read()
    assert reading.power_w == pytest.approx(100.0)
    assert reading.counter_j == pytest.approx(3000.0 + 100.0 * 10.0)


def test_speed_plays_faster_and_the_counter_follows_the_power_shown() -> None:
    clock = Clock()
    sensor = ReplaySensor(triangle(), clock=clock, speed=2.0)
    sensor.read()
    clock.t_s += 5.0
    assert sensor.read().power_w == pytest.approx(200.0)
    clock.t_s += 5.0
    assert counter(sensor) == pytest.approx(3000.0 / 2)


def test_bad_speed_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="speed"):
        ReplaySensor(triangle(), speed=0.0)


def test_sensor_describes_itself_as_a_replay() -> None:
    sensor = ReplaySensor(load_trace("t4-inference"), clock=Clock())
    assert isinstance(sensor, Sensor)
    assert sensor.info.method == "replay"
    assert sensor.info.device_id == "gpu:replay0"
    assert sensor.info.kind == "gpu"
    assert sensor.info.name == "Tesla T4"
    assert "not recorded on hardware" in sensor.info.detail


def test_a_closed_sensor_raises_sensor_error() -> None:
    sensor = ReplaySensor(triangle(), clock=Clock())
    sensor.close()
    sensor.close()
    with pytest.raises(SensorError, match="closed"):
        sensor.read()


# -- traces ---------------------------------------------------------------------------------


def test_builtin_traces_look_like_their_hardware() -> None:
    assert {"a100-train", "t4-inference"} <= set(replay.builtin_traces())
    a100 = load_trace("a100-train")
    assert a100.device_name == "NVIDIA A100-SXM4-80GB"
    assert a100.duration_s == pytest.approx(120.0)
    assert {round(b - a, 6) for a, b in zip(a100.t_s, a100.t_s[1:], strict=False)} == {0.5}
    assert 50.0 < min(a100.power_w) < 70.0  # idle
    assert max(a100.power_w) <= 400.0  # the SXM4 power limit
    assert a100.utilization_pct is not None
    assert a100.memory_used_b is not None
    assert max(a100.memory_used_b) <= 80 * 2**30
    t4 = load_trace("t4-inference")
    assert t4.device_name == "Tesla T4"
    assert max(t4.power_w) <= 70.0  # the T4's 70 W limit
    assert t4.duration_s == pytest.approx(60.0)


def test_builtin_traces_say_they_are_synthesised_and_stay_small() -> None:
    for path in TRACES_DIR.glob("*.csv"):
        text = path.read_text()
        assert "not recorded on hardware" in text, path.name
        assert path.stat().st_size < 50_000, path.name


def test_builtin_traces_are_what_the_generator_script_writes() -> None:
    script = ROOT / "benchmarks" / "make_traces.py"
    spec = importlib.util.spec_from_file_location("make_traces", script)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name in module.TRACES:
        assert (TRACES_DIR / f"{name}.csv").read_text() == module.render(name), name


def test_a_trace_file_of_your_own(tmp_path: Path) -> None:
    path = tmp_path / "my-run.csv"
    path.write_text(
        "# device: NVIDIA H100 80GB HBM3\n"
        "# description: a recorded run\n"
        "power_w,t_s,extra\n"
        "100,5.0,x\n"
        "300,6.0,y\n"
    )
    trace = load_trace(str(path))
    assert trace.name == "my-run"
    assert trace.device_name == "NVIDIA H100 80GB HBM3"
    assert trace.t_s == (0.0, 1.0)
    assert trace.energy_j == pytest.approx(200.0)
    assert trace.utilization_pct is None
    assert ReplaySensor(trace, clock=Clock()).read().utilization_pct is None
    assert load_trace(path).energy_j == pytest.approx(200.0)


def test_a_bad_number_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("t_s,power_w\n0,10\n1,ten\n")
    with pytest.raises(ConfigError, match=r"line 3: power_w is 'ten'"):
        load_trace(path)


def test_a_missing_column_names_the_header(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("# device: x\ntime,power_w\n0,10\n1,20\n")
    with pytest.raises(ConfigError, match=r"line 2.*lacks t_s"):
        load_trace(path)


def test_times_must_increase(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("t_s,power_w\n0,10\n2,20\n1,30\n")
    with pytest.raises(ConfigError, match="increase"):
        load_trace(path)


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no trace file"):
        load_trace(tmp_path / "nope.csv")


# -- probe ----------------------------------------------------------------------------------


def test_probe_without_the_variable_finds_nothing_and_complains_about_nothing() -> None:
    probe = replay.probe()
    assert probe.source == "replay"
    assert probe.sensors == ()
    assert probe.problems == ()


def test_probe_replays_the_named_trace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARBON_JUPYTER_REPLAY", "a100-train")
    probe = replay.probe()
    [sensor] = probe.sensors
    assert sensor.info.device_id == "gpu:replay0"
    assert sensor.info.method == "replay"
    assert sensor.info.name == "NVIDIA A100-SXM4-80GB"
    assert probe.problems == ()


def test_probe_replays_several_traces_and_paths(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "mine.csv"
    path.write_text("# device: My GPU\nt_s,power_w\n0,1\n1,2\n")
    monkeypatch.setenv("CARBON_JUPYTER_REPLAY", f"t4-inference, a100-train,{path}")
    probe = replay.probe()
    assert [s.info.device_id for s in probe.sensors] == [
        "gpu:replay0",
        "gpu:replay1",
        "gpu:replay2",
    ]
    assert [s.info.name for s in probe.sensors] == [
        "Tesla T4",
        "NVIDIA A100-SXM4-80GB",
        "My GPU",
    ]


def test_probe_with_an_unknown_name_lists_the_builtin_traces(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CARBON_JUPYTER_REPLAY", "h100-train")
    with pytest.raises(ConfigError) as caught:
        replay.probe()
    message = str(caught.value)
    assert "'h100-train'" in message
    assert "a100-train" in message
    assert "t4-inference" in message
