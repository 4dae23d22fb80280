"""The live view of a cell run on a Dask cluster: one line per host, then the job.

:class:`HostsView` is a :class:`~carbon_jupyter.show.live.LiveView` that follows a
:class:`~carbon_jupyter.jobs.hostfeed.HostsFeed` instead of a tracker: each host
of the job is a line of the power plot (its devices once, drawn dashed where
any of them is an estimate), and the CO2e curve adds up every host. A host that
joins mid-cell draws the plot again with its line added. When the cell ends,
:meth:`HostsView.finish_job` puts the static plot of every point drawn above the
job's text (:func:`carbon_jupyter.jobs.show.job_text`): its totals, each host
with its devices and methods, and its parts, as stored.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from carbon_jupyter.notices import notice_once
from carbon_jupyter.show import frontend
from carbon_jupyter.show.display import Bundle, _show_text, plot_above
from carbon_jupyter.show.embed import power_template
from carbon_jupyter.show.live import LiveView
from carbon_jupyter.show.plots import power_rows

if TYPE_CHECKING:
    from carbon_jupyter.jobs.group import Job
    from carbon_jupyter.jobs.hostfeed import HostsFeed
    from carbon_jupyter.model import Sample


def job_bundle(job: Job | None, feed: HostsFeed, *, title: str = "", colab: bool = False) -> Bundle:
    """The hosts' static power plot above the job's text, as a display bundle.

    ``job`` None (it could not be read here) leaves the plot alone.
    """
    from carbon_jupyter.jobs.show import job_text

    devices = feed.devices
    data = power_rows(devices, feed.history(), intensity=feed.intensity, attribution="device")
    template = power_template(devices, feed.intensity, "device")
    text = job_text(job) if job is not None else f"carbon: {title or 'job'}: hosts as drawn"
    summary = f'<pre class="carbon-jupyter-job">{html.escape(text)}</pre>'
    return {
        "text/html": plot_above(template, data, title, summary, colab=colab),
        "text/plain": text,
    }


class HostsView(LiveView):
    """One line per host of ``feed``'s job while the cell runs; see the module docs."""

    def __init__(self, feed: HostsFeed, **options: Any) -> None:
        super().__init__(feed, **options)
        self.feed = feed

    def follow(self) -> HostsView:
        """Poll the hosts (the first poll now) and draw them; call it once the tracker started."""
        if self._done or not self.plotted:
            return self
        try:
            self.feed.start()
        except Exception as exc:
            self._degrade(exc)
            return self
        super().follow()
        return self

    def _on_samples(self, samples: Sequence[Sample]) -> None:
        """A host that joined draws the plot again, its line added, from the first point."""
        with self._lock:
            if self._done or self.plot is None:
                return
            devices = self.feed.devices
            if devices != self._devices:
                try:
                    self._drop_widget()
                    self._show_plot(devices)
                except Exception as exc:
                    self._degrade(exc)
                    return
                self._pending = []
                self._last_push = -math.inf
                samples = self.feed.history()
        super()._on_samples(samples)

    def finish_job(self, job: Job | None) -> None:
        """Replace the live plot with the static plot of every point and the job's text."""
        from carbon_jupyter.jobs.show import job_text

        with self._lock:
            self._done = True
            self._stop_following()
        self.feed.stop()
        problem = "the live plot was never shown"
        if self._handle is not None:
            colab = self.mode == frontend.COLAB
            try:
                bundle = job_bundle(job, self.feed, title=self.title, colab=colab)
                self._handle.update(bundle, raw=True)
                problem = ""
            except Exception as exc:
                problem = f"{type(exc).__name__}: {exc}"
        if problem:
            notice_once(
                "final-view-failed",
                f"carbon-jupyter: could not show the final plot ({problem}); "
                "here is the job as text.",
            )
            if job is not None:
                _show_text(job_text(job))
        self.close()

    def close(self) -> None:
        """Stop polling the hosts and following them. Safe twice."""
        self.feed.stop()
        super().close()
