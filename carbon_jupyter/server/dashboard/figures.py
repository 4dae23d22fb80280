"""The dashboard's figures, built and serialized once per kind, then filled with each page's data.

Building a Bokeh figure and serializing it costs tens of milliseconds on a
small machine, more than the rest of a page. As the notebook does
(:mod:`carbon_jupyter.show.embed`), the dashboard keeps each figure's
embedding text and puts fresh data into it:

* :func:`totals_html` - energy or CO2e per day
  (:func:`carbon_jupyter.show.plots_totals.totals_layout`), one template per
  metric, grouping and unit;
* :func:`power_html` - one run's power and CO2e
  (:func:`carbon_jupyter.show.embed.power_template`, the notebook's own).

The data goes in as Bokeh serializes it, escaped as Bokeh escapes a
document inside a ``<script>``, so user text stays data.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from markupsafe import Markup

from carbon_jupyter.model import DeviceInfo, Intensity, Sample

_lock = threading.Lock()
_totals: dict[tuple[str, str, str], tuple[str, str, str]] = {}


def _in_script(text: str) -> str:
    """JSON ``text`` escaped as Bokeh escapes a document inside a ``<script>`` string."""
    return html.escape(text, quote=False).replace("'", "&#x27;").replace("\\", "\\\\")


def _totals_template(metric: str, by: str, unit: str) -> tuple[str, str, str]:
    """The script and div of an empty totals figure, and the text of its empty data."""
    from bokeh.embed import components
    from bokeh.models import ColumnDataSource

    from carbon_jupyter.show.embed import encode_data
    from carbon_jupyter.show.plots_totals import TOTALS_COLUMNS, TOTALS_SOURCE, totals_layout

    key = (metric, by, unit)
    with _lock:
        found = _totals.get(key)
    if found is not None:
        return found
    empty: dict[str, list[Any]] = {c: [] for c in TOTALS_COLUMNS}
    source = ColumnDataSource(empty, name=TOTALS_SOURCE)
    script, div = components(totals_layout(source, metric=metric, by=by, unit=unit))
    needle = _in_script(encode_data(empty))
    if script.count(needle) != 1:  # a Bokeh that serializes differently
        raise RuntimeError("cannot find the totals figure's data in Bokeh's embedding")
    made = (script, div, needle)
    with _lock:
        _totals[key] = made
    return made


def warm_totals(by: str = "user") -> None:
    """Build the runs page's default totals figures (energy and CO2e, both units) ahead."""
    for metric, units in (("energy", ("Wh", "kWh")), ("co2", ("g", "kg"))):
        for unit in units:
            _totals_template(metric, by, unit)


def totals_html(data: Any, *, by: str) -> tuple[Markup, Markup]:
    """The totals figure of ``data`` (a :class:`~carbon_jupyter.show.plots_totals.TotalsData`)."""
    from carbon_jupyter.show.embed import encode_data

    try:
        script, div, needle = _totals_template(data.metric, by, data.unit)
    except RuntimeError:
        from bokeh.embed import components
        from bokeh.models import ColumnDataSource

        from carbon_jupyter.show.plots_totals import TOTALS_SOURCE, totals_layout

        source = ColumnDataSource(data.columns, name=TOTALS_SOURCE)
        layout = totals_layout(source, metric=data.metric, by=by, unit=data.unit)
        built_script, built_div = components(layout)
        return Markup(built_script), Markup(built_div)
    filled = script.replace(needle, _in_script(encode_data(data.columns)))
    return Markup(filled), Markup(div)  # Bokeh's embedding, the data escaped as Bokeh does


def power_html(
    devices: Sequence[DeviceInfo],
    samples: Sequence[Sample],
    *,
    intensity: Intensity,
    attribution: str,
    title: str,
) -> Markup:
    """One run's power and CO2e plot (the notebook's figure), as a ``<div>`` and its script."""
    from carbon_jupyter.show.embed import power_template
    from carbon_jupyter.show.plots import power_rows

    data: Mapping[str, Any] = power_rows(
        devices, samples, intensity=intensity, attribution=attribution
    )
    return Markup(power_template(devices, intensity, attribution).html(data, title))
