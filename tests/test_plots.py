"""Bokeh figures of runs: the numbers drawn are the runs' numbers."""

from __future__ import annotations

import math

import pytest
from bokeh.embed import components
from bokeh.models import ColumnDataSource, GlyphRenderer, HoverTool

from carbon_jupyter.errors import ConfigError
from carbon_jupyter.measure.tracker import build_run
from carbon_jupyter.model import DeviceEnergy, DeviceInfo, Intensity, Run, Sample
from carbon_jupyter.show.plots import (
    LivePlot,
    comparison_figure,
    power_column,
    power_figure,
    power_rows,
)

GPU = DeviceInfo("gpu:0", "gpu", "NVIDIA A100-SXM4-40GB", "nvml-energy")
CPU = DeviceInfo("cpu:0", "cpu", "Intel Xeon Gold 6248", "cpu-model")
RAM = DeviceInfo("ram", "ram", "memory 64 GB", "ram-model")
DEVICES = (GPU, CPU, RAM)
GERMANY = Intensity(380.0, "ember", 2024, 1.2, "argument", chosen_by="argument", key="DEU")


def make_samples(ticks: int, dt_s: float = 0.5) -> list[Sample]:
    """Samples as the sampler takes them: every device on every tick, energy running totals."""
    samples = []
    energy = {d.device_id: 0.0 for d in DEVICES}
    for k in range(1, ticks + 1):
        t_s = k * dt_s
        for i, device in enumerate(DEVICES):
            power_w = (250.0 if device is GPU else 40.0) + 10.0 * math.sin(k + i)
            energy[device.device_id] += power_w * dt_s
            samples.append(
                Sample(
                    t_s,
                    device.device_id,
                    power_w,
                    energy[device.device_id],
                    process_energy_j=0.5 * energy[device.device_id],
                )
            )
    return samples


def make_run(samples: list[Sample], *, attribution: str = "device", **fields: object) -> Run:
    last = {s.device_id: s for s in samples}
    devices = [
        DeviceEnergy(d, last[d.device_id].energy_j, last[d.device_id].process_energy_j)
        for d in DEVICES
    ]
    args: dict[str, object] = {
        "run_id": "0f1e2d3c-0000-4000-8000-000000000000",
        "label": "fine-tune",
        "phase": "train",
        "items": None,
        "status": "ok",
        "started_at": "2025-01-02T03:04:05.000+00:00",
        "ended_at": "2025-01-02T03:05:05.000+00:00",
        "duration_s": samples[-1].t_s,
        "attribution": attribution,
        "devices": devices,
        "intensity": GERMANY,
        "samples": samples,
    }
    args.update(fields)
    return build_run(**args)  # type: ignore[arg-type]


def source_of(layout: object, name: str = "carbon-samples") -> ColumnDataSource:
    source = layout.select_one({"name": name})  # type: ignore[attr-defined]
    assert isinstance(source, ColumnDataSource)
    return source


def lines(layout: object) -> dict[str, GlyphRenderer]:
    return {r.name: r for r in layout.select({"type": GlyphRenderer}) if r.name}  # type: ignore[attr-defined]


# -- the power figure ---------------------------------------------------------------------
def test_power_lines_are_the_samples_power_per_device() -> None:
    samples = make_samples(12)
    layout = power_figure(DEVICES, samples, intensity=GERMANY, title="fine-tune")
    data = source_of(layout).data
    for i, device in enumerate(DEVICES):
        expected = [s.power_w for s in samples if s.device_id == device.device_id]
        assert list(data[power_column(i)][1:]) == pytest.approx(expected)
    assert list(data["t_s"]) == pytest.approx([0.0] + [0.5 * k for k in range(1, 13)])


@pytest.mark.parametrize("attribution", ["device", "process"])
def test_cumulative_co2_ends_at_the_runs_co2(attribution: str) -> None:
    samples = make_samples(20)
    run = make_run(samples, attribution=attribution)
    layout = power_figure(
        [d.device for d in run.devices],
        run.samples,
        intensity=run.intensity,
        attribution=run.attribution,
    )
    co2_g = list(source_of(layout).data["co2_g"])
    assert co2_g[0] == 0.0
    assert co2_g[-1] == pytest.approx(run.co2_g, rel=1e-9)
    assert co2_g == sorted(co2_g)


