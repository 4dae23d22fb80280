"""How a notebook shows a run: a live plot while it runs, a static plot and a summary after.

:class:`LiveView` follows a :class:`~carbon_jupyter.tracker.Tracker`. How it
shows the run depends on where the code runs (:func:`carbon_jupyter.frontend.detect`):

* ``jupyter-widgets`` (JupyterLab, Notebook 7, VS Code): a Bokeh widget
  (``jupyter_bokeh``) streamed from the sampler thread about once a second.
* ``html`` (a kernel without widgets): the output is replaced with a fresh
  Bokeh HTML snippet at most once a second, with a short rolling window.
* ``colab``: like ``html``, with self-contained pages that load BokehJS from
  the Bokeh CDN (Colab is online by nature and cannot run the widget reliably).
* ``terminal`` / ``text``: no plot; the summary is printed at the end.
* ``none``: nothing while running; the summary is shown at the end.

When the run finishes the live output is replaced by a static plot of every
sample and an HTML summary, so a saved notebook shows the result without a
kernel. Nothing here raises into the user's cell: a failure of the live view
is said once and the view falls back to text.

BokehJS is loaded into the page once per kernel, from the package itself
(``inline``, about 2.6 MB in the notebook: the core library only) unless
``resources="cdn"`` or ``CARBON_JUPYTER_BOKEH_RESOURCES=cdn`` is set, which
keeps notebooks small but needs the network in the browser. An untrusted
notebook shows "Loading BokehJS ..." until it is trusted.
"""

from __future__ import annotations

import html
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from carbon_jupyter import format as fmt
from carbon_jupyter import frontend
from carbon_jupyter.errors import ConfigError
from carbon_jupyter.model import Run, Sample, method_quality
from carbon_jupyter.notices import notice_once

if TYPE_CHECKING:
    from carbon_jupyter.tracker import Tracker

RESOURCE_MODES = ("inline", "cdn")
#: Points per device kept while a run is live, per display mode.
HTML_ROLLOVER = 300
Bundle = dict[str, str]


# -- BokehJS in the page ------------------------------------------------------------------
def resources_mode(resources: str | None = None) -> str:
    """``inline`` or ``cdn``: the argument, else CARBON_JUPYTER_BOKEH_RESOURCES, else inline."""
    where = "resources"
    if resources is None:
        resources = os.environ.get("CARBON_JUPYTER_BOKEH_RESOURCES", "") or "inline"
        where = "CARBON_JUPYTER_BOKEH_RESOURCES"
    value = resources.strip().lower()
    if value not in RESOURCE_MODES:
        raise ConfigError(
            f"{where}={resources!r} is not one of inline, cdn: use inline (works offline, "
            "about 2.6 MB per notebook) or cdn (small notebooks, needs the network)"
        )
    return value


def bokeh_resources(mode: str) -> Any:
    """The smallest BokehJS bundle the plots need: the core library, without widgets or tables."""
    from bokeh.resources import Resources

    return Resources(mode=mode, components=["bokeh"])  # type: ignore[arg-type]


_loaded: tuple[str | None, str | None] | None = None


def _require_ipython() -> None:
    """Refuse to display outside IPython (IPython would start a shell of its own)."""
    from IPython.core.interactiveshell import InteractiveShell

    if not InteractiveShell.initialized():
        raise RuntimeError("not running in IPython or a notebook, so there is nowhere to plot")


def _execution() -> tuple[str | None, str | None]:
    """The frontend's cell id and the request id of the code running now, where known."""
    try:
        kernel = getattr(frontend._shell(), "kernel", None)
        parent = kernel.get_parent("shell") if kernel is not None else {}
        cell = (parent.get("metadata") or {}).get("cellId")
        return cell, (parent.get("header") or {}).get("msg_id")
    except Exception:
        return None, None


def load_bokehjs(resources: str | None = None, *, force: bool = False) -> bool:
    """Put BokehJS into the notebook page; True when it was sent now.

    Sent once per kernel, and again when the cell that held it runs again
    (running a cell clears its output). Skipped when the user already called
    ``bokeh.io.output_notebook()`` (their full bundle serves our plots too).
    """
    global _loaded
    mode = resources_mode(resources)
    _require_ipython()
    cell, request = _execution()
    if _loaded is not None and not force:
        loaded_cell, loaded_request = _loaded
        if cell is None or cell != loaded_cell or request == loaded_request:
            return False
    from bokeh.io.notebook import load_notebook
    from bokeh.io.state import curstate

    _loaded = (cell, request)
    if curstate().notebook and not force:
        return False
    load_notebook(bokeh_resources(mode), hide_banner=True)
    return True


def _embed(layout: Any) -> str:
    from bokeh.embed import components

    script, div = components(layout)
    return f"{div}\n{script}"


