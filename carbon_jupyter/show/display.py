"""How a notebook shows a run: its static plot and summary, comparisons, and the live view.

* :func:`summary_html` / :class:`Summary` - a run's summary as HTML (and text).
* :func:`run_bundle` / :func:`show_run` - a finished run's power plot above
  its summary, kept in the saved notebook.
* :func:`show_comparison` - stored runs side by side.
* :class:`carbon_jupyter.show.live.LiveView` - the plot while a run is live,
  replaced by :func:`run_bundle`'s output when it ends.

How a run is shown depends on where the code runs
(:func:`carbon_jupyter.show.frontend.detect`):

* ``jupyter-widgets`` (JupyterLab, Notebook 7, VS Code): a live Bokeh widget
  (``jupyter_bokeh``) streamed from the sampler thread about once a second.
* ``html`` (a kernel without widgets): the output is replaced with a fresh
  Bokeh HTML snippet at most once a second, with a short rolling window.
* ``colab``: like ``html``, with self-contained pages that load BokehJS from
  the Bokeh CDN (Colab is online by nature and cannot run the widget reliably).
* ``terminal`` / ``text``: no plot; the summary is printed at the end.
* ``none``: nothing while running; the summary is shown at the end.

Plots are filled into figures serialized once per process
(:mod:`carbon_jupyter.show.embed`), so showing one costs well under a millisecond
once the first is made. BokehJS goes into the page once per kernel, inside
the notebook (about 1.3 MB, so saved plots render offline) unless
``CARBON_JUPYTER_BOKEH_RESOURCES=cdn`` (see :func:`carbon_jupyter.show.embed.load_bokehjs`).
An untrusted notebook (edited outside Jupyter) shows no plots until it is
trusted. Nothing here raises into the user's cell: a failure is said once and
the run is shown as text.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from carbon_jupyter.errors import ConfigError
from carbon_jupyter.model import Run, Sample, method_quality
from carbon_jupyter.notices import notice_once
from carbon_jupyter.show import format as fmt
from carbon_jupyter.show import frontend
from carbon_jupyter.show.embed import (
    RESOURCE_MODES,
    bokeh_resources,
    embed_html,
    figure_page,
    load_bokehjs,
    power_template,
    require_ipython,
    resources_mode,
)

__all__ = [
    "RESOURCE_MODES",
    "Summary",
    "bokeh_resources",
    "comparison_text",
    "load_bokehjs",
    "resources_mode",
    "run_bundle",
    "show_comparison",
    "show_run",
    "summary_bundle",
    "summary_html",
]

Bundle = dict[str, str]


# -- summary ------------------------------------------------------------------------------
_STYLE = "font-family: sans-serif; font-size: 13px; border-collapse: collapse; margin: 4px 0"
_CELL = 'style="text-align: left; padding: 1px 10px 1px 0; vertical-align: top"'


def _quality(method: str) -> str:
    word = method_quality(method)
    return "estimate" if word == "estimated" else word


def _row(*cells: str, head: bool = False) -> str:
    tag = "th" if head else "td"
    return "<tr>" + "".join(f"<{tag} {_CELL}>{c}</{tag}>" for c in cells) + "</tr>"


def summary_html(run: Run) -> str:
    """A compact HTML summary of ``run``; every text from outside is escaped."""
    e = html.escape
    title = e(run.label or run.cell or run.id[:8])
    marks = fmt.quality_marks(run)
    estimate = f" <b>({e(', '.join(marks))})</b>" if marks else ""
    status = "" if run.status == "ok" else f' <span style="color:#b00">[{e(run.status)}]</span>'
    if run.warnings:
        status += f' <span style="color:#a60">[{fmt.warning_count(run)}]</span>'
    kinds = (("cpu", run.cpu_energy_j), ("gpu", run.gpu_energy_j), ("ram", run.ram_energy_j))
    parts = ", ".join(f"{kind} {fmt.energy(j)}" for kind, j in kinds)
    energy = f"{fmt.energy(run.energy_j)}{estimate} ({parts}; {e(run.attribution)} attribution)"
    rows = [
        _row("energy", energy),
        _row("CO2e", f"<b>{fmt.mass(run.co2_g)}</b>"),
        _row("intensity", e(fmt.intensity_source(run))),
    ]
    if run.items:
        rows.append(
            _row(
                "per item",
                f"{fmt.energy(run.energy_per_item_j or 0.0)}, "
                f"{fmt.mass(run.co2_per_item_g or 0.0)} CO2e ({run.items} items)",
            )
        )
    if run.error:
        rows.append(_row("error", e(run.error)))
    for warning in run.warnings:
        rows.append(_row('<span style="color:#a60">warning</span>', e(warning)))
    devices = [_row("device", "name", "energy", "method", "this process", head=True)]
    for d in run.devices:
        share = fmt.energy(d.process_energy_j) if d.process_energy_j is not None else "-"
        stopped = f" (stopped: {e(d.error)})" if d.error else ""
        devices.append(
            _row(
                e(d.device.device_id),
                e(d.device.name),
                fmt.energy(d.energy_j) + stopped,
                f"{e(d.method)}: {_quality(d.method)}",
                share,
            )
        )
    return (
        f'<div class="carbon-jupyter-summary" style="{_STYLE}">'
        f"<div><b>carbon: {title}</b>{status} &middot; {fmt.duration(run.duration_s)}</div>"
        f'<table style="{_STYLE}">{"".join(rows)}</table>'
        f'<table style="{_STYLE}">{"".join(devices)}</table></div>'
    )


def summary_bundle(run: Run) -> Bundle:
    """The summary as a display bundle: HTML for notebooks, plain text for everything else."""
    return {"text/html": summary_html(run), "text/plain": fmt.summary(run)}


class Summary:
    """A run that shows itself as the HTML summary in a notebook and as text elsewhere."""

    def __init__(self, run: Run) -> None:
        self.run = run

    def _repr_html_(self) -> str:
        return summary_html(self.run)

    def __repr__(self) -> str:
        return fmt.summary(self.run)


# -- showing things -----------------------------------------------------------------------
def _display(bundle: Bundle, *, display_id: bool = False) -> Any:
    from IPython.display import display

    require_ipython()
    return display(bundle, raw=True, display_id=display_id or None)  # type: ignore[no-untyped-call]


def _show_text(text: str) -> None:
    print(text)


def _show(bundle: Bundle) -> None:
    """Display ``bundle`` in IPython; print its text elsewhere."""
    from IPython.core.interactiveshell import InteractiveShell

    if InteractiveShell.initialized():
        _display(bundle)
    else:
        _show_text(bundle["text/plain"])


def _mode(mode: str | None) -> str:
    if mode is None:
        return frontend.detect()
    resolved = frontend.normalise(mode)
    if resolved is None:
        raise ConfigError(f"display mode {mode!r} is not one of: {', '.join(frontend.ALIASES)}")
    return resolved


def show_run(
    run: Run,
    samples: Sequence[Sample] | None = None,
    *,
    mode: str | None = None,
    resources: str | None = None,
) -> None:
    """Show a finished run here: its power plot and summary (``samples``: ``run.samples``)."""
    how = _mode(mode)
    try:
        if how in (frontend.WIDGETS, frontend.HTML):
            load_bokehjs(resources)
            _display(run_bundle(run, samples))
        elif how == frontend.COLAB:
            _display(run_bundle(run, samples, colab=True))
        elif how == frontend.NONE:
            _show(summary_bundle(run))
        else:
            _show_text(fmt.summary(run))
    except Exception as exc:
        notice_once("show-run-failed", f"carbon-jupyter: could not show the plot ({exc})")
        _show_text(fmt.summary(run))


def run_bundle(
    run: Run, samples: Sequence[Sample] | None = None, *, title: str = "", colab: bool = False
) -> Bundle:
    """A run's static power plot above its summary, as a display bundle with a text fallback.

    ``samples`` default to ``run.samples``. ``colab`` makes a self-contained
    page that loads BokehJS from the CDN; otherwise the page must have
    BokehJS loaded (:func:`load_bokehjs`).
    """
    from carbon_jupyter.show.plots import power_rows

    title = title or run.label or ""
    devices = [d.device for d in run.devices]
    data = power_rows(
        devices,
        run.samples if samples is None else samples,
        intensity=run.intensity,
        attribution=run.attribution,
    )
    template = power_template(devices, run.intensity, run.attribution)
    page = plot_above(template, data, title, summary_html(run), colab=colab)
    return {"text/html": page, "text/plain": fmt.summary(run)}


def plot_above(
    template: Any, data: Mapping[str, Any], title: str, summary: str, *, colab: bool = False
) -> str:
    """The HTML of a power plot (``template`` filled with ``data``) above ``summary``.

    ``colab`` makes a self-contained page that loads BokehJS from the CDN.
    """
    if colab:
        return str(template.page(data, title, summary))
    return f'<div class="carbon-jupyter-run">{template.html(data, title)}\n{summary}</div>'


def comparison_text(runs: Sequence[Run], *, by: str = "label") -> str:
    """The comparison as a plain-text table (terminals)."""
    from carbon_jupyter.show.plots import comparison_rows

    lines = [f"{'group':<32} {'energy':>10} {'CO2e':>10} {'duration':>12}"]
    for r in comparison_rows(runs, by=by):
        lines.append(
            f"{r['factor'][:32]:<32} {fmt.energy(r['energy_wh'] * 3600):>10} "
            f"{fmt.mass(r['co2_g']):>10} {fmt.duration(r['duration_s']):>12}"
        )
    return "\n".join(lines)


def show_comparison(
    runs: Sequence[Run], *, by: str = "label", mode: str | None = None, resources: str | None = None
) -> Any:
    """Show :func:`~carbon_jupyter.show.plots.comparison_figure` here and return the figure."""
    from carbon_jupyter.show.plots import comparison_figure

    figure = comparison_figure(runs, by=by)
    how = _mode(mode)
    try:
        if how in (frontend.WIDGETS, frontend.HTML):
            load_bokehjs(resources)
            _display({"text/html": embed_html(figure), "text/plain": comparison_text(runs, by=by)})
        elif how == frontend.COLAB:
            _display({"text/html": figure_page(figure, "carbon-jupyter runs")})
        elif how == frontend.TERMINAL:
            _show_text(comparison_text(runs, by=by))
    except Exception as exc:
        notice_once("comparison-failed", f"carbon-jupyter: could not show the comparison ({exc})")
        _show_text(comparison_text(runs, by=by))
    return figure


def __getattr__(name: str) -> Any:
    """The live view lives in :mod:`carbon_jupyter.show.live` (imported on first use)."""
    if name in ("LiveView", "close_finished_widgets"):
        from carbon_jupyter.show import live

        return getattr(live, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
