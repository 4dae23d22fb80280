"""A sweep's comparison: figures per configuration, the Pareto fronts and the one-line answer.

Pure functions over plain figures, shared by the notebook's results object, the
CLI, the exports and the dashboard.

Each configuration is summarised over its repeats by the median, with the
minimum and maximum beside it (the spread). A configuration is on the Pareto
front of CO2 against time when no other configuration is at least as good on
both and better on one; the same for CO2 against a metric of the user's
(``accuracy`` higher is better; a metric named like a loss or an error lower is
better, or say which).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

#: Metric names for which lower is better, unless told otherwise.
LOWER_IS_BETTER = ("loss", "error", "err", "mse", "mae", "rmse", "perplexity", "latency")


@dataclass(frozen=True)
class Outcome:
    """One run of one configuration, as the comparison needs it."""

    config: str
    status: str
    energy_j: float
    co2_g: float
    duration_s: float
    items: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Spread:
    """The median of a figure over a configuration's repeats, with its minimum and maximum."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        return cls(statistics.median(values), min(values), max(values))


@dataclass(frozen=True)
class ConfigSummary:
    """A configuration over its successful repeats, and how many failed."""

    config: str
    runs: int
    failed: int
    energy_j: Spread | None
    co2_g: Spread | None
    duration_s: Spread | None
    metrics: dict[str, Spread]
    energy_per_item_j: float | None
    co2_per_item_g: float | None


def summarise(outcomes: Iterable[Outcome]) -> list[ConfigSummary]:
    """One summary per configuration, in the order configurations first appear."""
    groups: dict[str, list[Outcome]] = {}
    for o in outcomes:
        groups.setdefault(o.config, []).append(o)
    out = []
    for config, runs in groups.items():
        ok = [o for o in runs if o.status == "ok"]
        names = sorted({name for o in ok for name in o.metrics})
        metrics = {
            name: Spread.of([o.metrics[name] for o in ok if name in o.metrics]) for name in names
        }
        energy = Spread.of([o.energy_j for o in ok]) if ok else None
        co2 = Spread.of([o.co2_g for o in ok]) if ok else None
        items = [o.items for o in ok if o.items]
        per_item_j = per_item_g = None
        if ok and len(items) == len(ok) and energy is not None and co2 is not None:
            item_count = statistics.median(items)
            per_item_j, per_item_g = energy.median / item_count, co2.median / item_count
        out.append(
            ConfigSummary(
                config=config,
                runs=len(ok),
                failed=len(runs) - len(ok),
                energy_j=energy,
                co2_g=co2,
                duration_s=Spread.of([o.duration_s for o in ok]) if ok else None,
                metrics=metrics,
                energy_per_item_j=per_item_j,
                co2_per_item_g=per_item_g,
            )
        )
    return out


def lower_is_better(metric: str) -> bool:
    """Whether a smaller value of ``metric`` is the better one, judged by its name."""
    name = metric.lower()
    return any(word in name for word in LOWER_IS_BETTER)


def pareto_front(points: Sequence[tuple[str, float, float]]) -> list[str]:
    """The names of the points no other point beats: both figures are to be minimised.

    ``points`` are ``(name, x, y)``; a point is dominated when another is at
    least as small on both figures and smaller on one. Ties on both figures
    are all on the front.
    """
    front = []
    for name, x, y in points:
        dominated = any(
            ox <= x and oy <= y and (ox < x or oy < y) for other, ox, oy in points if other != name
        )
        if not dominated:
            front.append(name)
    return front


def time_front(summaries: Sequence[ConfigSummary]) -> list[str]:
    """Configurations on the Pareto front of CO2 against duration (medians)."""
    points = [
        (s.config, s.co2_g.median, s.duration_s.median)
        for s in summaries
        if s.co2_g is not None and s.duration_s is not None
    ]
    return pareto_front(points)


def metric_front(
    summaries: Sequence[ConfigSummary], metric: str, lower_better: bool | None = None
) -> list[str]:
    """Configurations on the Pareto front of CO2 against ``metric`` (medians)."""
    lower = lower_is_better(metric) if lower_better is None else lower_better
    sign = 1.0 if lower else -1.0
    points = [
        (s.config, s.co2_g.median, sign * s.metrics[metric].median)
        for s in summaries
        if s.co2_g is not None and metric in s.metrics
    ]
    return pareto_front(points)


def _percent(a: float, b: float) -> float:
    """How much smaller (positive) or larger (negative) ``a`` is than ``b``, in percent of ``b``."""
    return (b - a) / b * 100.0 if b else 0.0


def answer(summaries: Sequence[ConfigSummary]) -> str:
    """The one-line answer: the lowest-CO2 configuration against the fastest one.

    ``"threads=2: 31 % less CO2, 12 % slower than threads=4"``; when one
    configuration is both, it says so against the runner-up in CO2.
    """
    done = [
        (s.config, s.co2_g.median, s.duration_s.median)
        for s in summaries
        if s.co2_g is not None and s.duration_s is not None
    ]
    if not done:
        return "no configuration finished; nothing to compare"
    if len(done) == 1:
        return f"{done[0][0]}: the only configuration that finished"
    greenest = min(done, key=lambda d: (d[1], d[2]))
    fastest = min(done, key=lambda d: (d[2], d[1]))
    if greenest == fastest:
        runner = min((d for d in done if d != greenest), key=lambda d: d[1])
        less = _percent(greenest[1], runner[1])
        return (
            f"{greenest[0]}: the lowest CO2 and the fastest "
            f"({less:.0f} % less CO2 than {runner[0]})"
        )
    less = _percent(greenest[1], fastest[1])
    slower = -_percent(greenest[2], fastest[2])
    return f"{greenest[0]}: {less:.0f} % less CO2, {slower:.0f} % slower than {fastest[0]}"