def _page(layout: Any, title: str, extra_html: str = "") -> str:
    """A self-contained page loading BokehJS from the CDN (Colab); only the parts it uses."""
    from bokeh.embed import file_html
    from bokeh.resources import CDN

    page = str(file_html(layout, CDN, title=title or "carbon-jupyter"))
    head, _, tail = page.rpartition("</body>")
    return f"{head}{extra_html}</body>{tail}" if head else page + extra_html


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

    _require_ipython()
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
    from carbon_jupyter.plots import power_figure

    title = title or run.label or ""
    layout = power_figure(
        [d.device for d in run.devices],
        run.samples if samples is None else samples,
        intensity=run.intensity,
        attribution=run.attribution,
        title=title,
    )
    summary = summary_html(run)
    if colab:
        page = _page(layout, title, summary)
    else:
        page = f'<div class="carbon-jupyter-run">{_embed(layout)}\n{summary}</div>'
    return {"text/html": page, "text/plain": fmt.summary(run)}


def comparison_text(runs: Sequence[Run], *, by: str = "label") -> str:
    """The comparison as a plain-text table (terminals)."""
    from carbon_jupyter.plots import comparison_rows

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
    """Show :func:`~carbon_jupyter.plots.comparison_figure` here and return the figure."""
    from carbon_jupyter.plots import comparison_figure

    figure = comparison_figure(runs, by=by)
    how = _mode(mode)
    try:
        if how in (frontend.WIDGETS, frontend.HTML):
            load_bokehjs(resources)
            _display({"text/html": _embed(figure), "text/plain": comparison_text(runs, by=by)})
        elif how == frontend.COLAB:
            _display({"text/html": _page(figure, "carbon-jupyter runs")})
        elif how == frontend.TERMINAL:
            _show_text(comparison_text(runs, by=by))
    except Exception as exc:
        notice_once("comparison-failed", f"carbon-jupyter: could not show the comparison ({exc})")
        _show_text(comparison_text(runs, by=by))
    return figure


