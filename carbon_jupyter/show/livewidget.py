"""The live plot's ``jupyter_bokeh`` widget, made from a figure serialized once.

A :class:`jupyter_bokeh.BokehModel` normally serializes a whole Bokeh layout
when it is made (tens of milliseconds) and keeps every model of it in the
kernel. :class:`LiveWidget` is handed the serialized state instead
(:meth:`carbon_jupyter.show.embed.PowerTemplate.widget_state`) and keeps one model:
the data source, in a document of its own. Streaming to that source sends the
same small patch messages to the page as ``BokehModel`` does.

The page's own changes (ranges moved by the user, sizes measured by the
browser) are not applied in the kernel: the live plot is only looked at, and
replaced by a static plot when the run ends. Imported only where
``jupyter_bokeh`` is installed.
"""

from __future__ import annotations

from typing import Any

from bokeh.document import Document
from bokeh.models import ColumnDataSource
from ipywidgets import DOMWidget
from jupyter_bokeh import BokehModel
from traitlets import Dict


def _state_text(value: Any, widget: LiveWidget) -> str:
    return widget.state_text


class LiveWidget(BokehModel):  # type: ignore[misc]
    """A ``BokehModel`` drawing ``source`` from ``state_text`` (its ``render_bundle``, as JSON)."""

    render_bundle = Dict().tag(sync=True, to_json=_state_text)

    def __init__(self, source: ColumnDataSource, state_text: str) -> None:
        document = source.document
        if document is None:
            document = Document()
            document.add_root(source)
        self._model = source
        self.state_text = state_text
        # BokehModel's own __init__ would serialize a layout: only the widget is set up here.
        DOMWidget.__init__(self)
        document.on_change_dispatch_to(self)

    def close(self) -> None:
        """Close the widget and detach its source (safe to call twice)."""
        document = self._model.document
        DOMWidget.close(self)
        if document is not None:
            document.remove_on_change(self)
            document.remove_root(self._model)