def test_estimates_are_dashed_and_say_so() -> None:
    layout = power_figure(DEVICES, make_samples(3), intensity=GERMANY)
    drawn = lines(layout)
    gpu = drawn["gpu:0 NVIDIA A100-SXM4-40GB (nvml-energy)"]
    cpu = drawn["cpu:0 Intel Xeon Gold 6248 (cpu-model, estimate)"]
    assert gpu.glyph.line_dash == []
    assert cpu.glyph.line_dash != []
    legend_labels = [item.label.value for p in layout.children for item in p.legend[0].items]
    assert "ram memory 64 GB (ram-model, estimate)" in legend_labels
    assert "CO2e (includes estimates)" in legend_labels


def test_hover_tools_give_units() -> None:
    layout = power_figure(DEVICES, make_samples(3), intensity=GERMANY)
    tips = [value for h in layout.select({"type": HoverTool}) for _, value in h.tooltips]
    assert any(value.endswith(" W") for value in tips)
    assert any(value.endswith(" g") for value in tips)
    assert any(value.endswith(" Wh") for value in tips)
    assert any(value.endswith(" s") for value in tips)


def test_long_runs_are_thinned_without_losing_energy() -> None:
    samples = make_samples(5000, dt_s=0.05)
    run = make_run(samples)
    layout = power_figure(DEVICES, samples, intensity=GERMANY, max_points=500)
    data = source_of(layout).data
    assert len(data["t_s"]) <= 501
    assert data["t_s"][-1] == pytest.approx(samples[-1].t_s)
    assert data["co2_g"][-1] == pytest.approx(run.co2_g, rel=1e-9)
    gpu_power = [p for p in data[power_column(0)] if not math.isnan(p)]
    # Each point is the mean of its bucket: the +-10 W ripple averages out.
    assert max(abs(p - 250.0) for p in gpu_power) < 3.0


def test_the_rows_alone_are_what_the_figure_draws() -> None:
    samples = make_samples(40)
    rows = power_rows(DEVICES, samples, intensity=GERMANY, max_points=10)
    drawn = source_of(power_figure(DEVICES, samples, intensity=GERMANY, max_points=10)).data
    assert set(rows) == set(drawn)
    for name, values in rows.items():
        assert list(values) == pytest.approx(list(drawn[name]), nan_ok=True)


def test_lines_carry_no_glyphs_for_selection_or_muting() -> None:
    """Nothing selects and legends hide: each saved plot is smaller without them."""
    for renderer in lines(power_figure(DEVICES, make_samples(3), intensity=GERMANY)).values():
        assert renderer.nonselection_glyph == "auto" and renderer.muted_glyph == "auto"


def test_the_figure_embeds_as_html() -> None:
    script, div = components(power_figure(DEVICES, make_samples(4), intensity=GERMANY))
    assert "data-root-id" in div
    assert "Bokeh" in script


# -- the live plot ------------------------------------------------------------------------
def test_live_plot_appends_only_new_points() -> None:
    samples = make_samples(10)
    live = LivePlot(DEVICES, intensity=GERMANY)
    assert live.stream(samples[:12]) == 4
    assert live.stream(samples[12:]) == 6
    assert live.stream([]) == 0
    static = source_of(power_figure(DEVICES, samples, intensity=GERMANY)).data
    streamed = live.source.data
    assert list(streamed["t_s"]) == pytest.approx(list(static["t_s"]))
    assert list(streamed["co2_g"]) == pytest.approx(list(static["co2_g"]))
    assert list(streamed[power_column(0)][1:]) == pytest.approx(list(static[power_column(0)][1:]))


def test_live_plot_keeps_a_rolling_window_and_thins_long_runs() -> None:
    samples = make_samples(40)
    run = make_run(samples)
    live = LivePlot(DEVICES, intensity=GERMANY, rollover=8)
    ticks = [samples[i : i + 3] for i in range(0, len(samples), 3)]
    for tick in ticks:
        live.stream(tick)
    data = live.source.data
    assert len(data["t_s"]) == 8
    assert live.stride > 1
    assert list(data["t_s"]) == sorted(data["t_s"])
    assert data["t_s"][-1] == pytest.approx(samples[-1].t_s)
    assert data["co2_g"][-1] == pytest.approx(run.co2_g, rel=1e-9)