# -- the live view ------------------------------------------------------------------------
class LiveView:
    """Show ``tracker``'s run live in the notebook, then the final plot and summary.

    Call :meth:`start` after ``tracker.start()`` and :meth:`finish` with the
    run ``tracker.stop()`` returned; :meth:`close` drops a view that will not
    be finished. ``mode`` is a :func:`~carbon_jupyter.frontend.detect` mode or
    alias (default: detected), ``resources`` where BokehJS comes from
    (``inline`` or ``cdn``, see the module docs), ``min_update_s`` the least
    time between two live updates. A bad ``mode`` or ``resources`` is said
    once and replaced by the default, since the tracker is already running.
    """

    def __init__(
        self,
        tracker: Tracker,
        *,
        mode: str | None = None,
        title: str = "",
        resources: str | None = None,
        min_update_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tracker = tracker
        self.title = title or tracker.label or ""
        # The tracker is already running: a bad setting is said once, never raised.
        resolved = frontend.normalise(mode) if mode is not None else None
        if mode is not None and resolved is None:
            notice_once(
                "live-view-mode",
                f"carbon-jupyter: display mode {mode!r} is not one of widgets, html, colab, "
                "text, none; choosing from the environment",
            )
        self.mode = resolved or frontend.detect()
        try:
            self.resources = resources_mode(resources)
        except ConfigError as exc:
            notice_once("live-view-resources", f"carbon-jupyter: {exc}; using inline")
            self.resources = "inline"
        self.min_update_s = min_update_s
        #: How many live updates were sent to the page.
        self.updates = 0
        self._clock = clock
        self._lock = threading.RLock()
        self._pending: list[Sample] = []
        self._last_push = -math.inf
        #: The :class:`~carbon_jupyter.plots.LivePlot` being fed (None without a live plot).
        self.plot: Any = None
        self._widget: Any = None
        self._handle: Any = None
        self._unsubscribe: Callable[[], None] | None = None
        self._done = False

    def start(self) -> LiveView:
        """Show the (empty) live plot and follow the tracker's samples."""
        if self.mode in (frontend.TERMINAL, frontend.NONE):
            return self
        try:
            self._start_plot()
        except Exception as exc:
            self._degrade(exc)
        return self

    def _start_plot(self) -> None:
        from carbon_jupyter.plots import LIVE_ROLLOVER, LivePlot

        _require_ipython()
        t = self.tracker
        self.plot = LivePlot(
            t.devices,
            intensity=t.intensity,
            attribution=t.attribution,
            title=self.title,
            rollover=LIVE_ROLLOVER if self.mode == frontend.WIDGETS else HTML_ROLLOVER,
        )
        if self.mode == frontend.WIDGETS:
            load_bokehjs(self.resources)
            from jupyter_bokeh import BokehModel

            self._widget = BokehModel(self.plot.layout)
        elif self.mode == frontend.HTML:
            load_bokehjs(self.resources)
        self._handle = _display(self._live_bundle(), display_id=True)
        if self._handle is None:
            raise RuntimeError("the notebook gave no display handle")
        # The view appears after the run started: take the samples so far first.
        self._unsubscribe = t.subscribe(self._on_samples, replay=True)

    def _live_bundle(self) -> Bundle:
        text = f"carbon: measuring {self.title}".rstrip()
        if self.mode == frontend.WIDGETS:
            return {**self._widget._repr_mimebundle_(), "text/plain": text}
        if self.mode == frontend.COLAB:
            return {"text/html": _page(self.plot.layout, self.title), "text/plain": text}
        return {"text/html": _embed(self.plot.layout), "text/plain": text}

    def _on_samples(self, samples: Sequence[Sample]) -> None:
        """Sampler-thread listener: batch samples, update the page at most every min_update_s."""
        try:
            with self._lock:
                if self._done or self.plot is None:
                    return
                self._pending.extend(samples)
                now = self._clock()
                if now - self._last_push < self.min_update_s:
                    return
                batch, self._pending = self._pending, []
                self._last_push = now
                if self.plot.stream(batch):
                    if self.mode != frontend.WIDGETS:
                        self._handle.update(self._live_bundle(), raw=True)
                    self.updates += 1
        except Exception as exc:
            self._degrade(exc)

    def _degrade(self, exc: BaseException) -> None:
        notice_once(
            "live-view-failed",
            f"carbon-jupyter: the live plot stopped ({type(exc).__name__}: {exc}); the run is "
            "still measured and its summary is shown as text. Set CARBON_JUPYTER_DISPLAY=text "
            "to skip plots.",
        )
        with self._lock:
            self._stop_following()
            self.mode = frontend.TERMINAL

    def _stop_following(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def finish(self, run: Run) -> None:
        """Replace the live plot with a static plot of every sample and the summary."""
        with self._lock:
            self._done = True
            self._stop_following()
        try:
            live = self.mode in (frontend.WIDGETS, frontend.HTML, frontend.COLAB)
            if self._handle is not None and live:
                bundle = run_bundle(run, title=self.title, colab=self.mode == frontend.COLAB)
                self._handle.update(bundle, raw=True)
            elif self._handle is not None:  # the live plot failed: leave the summary in its place
                self._handle.update(summary_bundle(run), raw=True)
            elif self.mode == frontend.TERMINAL:
                _show_text(fmt.summary(run))
            else:
                _show(summary_bundle(run))
        except Exception as exc:
            notice_once(
                "final-view-failed",
                f"carbon-jupyter: could not show the final plot ({type(exc).__name__}: {exc}); "
                "here is the summary as text.",
            )
            _show_text(fmt.summary(run))
        self.close()

    def close(self) -> None:
        """Stop following the tracker and release the widget. Safe to call twice.

        The widget itself is closed when the next cell starts: the page's own
        messages to it (sent while the cell ran) reach the kernel only after
        the cell ends, and must still find it open.
        """
        with self._lock:
            self._done = True
            self._stop_following()
            widget, self._widget = self._widget, None
        if widget is not None:
            _close_later(widget, self.plot.layout)


_widgets_to_close: list[tuple[Any, Any]] = []


def _close_widget(widget: Any, layout: Any) -> None:
    try:
        widget.close()
        # Detach the plot, so the widget's own close at garbage collection finds
        # nothing left to remove (jupyter_bokeh's close is not idempotent).
        document = layout.document
        if document is not None:
            document.remove_root(layout)
    except Exception:
        pass


def _close_later(widget: Any, layout: Any) -> None:
    """Close ``widget`` when the next cell starts (at once outside IPython)."""
    from IPython.core.getipython import get_ipython

    shell = get_ipython()  # type: ignore[no-untyped-call]
    if shell is None:
        _close_widget(widget, layout)
        return
    _widgets_to_close.append((widget, layout))
    if close_finished_widgets not in shell.events.callbacks["pre_run_cell"]:
        shell.events.register("pre_run_cell", close_finished_widgets)


def close_finished_widgets(*_: Any) -> None:
    """Close the widgets of finished live views, and stop listening for cells."""
    while _widgets_to_close:
        _close_widget(*_widgets_to_close.pop())
    from IPython.core.getipython import get_ipython

    shell = get_ipython()  # type: ignore[no-untyped-call]
    if shell is not None and close_finished_widgets in shell.events.callbacks["pre_run_cell"]:
        shell.events.unregister("pre_run_cell", close_finished_widgets)
