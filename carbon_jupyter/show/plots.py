"""Bokeh figures of runs and their samples: pure functions, no I/O and no display.

* :func:`power_figure` - the power of each device over the run (W) above the
  cumulative CO2e (g), sharing the time axis (seconds since the start). The
  legend names each device and how its figures were obtained; devices whose
  figures come from a model are drawn dashed and marked "estimate".
* :func:`power_rows` - the same figure's data alone (what
  :mod:`carbon_jupyter.show.embed` fills into a figure serialized once), and
  :func:`power_layout` the figure around a given source.
* :class:`LivePlot` - the data of the same figure, fed while a run is live:
  :meth:`LivePlot.stream` appends only the new points, keeps a rolling window
  and thins long runs (every k-th tick, k doubling as the run grows), so an
  hour-long run stays light in the browser. The store keeps every sample.
* :func:`comparison_figure` - energy (Wh, stacked cpu/gpu/ram), CO2e (g) and
  duration (s) of several runs side by side, grouped by label, phase or per
  run; energy against duration; energy per item for runs with items.
* :mod:`carbon_jupyter.show.plots_totals` - energy or CO2e per day, stacked by user or label.

Data layout, for readers of the figures: the power figure has one
ColumnDataSource named ``carbon-samples`` with columns ``t_s``, ``co2_g``,
``energy_wh`` and ``power_w_<i>`` for the i-th device; the comparison has a
source named ``carbon-groups`` (one row per group) and ``carbon-runs`` (one
row per run).

Other modules import this one lazily, so that importing carbon_jupyter does
not import Bokeh.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import groupby
from typing import Any

from bokeh.layouts import column, row
from bokeh.models import ColumnDataSource, DataRange1d, FactorRange, HoverTool
from bokeh.palettes import Category10_10
from bokeh.plotting import figure

from carbon_jupyter.errors import ConfigError
from carbon_jupyter.model import (
    J_PER_KWH,
    MODEL_METHODS,
    DeviceInfo,
    Intensity,
    Run,
    Sample,
    method_quality,
)

J_PER_WH = 3600.0
#: Points per device kept by a live plot before the oldest roll off.
LIVE_ROLLOVER = 3600
#: Most ticks drawn by a static power figure; longer runs are averaged into buckets.
STATIC_MAX_POINTS = 1000
SOURCE_NAME = "carbon-samples"
TOOLS = "pan,wheel_zoom,box_zoom,reset,save"
#: Bars over named groups only need saving (their hover is added to each).
BAR_TOOLS = "save"
COMPONENT_COLORS = {"cpu": "#1f77b4", "gpu": "#2ca02c", "ram": "#ff7f0e"}
GROUPINGS = ("label", "phase", "run")


def power_column(index: int) -> str:
    """The source column holding the power of the ``index``-th device."""
    return f"power_w_{index}"


def device_label(device: DeviceInfo) -> str:
    """``gpu:0 NVIDIA A100 (nvml-energy)``; modelled devices add ``estimate``."""
    note = ", estimate" if device.method in MODEL_METHODS else ""
    return f"{device.device_id} {device.name} ({device.method}{note})"


# -- samples to rows ----------------------------------------------------------------------
class _Rows:
    """Turns ticks of samples into plot rows: per-device power and cumulative CO2e.

    Ticks are averaged in buckets of ``stride`` ticks (mean power, the time and
    energy of the bucket's last tick), so thinning never loses energy.
    """

    def __init__(self, devices: Sequence[DeviceInfo], intensity: Intensity, attribution: str):
        self.columns = {d.device_id: power_column(i) for i, d in enumerate(devices)}
        self.g_per_j = intensity.intensity_g_per_kwh * intensity.pue / J_PER_KWH
        self.attribution = attribution
        self.latest_j: dict[str, float] = {}
        self._power_sum: dict[str, float] = {}
        self._power_count: dict[str, int] = {}
        #: Ticks added since the last row was flushed.
        self.ticks_in_bucket = 0
        self._last_t_s: float | None = None

    def empty(self) -> dict[str, list[float]]:
        return {name: [] for name in ("t_s", "co2_g", "energy_wh", *self.columns.values())}

    def origin(self) -> dict[str, list[float]]:
        """The first row: nothing drawn yet at time zero (power unknown until the first tick)."""
        return {name: [math.nan if name.startswith("power_w_") else 0.0] for name in self.empty()}

    def add_tick(self, tick: Sequence[Sample]) -> None:
        for s in tick:
            energy_j = s.energy_j
            if self.attribution == "process" and s.process_energy_j is not None:
                energy_j = s.process_energy_j
            self.latest_j[s.device_id] = energy_j
            if s.power_w is not None and math.isfinite(s.power_w):
                self._power_sum[s.device_id] = self._power_sum.get(s.device_id, 0.0) + s.power_w
                self._power_count[s.device_id] = self._power_count.get(s.device_id, 0) + 1
        self.ticks_in_bucket += 1
        self._last_t_s = tick[0].t_s

    def flush(self, rows: dict[str, list[float]]) -> None:
        """Append the current bucket as one row to ``rows``."""
        if self._last_t_s is None or self.ticks_in_bucket == 0:
            return
        energy_j = sum(self.latest_j.values())
        rows["t_s"].append(self._last_t_s)
        rows["energy_wh"].append(energy_j / J_PER_WH)
        rows["co2_g"].append(energy_j * self.g_per_j)
        for device_id, name in self.columns.items():
            count = self._power_count.get(device_id, 0)
            rows[name].append(self._power_sum[device_id] / count if count else math.nan)
        self._power_sum.clear()
        self._power_count.clear()
        self.ticks_in_bucket = 0


def _ticks(samples: Iterable[Sample]) -> Iterable[list[Sample]]:
    """Consecutive samples with the same ``t_s`` (the sampler reads all devices per tick)."""
    for _, tick in groupby(samples, key=lambda s: s.t_s):
        yield list(tick)


# -- the power figure ---------------------------------------------------------------------
def _figure(name: str, title: str, y_label: str, **kwargs: Any) -> Any:
    """A figure with the shared tools, a y axis from zero, and ``name`` for lookups."""
    kwargs.setdefault("y_range", DataRange1d(start=0))
    kwargs.setdefault("tools", TOOLS)
    return figure(name=name, title=title, y_axis_label=y_label, **kwargs)


def _plain(renderers: Iterable[Any]) -> None:
    """No glyphs of their own for unselected or muted drawing: nothing is selected or muted.

    (Nothing selects, and legends hide rather than mute; each saved plot is smaller.)
    """
    for renderer in renderers:
        renderer.nonselection_glyph = "auto"
        renderer.muted_glyph = "auto"


def _line(
    p: Any, source: ColumnDataSource, y: str, tips: list[tuple[str, str]], **style: Any
) -> None:
    """A line of ``y`` against time with its own hover (``tips`` carry the units)."""
    line = p.line("t_s", y, source=source, line_width=2, **style)
    _plain([line])
    time_tip = ("time", "@t_s{0.0} s")
    p.add_tools(
        HoverTool(renderers=[line], mode="vline", tooltips=[*tips[:1], time_tip, *tips[1:]])
    )
    p.legend.location = "top_left"
    p.legend.background_fill_alpha = 0.7


def power_title(title: str) -> str:
    """The power figure's heading for a run called ``title`` (may be empty)."""
    return f"{title}: power" if title else "Power per device"


def power_layout(
    devices: Sequence[DeviceInfo],
    source: ColumnDataSource,
    intensity: Intensity,
    attribution: str,
    heading: str,
) -> Any:
    """The power and cumulative CO2e figures drawing ``source``; ``heading`` tops the power one.

    ``source`` has the columns of :func:`power_rows` for ``devices``.
    """
    wide: dict[str, Any] = {"sizing_mode": "stretch_width", "x_axis_label": "time since start (s)"}
    power = _figure("carbon-power", heading, "power (W)", height=260, **wide)
    for i, device in enumerate(devices):
        label = device_label(device)
        dash = "dashed" if device.method in MODEL_METHODS else "solid"
        tips = [("device", "$name"), ("power", f"@{power_column(i)}{{0.0}} W")]
        tips.append(("obtained", method_quality(device.method)))
        style = {"color": Category10_10[i % 10], "line_dash": dash, "legend_label": label}
        _line(power, source, power_column(i), tips, name=label, **style)
    power.legend.click_policy = "hide"

    share = "process share" if attribution == "process" else "device totals"
    factor = f"{intensity.intensity_g_per_kwh:g} gCO2e/kWh ({intensity.key})"
    co2_title = f"Cumulative CO2e ({share}) at {factor}, PUE {intensity.pue:g}"
    co2 = _figure("carbon-co2", co2_title, "CO2e (g)", height=200, x_range=power.x_range, **wide)
    estimated = any(d.method in MODEL_METHODS for d in devices)
    tips = [("CO2e", "@co2_g{0.[000000]} g"), ("energy", "@energy_wh{0.[000000]} Wh")]
    label = "CO2e (includes estimates)" if estimated else "CO2e"
    dash = "dashed" if estimated else "solid"
    _line(co2, source, "co2_g", tips, color="#444444", line_dash=dash, legend_label=label)
    return column(power, co2, sizing_mode="stretch_width")


def power_rows(
    devices: Sequence[DeviceInfo],
    samples: Sequence[Sample],
    *,
    intensity: Intensity,
    attribution: str = "device",
    max_points: int = STATIC_MAX_POINTS,
) -> dict[str, Any]:
    """The columns :func:`power_figure` draws, as float64 arrays (see the module docs).

    ``samples`` are a run's samples in the order taken (``run.samples``); runs
    with more than ``max_points`` ticks are averaged into buckets.
    """
    import numpy as np

    rows = _Rows(devices, intensity, attribution)
    data = rows.origin()
    ticks = list(_ticks(samples))
    stride = max(1, math.ceil(len(ticks) / max(1, max_points)))
    for tick in ticks:
        rows.add_tick(tick)
        if rows.ticks_in_bucket >= stride:
            rows.flush(data)
    rows.flush(data)
    return {name: np.asarray(values, dtype=float) for name, values in data.items()}


def power_figure(
    devices: Sequence[DeviceInfo],
    samples: Sequence[Sample],
    *,
    intensity: Intensity,
    attribution: str = "device",
    title: str = "",
    max_points: int = STATIC_MAX_POINTS,
) -> Any:
    """The power of each device and the cumulative CO2e of one run, as a Bokeh layout.

    ``samples`` are a run's samples in the order taken (``run.samples``); runs
    with more than ``max_points`` ticks are averaged into buckets. The CO2e
    curve ends at the run's ``co2_g``.
    """
    data = power_rows(
        devices, samples, intensity=intensity, attribution=attribution, max_points=max_points
    )
    source = ColumnDataSource(data, name=SOURCE_NAME)
    return power_layout(devices, source, intensity, attribution, power_title(title))


class LivePlot:
    """The data of a power figure that grows while a run is live. One feeder at a time.

    ``source`` holds the points; :meth:`stream` appends what the given samples
    add. ``rollover`` is the most points kept per device; once that many
    points were drawn at one stride the stride doubles, so the window covers
    the whole of runs up to hours long with bounded points. ``layout`` builds
    the Bokeh figure around ``source`` when first asked (a notebook's live
    view instead fills a figure serialized once, see :mod:`carbon_jupyter.show.embed`).
    """

    def __init__(
        self,
        devices: Sequence[DeviceInfo],
        *,
        intensity: Intensity,
        attribution: str = "device",
        title: str = "",
        rollover: int = LIVE_ROLLOVER,
    ) -> None:
        if rollover < 2:
            raise ConfigError(f"rollover must be at least 2 points, not {rollover}")
        self.devices = tuple(devices)
        self.intensity = intensity
        self.attribution = attribution
        self.title = title
        self.rollover = rollover
        self.stride = 1
        self._drawn_at_stride = 0
        self._rows = _Rows(self.devices, intensity, attribution)
        self.source = ColumnDataSource(self._rows.origin(), name=SOURCE_NAME)

    @cached_property
    def layout(self) -> Any:
        """The Bokeh layout drawing :attr:`source` (built on first use)."""
        return power_layout(
            self.devices, self.source, self.intensity, self.attribution, power_title(self.title)
        )

    def rows(self, samples: Sequence[Sample]) -> dict[str, list[float]]:
        """The new rows ``samples`` add (and advance the plot's state), without streaming."""
        new = self._rows.empty()
        for tick in _ticks(samples):
            self._rows.add_tick(tick)
            if self._rows.ticks_in_bucket >= self.stride:
                self._rows.flush(new)
                self._drawn_at_stride += 1
                if self._drawn_at_stride >= self.rollover:
                    self.stride *= 2
                    self._drawn_at_stride = 0
        return new

    def stream(self, samples: Sequence[Sample]) -> int:
        """Append the points ``samples`` add to the plot; returns how many rows were added."""
        new = self.rows(samples)
        count = len(new["t_s"])
        if count:
            self.source.stream(new, rollover=self.rollover)  # type: ignore[arg-type]
        return count


# -- comparing runs -----------------------------------------------------------------------
@dataclass(frozen=True)
class Group:
    """Runs compared as one bar: a label, a phase, or a single run."""

    factor: str
    name: str
    runs: tuple[Run, ...]


def _run_factor(runs: Sequence[Run], n: int) -> str:
    """``label 0f1e2d3c``: the run's label and id start, longer where that would repeat."""
    r = runs[n]
    short = f"{r.label or '(no label)'} {r.id[:8]}"
    clash = any(f"{o.label or '(no label)'} {o.id[:8]}" == short for o in runs[:n])
    return f"{r.label or '(no label)'} {r.id} #{n + 1}" if clash else short


def group_runs(runs: Sequence[Run], by: str = "label") -> list[Group]:
    """Group ``runs`` by ``label``, ``phase`` or ``run`` (one per run), in first-seen order."""
    if by not in GROUPINGS:
        raise ConfigError(f"cannot group runs by {by!r}; use one of: {', '.join(GROUPINGS)}")
    if not runs:
        raise ConfigError(
            "no runs to compare: pass one or more runs, e.g. carbon_jupyter.runs(label='train')"
        )
    if by == "run":
        return [Group(_run_factor(runs, n), r.label or "", (r,)) for n, r in enumerate(runs)]
    keyed: dict[str, list[Run]] = {}
    for r in runs:
        key = (r.label if by == "label" else r.phase) or f"(no {by})"
        keyed.setdefault(key, []).append(r)
    return [Group(f"{k} (n={len(v)})", k, tuple(v)) for k, v in keyed.items()]


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def _joined(values: Iterable[str]) -> str:
    return ", ".join(dict.fromkeys(values))


DETAIL_KEYS = ("started_at", "status", "methods", "intensity")


def _details(runs: Sequence[Run]) -> dict[str, str]:
    starts = sorted(r.started_at for r in runs)
    statuses = [r.status for r in runs]
    return {
        "started_at": starts[0] if len(starts) == 1 else f"{starts[0]} .. {starts[-1]}",
        "status": _joined(f"{s} x{statuses.count(s)}" if len(runs) > 1 else s for s in statuses),
        "methods": _joined(
            sorted({f"{d.method} ({method_quality(d.method)})" for r in runs for d in r.devices})
        ),
        "intensity": _joined(
            f"{r.intensity_g_per_kwh:g} gCO2e/kWh ({r.intensity.key}), PUE {r.pue:g}" for r in runs
        ),
    }


def comparison_rows(runs: Sequence[Run], *, by: str = "label") -> list[dict[str, Any]]:
    """One row per group: mean energies (Wh), CO2e (g), duration (s), per item, details."""
    result = []
    for g in group_runs(runs, by):
        rs = g.runs
        with_items = [r for r in rs if r.items]
        result.append(
            {
                "factor": g.factor,
                "name": g.name,
                "count": len(rs),
                "energy_wh": _mean([r.energy_j / J_PER_WH for r in rs]),
                "cpu_wh": _mean([r.cpu_energy_j / J_PER_WH for r in rs]),
                "gpu_wh": _mean([r.gpu_energy_j / J_PER_WH for r in rs]),
                "ram_wh": _mean([r.ram_energy_j / J_PER_WH for r in rs]),
                "co2_g": _mean([r.co2_g for r in rs]),
                "duration_s": _mean([r.duration_s for r in rs]),
                "item_runs": len(with_items),
                "energy_per_item_j": _mean([r.energy_j / (r.items or 1) for r in with_items]),
                "co2_per_item_g": _mean([r.co2_g / (r.items or 1) for r in with_items]),
                **_details(rs),
            }
        )
    return result


_DETAIL_TIPS = [
    ("started", "@started_at"),
    ("status", "@status"),
    ("methods", "@methods"),
    ("intensity", "@intensity"),
]


def _tip(label: str, field: str, unit: str) -> tuple[str, str]:
    return (label, f"@{field}{{0.[000000]}} {unit}")


def _bars(
    source: ColumnDataSource, fields: list[str], title: str, unit: str, tips: list[Any]
) -> Any:
    """Bars per group of ``fields`` (stacked when several), with group details on hover."""
    factors = list(source.data["factor"])
    p = _figure(
        f"carbon-bars-{fields[0]}",
        title,
        unit,
        x_range=FactorRange(factors=factors),
        height=300,
        width=340,
        tools=BAR_TOOLS,
    )
    colors = [COMPONENT_COLORS.get(f[:3], "#6c8ebf") for f in fields]
    legend = {"legend_label": [f[:3] for f in fields]} if len(fields) > 1 else {}
    _plain(p.vbar_stack(fields, x="factor", width=0.8, source=source, color=colors, **legend))
    p.add_tools(HoverTool(tooltips=[("group", "@name"), ("runs", "@count"), *tips, *_DETAIL_TIPS]))
    p.xaxis.major_label_orientation = 0.7 if len(factors) > 3 else 0.0
    if legend:
        p.legend.location = "top_left"
    return p


def comparison_figure(runs: Sequence[Run], *, by: str = "label") -> Any:
    """Energy, CO2e and duration of ``runs`` side by side, grouped ``by`` label, phase or run.

    Bars are group means (the count is in the axis label and the hover);
    ``by="run"`` draws every run. Below: energy against duration per run, and
    energy per item for runs that declared ``items``. Raises ConfigError (a
    ValueError) for an empty list or an unknown grouping.
    """
    rows = comparison_rows(runs, by=by)
    groups = ColumnDataSource({k: [r[k] for r in rows] for k in rows[0]}, name="carbon-groups")
    parts = ["cpu_wh", "gpu_wh", "ram_wh"]
    energy_tips = [_tip(f.split("_")[0], f, "Wh") for f in ["energy_wh", *parts]]
    energy = _bars(groups, parts, "Energy", "Wh", energy_tips)
    co2 = _bars(groups, ["co2_g"], "CO2e", "g", [_tip("CO2e", "co2_g", "g")])
    duration = _bars(groups, ["duration_s"], "Duration", "s", [_tip("duration", "duration_s", "s")])

    group_of = {r.id: (i, g.factor) for i, g in enumerate(group_runs(runs, by)) for r in g.runs}
    per_run = ColumnDataSource(
        {
            "duration_s": [r.duration_s for r in runs],
            "energy_wh": [r.energy_j / J_PER_WH for r in runs],
            "co2_g": [r.co2_g for r in runs],
            "group": [group_of[r.id][1] for r in runs],
            "color": [Category10_10[group_of[r.id][0] % 10] for r in runs],
            "label": [r.label or "" for r in runs],
            **{key: [_details([r])[key] for r in runs] for key in DETAIL_KEYS},
        },
        name="carbon-runs",
    )
    scatter = _figure("scatter", "Energy against duration", "energy (Wh)", height=300, width=520)
    scatter.xaxis.axis_label = "duration (s)"
    dots = scatter.scatter(
        "duration_s", "energy_wh", source=per_run, color="color", size=9, legend_field="group"
    )
    _plain([dots])
    scatter_tips = [_tip("energy", "energy_wh", "Wh"), _tip("CO2e", "co2_g", "g")]
    scatter.add_tools(
        HoverTool(
            tooltips=[
                ("label", "@label"),
                ("duration", "@duration_s{0.00} s"),
                *scatter_tips,
                *_DETAIL_TIPS,
            ]
        )
    )
    scatter.legend.location = "top_left"
    lower = [scatter]
    item_rows = [r for r in rows if not math.isnan(r["energy_per_item_j"])]
    if item_rows:
        items = ColumnDataSource(
            {k: [r[k] for r in item_rows] for k in rows[0]}, name="carbon-items"
        )
        item_tips = [
            _tip("energy per item", "energy_per_item_j", "J"),
            _tip("CO2e per item", "co2_per_item_g", "g"),
            ("runs with items", "@item_runs"),
        ]
        lower.append(_bars(items, ["energy_per_item_j"], "Energy per item", "J", item_tips))
    return column(row(energy, co2, duration), row(*lower))
