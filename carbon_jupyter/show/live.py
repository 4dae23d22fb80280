"""The live view: a run's plot growing while it runs, then its static plot and summary.

:class:`LiveView` follows a :class:`~carbon_jupyter.measure.tracker.Tracker`. Its work
is split so that none of it falls inside the run's measured window::

    view = LiveView(tracker, title="fine-tune").show(devices)  # before tracker.start()
    tracker.start()
    view.follow()                                               # takes the samples
    ...                                                         # the measured code
    view.finish(tracker.stop())                                 # after the window

``show`` puts the empty plot in the page (``devices`` are those the tracker
will measure; :func:`carbon_jupyter.sensors.discover` knows them before it
starts), ``follow`` subscribes to the samples, and ``finish`` replaces the
live output with :func:`carbon_jupyter.show.display.run_bundle`'s static plot and
summary. :meth:`LiveView.start` does ``show`` and ``follow`` at once for a
tracker already running. How the plot is shown depends on the frontend (see
:mod:`carbon_jupyter.show.display`); showing one costs well under a millisecond
once the process has made its first (:mod:`carbon_jupyter.show.embed`).

A live widget stays open after its run, because the page's messages to it,
sent while the cell ran, reach the kernel only after the cell ends; the next
live view (or :func:`close_finished_widgets`) closes it. Nothing is left
registered on the cells in between.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from carbon_jupyter.errors import ConfigError
from carbon_jupyter.model import DeviceInfo, Run, Sample
from carbon_jupyter.notices import notice_once
from carbon_jupyter.show import format as fmt
from carbon_jupyter.show import frontend
from carbon_jupyter.show.display import (
    Bundle,
    _display,
    _show,
    _show_text,
    run_bundle,
    summary_bundle,
)
from carbon_jupyter.show.embed import load_bokehjs, power_template, require_ipython, resources_mode


class Followed(Protocol):
    """What a live view reads of what it follows: a tracker, or the hosts of a job."""

    @property
    def label(self) -> str | None: ...

    @property
    def intensity(self) -> Any: ...

    @property
    def attribution(self) -> str: ...

    @property
    def devices(self) -> tuple[DeviceInfo, ...]: ...

    def subscribe(
        self, listener: Callable[[Sequence[Sample]], None], *, replay: bool = False
    ) -> Callable[[], None]: ...


#: Points per device kept while a run is live, where each update resends the plot.
HTML_ROLLOVER = 300
_PLOTTED = (frontend.WIDGETS, frontend.HTML, frontend.COLAB)


class LiveView:
    """Show ``tracker``'s run live in the notebook, then the final plot and summary.

    ``mode`` is a :func:`~carbon_jupyter.show.frontend.detect` mode or alias
    (default: detected), ``resources`` where BokehJS comes from (``inline`` or
    ``cdn``, see :mod:`carbon_jupyter.show.embed`), ``min_update_s`` the least time
    between two live updates. A bad ``mode`` or ``resources`` is said once
    and replaced by the default, never raised: the run is measured anyway.
    See the module docs for the order of calls; :meth:`close` drops a view
    that will not be finished.
    """

    def __init__(
        self,
        tracker: Followed,
        *,
        mode: str | None = None,
        title: str = "",
        resources: str | None = None,
        min_update_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tracker = tracker
        self.title = title or tracker.label or ""
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
        #: The :class:`~carbon_jupyter.show.plots.LivePlot` being fed (None without a live plot).
        self.plot: Any = None
        self._devices: tuple[DeviceInfo, ...] | None = None
        self._template: Any = None
        self._widget: Any = None
        self._handle: Any = None
        self._unsubscribe: Callable[[], None] | None = None
        self._done = False

    @property
    def plotted(self) -> bool:
        """Whether this view draws a plot (else it shows the summary only, or text)."""
        return self.mode in _PLOTTED

    # -- showing ----------------------------------------------------------------------
    def start(self) -> LiveView:
        """Show the live plot of a tracker already running and follow its samples."""
        return self.show().follow()

    def show(self, devices: Sequence[DeviceInfo] | None = None) -> LiveView:
        """Put the empty live plot for ``devices`` (default: the tracker's) into the page."""
        if not self.plotted:
            return self
        try:
            close_finished_widgets()
            self._show_plot(self.tracker.devices if devices is None else devices)
        except Exception as exc:
            self._degrade(exc)
        return self

    def follow(self) -> LiveView:
        """Take the tracker's samples, those so far first; call it once the tracker started.

        If the tracker measures other devices than the plot was shown for, the
        plot is shown again for them.
        """
        if self._done or not self.plotted:
            return self
        try:
            devices = self.tracker.devices
            if self.plot is None or devices != self._devices:
                self._drop_widget()
                self._show_plot(devices)
            self._unsubscribe = self.tracker.subscribe(self._on_samples, replay=True)
        except Exception as exc:
            self._degrade(exc)
        return self

    def _show_plot(self, devices: Sequence[DeviceInfo]) -> None:
        from carbon_jupyter.show.plots import LIVE_ROLLOVER, LivePlot

        require_ipython()
        t = self.tracker
        self._devices = tuple(devices)
        self._template = power_template(self._devices, t.intensity, t.attribution)
        self.plot = LivePlot(
            self._devices,
            intensity=t.intensity,
            attribution=t.attribution,
            title=self.title,
            rollover=LIVE_ROLLOVER if self.mode == frontend.WIDGETS else HTML_ROLLOVER,
        )
        if self.mode in (frontend.WIDGETS, frontend.HTML):
            load_bokehjs(self.resources)
        if self.mode == frontend.WIDGETS:
            from carbon_jupyter.show.livewidget import LiveWidget

            source = self.plot.source
            state = self._template.widget_state(source.id, source.data, self.title)
            self._widget = LiveWidget(source, state)
        bundle = self._live_bundle()
        if self._handle is None:
            self._handle = _display(bundle, display_id=True)
            if self._handle is None:
                raise RuntimeError("the notebook gave no display handle")
        else:
            self._handle.update(bundle, raw=True)

    def _live_bundle(self) -> Bundle:
        text = f"carbon: measuring {self.title}".rstrip()
        if self.mode == frontend.WIDGETS:
            return {**self._widget._repr_mimebundle_(), "text/plain": text}
        data = self.plot.source.data
        if self.mode == frontend.COLAB:
            return {"text/html": self._template.page(data, self.title), "text/plain": text}
        return {"text/html": self._template.html(data, self.title), "text/plain": text}

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

    # -- the end ----------------------------------------------------------------------
    def finish(self, run: Run) -> None:
        """Replace the live plot with a static plot of every sample and the summary."""
        with self._lock:
            self._done = True
            self._stop_following()
        try:
            if self._handle is not None and self.plotted:
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
        """Stop following the tracker; its widget is closed by the next view. Safe twice."""
        with self._lock:
            self._done = True
            self._stop_following()
            widget, self._widget = self._widget, None
        if widget is not None:
            _widgets_to_close.append(widget)

    def _drop_widget(self) -> None:
        widget, self._widget = self._widget, None
        if widget is not None:
            _widgets_to_close.append(widget)


def devices_to_measure(gpus: str | None = None) -> tuple[DeviceInfo, ...] | None:
    """The devices a tracker started now would measure, for :meth:`LiveView.show`.

    ``gpus`` as a tracker takes it (None: ``CARBON_JUPYTER_GPUS``). Discovery is
    kept per process, so the tracker then finds the same. None when discovery
    fails here: the tracker says why when it starts.
    """
    from carbon_jupyter.sensors import discover
    from carbon_jupyter.settings import Settings

    try:
        if gpus is None:
            gpus = Settings.from_env().gpus
        return tuple(sensor.info for sensor in discover(gpus=gpus).sensors)
    except Exception:
        return None


_widgets_to_close: list[Any] = []


def close_finished_widgets(*_: Any) -> None:
    """Close the widgets of finished live views (the next view and unloading do this)."""
    while _widgets_to_close:
        try:
            _widgets_to_close.pop().close()
        except Exception:
            pass
