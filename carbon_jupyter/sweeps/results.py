"""A sweep's results: the stored runs of one sweep, compared, shown and exported.

:class:`SweepResults` is what ``carbon_jupyter.sweep(...)`` and ``%carbon
sweep`` return. It reads nothing itself: it is built from runs (those a sweep
just made, or those :func:`load` finds in the store by sweep id), so the
notebook, the CLI, the exports and the dashboard compare the same records.

- ``results.table()``: one row per configuration (median energy, CO2e and
  duration with their minimum and maximum, runs ok and failed, energy per
  item, the chosen metric) as text;
- ``results.answer()``: the one-line answer;
- ``results.figure()``: the Bokeh comparison
  (:func:`carbon_jupyter.show.plots_sweep.sweep_figure`);
- ``results.to_csv(path)``, ``to_json(path)``, ``to_html(path)`` (a
  self-contained report, BokehJS inline);
- in a notebook, the results display as the table, the answer and the plots.
"""

from __future__ import annotations

import csv
import html
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from carbon_jupyter.errors import ConfigError
from carbon_jupyter.model import Run
from carbon_jupyter.show import format as fmt
from carbon_jupyter.sweeps.compare import (
    ConfigSummary,
    Outcome,
    answer,
    metric_front,
    summarise,
    time_front,
)

CSV_COLUMNS = (
    "config", "runs", "failed",
    "energy_j", "energy_j_min", "energy_j_max",
    "co2_g", "co2_g_min", "co2_g_max",
    "duration_s", "duration_s_min", "duration_s_max",
    "energy_per_item_j", "co2_per_item_g", "on_time_front",
)  # fmt: skip


def outcome_of(run: Run) -> Outcome:
    """What the comparison needs of one run of a sweep."""
    return Outcome(
        config=run.tags.get("config") or run.label or run.id[:8],
        status=run.status,
        energy_j=run.energy_j,
        co2_g=run.co2_g,
        duration_s=run.duration_s,
        items=run.items,
        metrics=dict(run.metrics),
    )


