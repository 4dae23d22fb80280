"""A sweep's comparison as Bokeh figures: pure functions of the per-configuration summaries.

* :func:`sweep_figure` - energy (Wh), CO2e (g) and duration (s) per
  configuration, each bar the median over the repeats with a whisker from the
  minimum to the maximum; below, CO2e against duration with the Pareto front
  marked and joined, and, when a metric is chosen, CO2e against that metric
  with its front.

Data layout: one ColumnDataSource named ``carbon-sweep`` with one row per
configuration that finished at least once: ``config``, ``energy_wh``,
``energy_wh_low``/``_high``, the same for ``co2_g`` and ``duration_s``,
``runs``, ``failed``, ``on_time_front`` (bool), and ``metric``/``on_metric_front``
when a metric is drawn. Configuration names are factors and hover data only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bokeh.layouts import column, row
from bokeh.models import ColumnDataSource, FactorRange, HoverTool
from bokeh.models.annotations import Whisker
from bokeh.plotting import figure

from carbon_jupyter.errors import ConfigError
from carbon_jupyter.sweeps.compare import ConfigSummary, Spread

J_PER_WH = 3600.0
SOURCE_NAME = "carbon-sweep"
FRONT_COLOR = "#d62728"
POINT_COLOR = "#1f77b4"


def sweep_rows(
    summaries: Sequence[ConfigSummary],
    time_front: Sequence[str],
    metric: str | None = None,
    metric_front: Sequence[str] = (),
) -> dict[str, list[Any]]:
    """The columns of :data:`SOURCE_NAME`: one row per configuration with a finished run."""
    done = [s for s in summaries if s.co2_g and s.energy_j and s.duration_s]
    rows: dict[str, list[Any]] = {"config": [s.config for s in done]}
    spreads: dict[str, tuple[float, list[Spread]]] = {
        "energy_wh": (J_PER_WH, [s.energy_j for s in done if s.energy_j]),
        "co2_g": (1.0, [s.co2_g for s in done if s.co2_g]),
        "duration_s": (1.0, [s.duration_s for s in done if s.duration_s]),
    }
    for name, (scale, values) in spreads.items():
        rows[name] = [v.median / scale for v in values]
        rows[f"{name}_low"] = [v.low / scale for v in values]
        rows[f"{name}_high"] = [v.high / scale for v in values]
    rows["runs"] = [s.runs for s in done]
    rows["failed"] = [s.failed for s in done]
    rows["on_time_front"] = [s.config in time_front for s in done]
    rows["color"] = [FRONT_COLOR if s.config in time_front else POINT_COLOR for s in done]
    if metric is not None:
        rows["metric"] = [s.metrics[metric].median if metric in s.metrics else None for s in done]
        rows["on_metric_front"] = [s.config in metric_front for s in done]
        rows["metric_color"] = [
            FRONT_COLOR if s.config in metric_front else POINT_COLOR for s in done
        ]
    return rows


def _bars(source: ColumnDataSource, field: str, title: str, unit: str) -> Any:
    factors = list(source.data["config"])
    p = figure(
        title=title,
        x_range=FactorRange(factors=factors),
        height=280,
        width=340,
        tools="save",
        name=f"carbon-sweep-{field}",
    )
    p.vbar(x="config", top=field, width=0.7, source=source, color="#6c8ebf")
    p.add_layout(Whisker(source=source, base="config", lower=f"{field}_low", upper=f"{field}_high"))
    p.yaxis.axis_label = unit
    p.y_range.start = 0  # type: ignore[attr-defined]
    p.xaxis.major_label_orientation = 0.7 if len(factors) > 3 else 0.0
    p.add_tools(
        HoverTool(
            tooltips=[
                ("configuration", "@config"),
                (title, f"@{field}{{0.[0000]}} {unit} (@{field}_low{{0.[0000]}}"
                 f" to @{field}_high{{0.[0000]}})"),
                ("runs", "@runs ok, @failed failed"),
            ]
        )
    )  # fmt: skip
    return p


def _front(source: ColumnDataSource, x: str, x_label: str, flag: str, color: str) -> Any:
    p = figure(
        title=f"CO2e against {x_label} (Pareto front in red)",
        height=300,
        width=520,
        tools="pan,wheel_zoom,box_zoom,reset,save",
        name=f"carbon-sweep-front-{x}",
    )
    p.scatter(x, "co2_g", source=source, color=color, size=10)
    rows = source.data
    front = sorted(
        (rows[x][i], rows["co2_g"][i])
        for i in range(len(rows["config"]))
        if rows[flag][i] and rows[x][i] is not None
    )
    if len(front) > 1:
        p.line([f[0] for f in front], [f[1] for f in front], color=FRONT_COLOR, line_dash="dashed")
    p.xaxis.axis_label = x_label
    p.yaxis.axis_label = "CO2e (g)"
    p.add_tools(HoverTool(tooltips=[("configuration", "@config"), ("CO2e", "@co2_g{0.[0000]} g")]))
    return p


def sweep_figure(
    summaries: Sequence[ConfigSummary],
    time_front: Sequence[str],
    metric: str | None = None,
    metric_front: Sequence[str] = (),
) -> Any:
    """The comparison of a sweep's configurations; see the module docstring."""
    data = sweep_rows(summaries, time_front, metric, metric_front)
    if not data["config"]:
        raise ConfigError("no configuration of this sweep finished; there is nothing to plot")
    source = ColumnDataSource(data, name=SOURCE_NAME)
    bars = row(
        _bars(source, "energy_wh", "Energy", "Wh"),
        _bars(source, "co2_g", "CO2e", "g"),
        _bars(source, "duration_s", "Duration", "s"),
    )
    lower = [_front(source, "duration_s", "duration (s)", "on_time_front", "color")]
    if metric is not None:
        lower.append(_front(source, "metric", metric, "on_metric_front", "metric_color"))
    return column(bars, row(*lower))