def test_live_plot_builds_its_figure_only_when_asked() -> None:
    live = LivePlot(DEVICES, intensity=GERMANY, title="fine-tune")
    assert "layout" not in vars(live)  # a notebook's live view fills a serialized figure instead
    assert source_of(live.layout) is live.source
    assert live.layout.children[0].title.text == "fine-tune: power"


def test_live_plot_leaves_gaps_for_missing_power() -> None:
    live = LivePlot([GPU], intensity=GERMANY)
    live.stream([Sample(1.0, "gpu:0", None, 10.0), Sample(2.0, "gpu:0", 200.0, 210.0)])
    powers = list(live.source.data[power_column(0)])
    assert math.isnan(powers[1]) and powers[2] == 200.0


# -- comparison ---------------------------------------------------------------------------
def comparison_runs() -> list[Run]:
    base = make_samples(4)
    runs = []
    for n, (label, items) in enumerate([("train", None), ("train", None), ("serve", 100)]):
        scaled = [
            Sample(s.t_s * (n + 1), s.device_id, s.power_w, s.energy_j * (n + 1)) for s in base
        ]
        runs.append(
            make_run(
                scaled,
                run_id=f"{n}0000000-0000-4000-8000-000000000000",
                label=label,
                items=items,
                phase="inference" if items else "train",
                started_at=f"2025-01-0{n + 1}T00:00:00.000+00:00",
            )
        )
    return runs


def test_comparison_bars_are_the_runs_energy_in_wh() -> None:
    runs = comparison_runs()
    layout = comparison_figure(runs, by="run")
    data = source_of(layout, "carbon-groups").data
    assert data["energy_wh"] == pytest.approx([r.energy_j / 3600 for r in runs])
    assert data["gpu_wh"] == pytest.approx([r.gpu_energy_j / 3600 for r in runs])
    assert data["co2_g"] == pytest.approx([r.co2_g for r in runs])
    assert data["duration_s"] == pytest.approx([r.duration_s for r in runs])
    per_run = source_of(layout, "carbon-runs").data
    assert per_run["energy_wh"] == pytest.approx([r.energy_j / 3600 for r in runs])


def test_comparison_by_label_shows_means_and_counts() -> None:
    runs = comparison_runs()
    data = source_of(comparison_figure(runs, by="label"), "carbon-groups").data
    assert data["factor"] == ["train (n=2)", "serve (n=1)"]
    assert data["count"] == [2, 1]
    assert data["energy_wh"][0] == pytest.approx((runs[0].energy_j + runs[1].energy_j) / 7200)
    assert data["status"][0] == "ok x2"
    assert "cpu-model (estimated)" in data["methods"][0]
    assert "380 gCO2e/kWh (DEU)" in data["intensity"][0]


def test_comparison_by_phase_and_per_item() -> None:
    runs = comparison_runs()
    layout = comparison_figure(runs, by="phase")
    assert source_of(layout, "carbon-groups").data["factor"] == ["train (n=2)", "inference (n=1)"]
    items = source_of(layout, "carbon-items").data
    assert items["energy_per_item_j"] == pytest.approx([runs[2].energy_j / 100])
    assert items["co2_per_item_g"] == pytest.approx([runs[2].co2_g / 100])


def test_comparison_stacks_components_and_has_hover_details() -> None:
    layout = comparison_figure(comparison_runs())
    energy = layout.select_one({"name": "carbon-bars-cpu_wh"})
    stacked = [r for r in energy.renderers if isinstance(r, GlyphRenderer)]
    assert len(stacked) == 3
    hovers = layout.select({"type": HoverTool})
    fields = {value for h in hovers for _, value in h.tooltips}
    assert {"@started_at", "@status", "@methods", "@intensity"} <= fields
    script, _ = components(layout)
    assert "carbon-groups" in script


def test_comparison_needs_runs() -> None:
    with pytest.raises(ValueError, match="no runs to compare"):
        comparison_figure([])
    with pytest.raises(ConfigError, match="label, phase, run"):
        comparison_figure(comparison_runs(), by="colour")