@dataclass
class SweepResults:
    """The runs of one sweep and their comparison; see the module docstring."""

    sweep_id: str
    runs: list[Run]
    metric: str | None = None
    stopped: bool = False

    def summaries(self) -> list[ConfigSummary]:
        return summarise(outcome_of(r) for r in self.runs)

    def time_front(self) -> list[str]:
        """Configurations on the Pareto front of CO2e against duration."""
        return time_front(self.summaries())

    def metric_front(self, metric: str | None = None) -> list[str]:
        """Configurations on the Pareto front of CO2e against ``metric`` (default: the chosen)."""
        name = metric or self.metric
        if name is None:
            raise ConfigError("name the metric to compare CO2e against, e.g. metric='accuracy'")
        return metric_front(self.summaries(), name)

    def answer(self) -> str:
        return answer(self.summaries())

    def _metric(self) -> str | None:
        if self.metric is not None:
            return self.metric
        names = sorted({m for r in self.runs for m in r.metrics})
        return names[0] if len(names) == 1 else None

    # -- views -----------------------------------------------------------------------
    def rows(self) -> list[dict[str, Any]]:
        """One dict per configuration: the CSV and JSON rows."""
        front = set(self.time_front())
        metric = self._metric()
        out = []
        for s in self.summaries():
            row: dict[str, Any] = {"config": s.config, "runs": s.runs, "failed": s.failed}
            for name, spread in (
                ("energy_j", s.energy_j),
                ("co2_g", s.co2_g),
                ("duration_s", s.duration_s),
            ):
                row[name] = spread.median if spread else None
                row[f"{name}_min"] = spread.low if spread else None
                row[f"{name}_max"] = spread.high if spread else None
            row["energy_per_item_j"] = s.energy_per_item_j
            row["co2_per_item_g"] = s.co2_per_item_g
            row["on_time_front"] = s.config in front
            if metric is not None:
                row[metric] = s.metrics[metric].median if metric in s.metrics else None
            out.append(row)
        return out

    def table(self) -> str:
        """The comparison as a plain-text table, the answer under it."""
        summaries = self.summaries()
        front = set(time_front(summaries))
        metric = self._metric()
        on_metric = set(metric_front(summaries, metric)) if metric else set()
        head = f"{'configuration':<36} {'runs':>6} {'energy':>10} {'CO2e':>10} {'time':>10}"
        lines = [head + (f" {metric[:12]:>12}" if metric else "")]
        for s in summaries:
            runs = f"{s.runs}" + (f"+{s.failed}!" if s.failed else "")
            if s.energy_j and s.co2_g and s.duration_s:
                figures = (
                    f"{fmt.energy(s.energy_j.median):>10} {fmt.mass(s.co2_g.median):>10} "
                    f"{fmt.duration(s.duration_s.median):>10}"
                )
            else:
                figures = f"{'failed':>10} {'':>10} {'':>10}"
            if metric:
                value = s.metrics.get(metric)
                figures += f" {value.median:>12.4g}" if value else f" {'-':>12}"
            marks = ("*" if s.config in front else "") + ("+" if s.config in on_metric else "")
            lines.append(f"{s.config[:36]:<36} {runs:>6} {figures} {marks}".rstrip())
        key = "* on the Pareto front of CO2e against time"
        if metric:
            key += f"; + against {metric}"
        lines.append(key + "; N+M! M runs failed")
        lines.append(self.answer())
        return "\n".join(lines)

    def figure(self) -> Any:
        from carbon_jupyter.show.plots_sweep import sweep_figure

        metric = self._metric()
        summaries = self.summaries()
        fronts = metric_front(summaries, metric) if metric else []
        return sweep_figure(summaries, time_front(summaries), metric, fronts)

    def _table_html(self) -> str:
        head = "".join(
            f"<th>{h}</th>"
            for h in ("configuration", "runs", "failed", "energy", "CO2e", "time", "front")
        )
        body = []
        front = set(self.time_front())
        for s in self.summaries():
            cells = [html.escape(s.config), str(s.runs), str(s.failed)]
            for spread, show in (
                (s.energy_j, fmt.energy),
                (s.co2_g, fmt.mass),
                (s.duration_s, fmt.duration),
            ):
                cells.append(
                    f"{show(spread.median)} ({show(spread.low)} to {show(spread.high)})"
                    if spread
                    else "-"
                )
            cells.append("yes" if s.config in front else "")
            body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        return (
            f"<p><b>{html.escape(self.answer())}</b></p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        )

    def _repr_html_(self) -> str:
        from carbon_jupyter.show.embed import embed_html, load_bokehjs

        table = self._table_html()
        try:
            load_bokehjs()
            return table + embed_html(self.figure())
        except (ConfigError, RuntimeError):
            return table

    def __repr__(self) -> str:
        return f"sweep {self.sweep_id}\n{self.table()}"

    # -- exports ---------------------------------------------------------------------
    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """One row per configuration (medians, minima, maxima, front membership)."""
        target = _writable(path)
        rows = self.rows()
        columns = list(CSV_COLUMNS) + [k for k in (rows[0] if rows else {}) if k not in CSV_COLUMNS]
        with open(target, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        return target

    def to_json(self, path: str | os.PathLike[str]) -> Path:
        """The sweep id, the answer, the per-configuration rows and every run's figures."""
        target = _writable(path)
        document = {
            "sweep": self.sweep_id,
            "answer": self.answer(),
            "configurations": self.rows(),
            "runs": [
                {
                    "id": r.id, "config": r.tags.get("config"), "repeat": r.tags.get("repeat"),
                    "status": r.status, "error": r.error, "energy_j": r.energy_j,
                    "co2_g": r.co2_g, "duration_s": r.duration_s, "metrics": r.metrics,
                    "warnings": list(r.warnings),
                }
                for r in self.runs
            ],
        }  # fmt: skip
        target.write_text(json.dumps(document, indent=2), encoding="utf-8")
        return target

    def to_html(self, path: str | os.PathLike[str]) -> Path:
        """A self-contained report (BokehJS inline): the answer, the table and the plots."""
        from carbon_jupyter.show.embed import embed_html, inline_bokehjs_html

        target = _writable(path)
        try:
            plots = embed_html(self.figure())
        except ConfigError as exc:
            plots = f"<p>{html.escape(str(exc))}</p>"
        title = html.escape(f"carbon-jupyter sweep {self.sweep_id}")
        target.write_text(
            f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}'
            f"</title>\n{inline_bokehjs_html()}\n</head><body><h1>{title}</h1>\n"
            f"{self._table_html()}\n{plots}\n</body></html>\n",
            encoding="utf-8",
        )
        return target


def _writable(path: str | os.PathLike[str]) -> Path:
    target = Path(path)
    if not target.parent.is_dir():
        raise ConfigError(f"{target.parent}: no such folder; create it or choose another path")
    return target


def load(
    sweep_id: str, *, store_path: str | None = None, metric: str | None = None
) -> SweepResults:
    """The stored runs of ``sweep_id`` (oldest first), compared."""
    from carbon_jupyter.store import open_store

    runs = list(open_store(store_path, create=False).iter_runs(tag={"sweep": sweep_id}))
    if not runs:
        raise ConfigError(f"no runs of sweep {sweep_id!r} in the store; check the sweep id")
    runs.sort(key=lambda r: r.started_at)
    return SweepResults(sweep_id, runs, metric)


__all__ = ["SweepResults", "load", "outcome_of"]
