"""Totals over time: energy or CO2e per day, stacked by user, project, label or another group.

Pure functions like the rest of :mod:`carbon_jupyter.show.plots`: they take
totals already summed per day and group (as the team server's totals by day
and user answer them) and return Bokeh data or a figure. Nothing here reads
a database.

Data layout: one ColumnDataSource named ``carbon-totals`` with one row per
day and drawn group: ``day`` (datetime, midnight UTC), ``day_text``
(``2025-01-02``), ``group`` (its name), ``value`` (in the figure's unit),
``bottom``/``top`` (where its bar segment sits in the day's stack),
``total`` (the day's) and ``color``. One glyph draws every segment, so the
figure stays small however many days it spans; group names are data (the
legend and the hover show them as text, never as markup).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any

from bokeh.models import ColumnDataSource, DataRange1d, HoverTool
from bokeh.palettes import Category10_10
from bokeh.plotting import figure

from carbon_jupyter.errors import ConfigError

#: What a totals figure can draw, and the base unit of each.
TOTAL_METRICS = ("energy", "co2")
#: Groups drawn on their own; the rest are summed as one "other" group.
TOP_GROUPS = 8
TOTALS_SOURCE = "carbon-totals"
J_PER_WH = 3600.0
DAY_MS = 86_400_000.0
OTHER = "(other)"
#: The columns of a totals source, in order.
TOTALS_COLUMNS = ("day", "day_text", "group", "value", "bottom", "top", "total", "color")
NONE = "(none)"


@dataclass(frozen=True)
class DayTotal:
    """The energy and CO2e of one group's runs started on one UTC day."""

    day: str  # YYYY-MM-DD
    group: str | None
    energy_j: float
    co2_g: float
    runs: int = 0


@dataclass(frozen=True)
class TotalsData:
    """What :func:`totals_figure` draws: one row per day and group, the groups, the unit."""

    columns: dict[str, list[Any]]
    groups: tuple[str, ...]
    unit: str
    metric: str


def _day_ms(day: str) -> float:
    parsed = date.fromisoformat(day)
    midnight = datetime(parsed.year, parsed.month, parsed.day, tzinfo=timezone.utc)
    return midnight.timestamp() * 1000.0


def _unit(metric: str, largest: float) -> tuple[str, float]:
    """The unit for values up to ``largest`` (in Wh or g) and the divisor into it."""
    if metric == "energy":
        return ("kWh", 1000.0) if largest >= 1000.0 else ("Wh", 1.0)
    return ("kg", 1000.0) if largest >= 1000.0 else ("g", 1.0)


def totals_data(
    totals: Iterable[DayTotal], *, metric: str = "energy", top: int = TOP_GROUPS
) -> TotalsData:
    """Stacked bar rows: the ``top`` largest groups of each day, the rest summed as "(other)".

    ``metric`` is ``energy`` (Wh or kWh) or ``co2`` (g or kg). Raises
    ConfigError (a ValueError) for another metric or a malformed day.
    """
    if metric not in TOTAL_METRICS:
        raise ConfigError(f"metric must be one of {', '.join(TOTAL_METRICS)}, not {metric!r}")
    per_day: dict[str, dict[str, float]] = {}
    per_group: dict[str, float] = {}
    for item in totals:
        value = item.energy_j / J_PER_WH if metric == "energy" else item.co2_g
        if not math.isfinite(value):
            continue
        name = item.group if item.group not in (None, "") else NONE
        day = per_day.setdefault(item.day, {})
        day[name] = day.get(name, 0.0) + value
        per_group[name] = per_group.get(name, 0.0) + value
    ranked = sorted(per_group, key=lambda g: (-per_group[g], g))
    shown = ranked[:top] if len(ranked) > top + 1 else ranked
    groups = (*shown, OTHER) if len(shown) < len(ranked) else tuple(shown)
    order = {g: i for i, g in enumerate(groups)}
    days = sorted(per_day)
    stacked = [sum(per_day[d].values()) for d in days]
    unit, divisor = _unit(metric, max(stacked, default=0.0))
    columns: dict[str, list[Any]] = {k: [] for k in TOTALS_COLUMNS}
    for d, total in zip(days, stacked, strict=True):
        try:
            day_ms = _day_ms(d)
        except ValueError as exc:
            raise ConfigError(f"a day must read YYYY-MM-DD: {exc}") from None
        values = [0.0] * len(groups)
        for g, v in per_day[d].items():
            values[order.get(g, len(groups) - 1)] += v
        bottom = 0.0
        for i, v in enumerate(values):
            if v <= 0:
                continue
            columns["day"].append(day_ms)
            columns["day_text"].append(d)
            columns["group"].append(groups[i])
            columns["value"].append(v / divisor)
            columns["bottom"].append(bottom / divisor)
            columns["top"].append((bottom + v) / divisor)
            columns["total"].append(total / divisor)
            columns["color"].append(Category10_10[i % 10])
            bottom += v
    return TotalsData(columns, groups, unit, metric)


def totals_layout(
    source: ColumnDataSource, *, metric: str, by: str, unit: str, height: int = 280
) -> Any:
    """The stacked bars drawing ``source`` (the columns of :func:`totals_data`) in ``unit``."""
    what = "Energy" if metric == "energy" else "CO2e"
    p = figure(
        name="carbon-totals-figure",
        title=f"{what} per day by {by}",
        x_axis_type="datetime",
        y_axis_label=f"{what} ({unit})",
        y_range=DataRange1d(start=0),
        height=height,
        sizing_mode="stretch_width",
        tools="pan,wheel_zoom,box_zoom,reset,save",
    )
    bars = p.vbar(
        x="day",
        bottom="bottom",
        top="top",
        width=DAY_MS * 0.8,
        color="color",
        source=source,
        legend_field="group",
    )
    bars.nonselection_glyph = "auto"
    bars.muted_glyph = "auto"
    tips = [
        ("day", "@day_text"),
        (by, "@group"),
        (what, f"@value{{0.[000]}} {unit}"),
        ("day total", f"@total{{0.[000]}} {unit}"),
    ]
    p.add_tools(HoverTool(renderers=[bars], tooltips=tips))
    p.legend.location = "top_left"
    p.legend.background_fill_alpha = 0.7
    return p


def totals_figure(
    totals: Sequence[DayTotal],
    *,
    metric: str = "energy",
    by: str = "user",
    top: int = TOP_GROUPS,
    height: int = 280,
) -> Any:
    """Energy or CO2e per day as bars stacked ``by`` group (a Bokeh figure).

    ``totals`` are sums per day and group; an empty list draws empty axes.
    The legend and the hover name each group as plain text (data, not markup).
    """
    data = totals_data(totals, metric=metric, top=top)
    source = ColumnDataSource(data.columns, name=TOTALS_SOURCE)
    return totals_layout(source, metric=metric, by=by, unit=data.unit, height=height)
