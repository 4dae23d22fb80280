"""Bokeh in notebook outputs: BokehJS once per page, and plots filled into figures built once.

BokehJS
    :func:`load_bokehjs` puts BokehJS into the page once per kernel (and again
    when the cell that held it runs again). By default the library travels
    inside the notebook as one ``text/html`` output holding one ``<script>``
    (the core library only, about 1.3 MB), so saved plots render offline and
    wherever HTML outputs run their scripts (JupyterLab, Notebook 7, VS Code,
    ``jupyter nbconvert --to html``). ``resources="cdn"`` (or
    ``CARBON_JUPYTER_BOKEH_RESOURCES=cdn``) loads it from Bokeh's CDN instead:
    small notebooks, but the browser needs the network.

Power figures
    Building a Bokeh figure and serializing it costs tens of milliseconds,
    more than many cells take. :func:`power_template` builds the power figure
    (:func:`carbon_jupyter.show.plots.power_layout`) once per process for each set
    of devices, carbon intensity and attribution, serializes it with Bokeh's
    own embedding, and keeps the text. Each plot after that is that text with
    fresh model ids, its heading and its data filled in, which takes well
    under a millisecond:

    * :meth:`PowerTemplate.html` - a static plot (a ``<div>`` and a
      ``<script>``, as ``bokeh.embed.components`` gives) for a page that has
      BokehJS;
    * :meth:`PowerTemplate.page` - a self-contained page loading BokehJS from
      the CDN (Colab);
    * :meth:`PowerTemplate.widget_state` - the state of a live
      ``jupyter_bokeh`` widget whose data source is the one model kept in the
      kernel (:mod:`carbon_jupyter.show.livewidget`).

    Every plot's ids start with a prefix unique to the process and the plot,
    so plots from several kernels sit side by side in one saved notebook.
"""

from __future__ import annotations

import html
import itertools
import json
import os
import re
import threading
import uuid
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from carbon_jupyter.errors import ConfigError
from carbon_jupyter.model import DeviceInfo, Intensity
from carbon_jupyter.show import frontend

RESOURCE_MODES = ("inline", "cdn")
Bundle = dict[str, str]

# Placeholders where plots of one serialized figure differ; escaping leaves them as they are.
_HEADING = '"carbon-jupyter-fill-heading"'
_DATA = '"carbon-jupyter-fill-data"'
_SOURCE_ID = "carbon-jupyter-fill-source"
_ID_PREFIX = "carbon-jupyter-fill-id-"
_PROCESS = uuid.uuid4().hex[:6]
_plots = itertools.count(1)


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
            "about 1.3 MB per notebook) or cdn (small notebooks, needs the network)"
        )
    return value


def bokeh_resources(mode: str) -> Any:
    """The smallest BokehJS bundle the plots need: the core library, without widgets or tables."""
    from bokeh.resources import Resources

    return Resources(mode=mode, components=["bokeh"])  # type: ignore[arg-type]


@lru_cache(maxsize=1)
def inline_bokehjs_html() -> str:
    """One ``<script>`` defining BokehJS, unless the page already has this version."""
    import bokeh

    code = "\n".join(bokeh_resources("inline").js_raw).replace("</script", "<\\/script")
    version = json.dumps(bokeh.__version__)
    return (
        '<script type="text/javascript">\n(function(root) {\n'
        f"  if (root.Bokeh !== undefined && root.Bokeh[{version}] !== undefined) return;\n"
        f"  (function() {{\n{code}\n  }}).call(root);\n}})(window);\n</script>"
    )


_loaded: tuple[str | None, str | None] | None = None


def require_ipython() -> None:
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
    ``bokeh.io.output_notebook()`` (their bundle serves our plots too).
    """
    global _loaded
    mode = resources_mode(resources)
    require_ipython()
    cell, request = _execution()
    if _loaded is not None and not force:
        loaded_cell, loaded_request = _loaded
        if cell is None or cell != loaded_cell or request == loaded_request:
            return False
    from bokeh.io.state import curstate

    _loaded = (cell, request)
    if curstate().notebook and not force:
        return False
    if mode == "inline":
        from IPython.display import display

        display({"text/html": inline_bokehjs_html()}, raw=True)  # type: ignore[no-untyped-call]
    else:  # Bokeh's own loader: it waits for the CDN before the plots draw
        from bokeh.io.notebook import load_notebook

        load_notebook(bokeh_resources(mode), hide_banner=True)
    return True


# -- documents in outputs ------------------------------------------------------------------
def _in_script(text: str) -> str:
    """JSON ``text`` escaped as Bokeh escapes a document inside a ``<script>`` string."""
    return html.escape(text, quote=False).replace("'", "&#x27;").replace("\\", "\\\\")


def _div(element_id: str, root_id: str) -> str:
    return f'<div id="{element_id}" data-root-id="{root_id}" style="display: contents;"></div>'


def _script(docs_json: str, render_items: str) -> str:
    """A one-line ``<script>`` drawing a document once BokehJS is in the page.

    ``docs_json`` is the documents' JSON already escaped (:func:`_in_script`).
    It waits up to 10 s for BokehJS, since the output that brings it may be
    drawn later than this one (a notebook opened scrolled down).
    """
    return (
        '<script type="text/javascript">(function(){'
        f"var d='{docs_json}',r={render_items},n=0;"
        "function draw(){var B=window.Bokeh;"
        "if(B!==undefined&&B.embed!==undefined){B.safely(function(){B.embed.embed_items(d,r)})}"
        "else if(n++<500){setTimeout(draw,20)}"
        "else{console.error('carbon-jupyter: BokehJS is not in this page')}}"
        "if(document.readyState!=='loading'){draw()}"
        "else{document.addEventListener('DOMContentLoaded',draw)}})();</script>"
    )


def _serialized(layout: Any) -> tuple[Any, Any]:
    """``layout``'s documents as JSON-ready data and its render item (Bokeh's own embedding)."""
    from bokeh.document import Document
    from bokeh.embed.util import standalone_docs_json_and_render_items

    if layout.document is None:
        Document().add_root(layout)
    docs_json, [item] = standalone_docs_json_and_render_items(
        [layout], suppress_callback_warning=True
    )
    return docs_json, item


def _json(value: Any) -> str:
    from bokeh.core.json_encoder import serialize_json

    return str(serialize_json(value, pretty=False))


def embed_html(layout: Any) -> str:
    """``layout`` as a ``<div>`` and its ``<script>`` (the page must have BokehJS)."""
    docs_json, item = _serialized(layout)
    (root,) = item.roots
    return _div(root.elementid, root.id) + _script(
        _in_script(_json(docs_json)), _json([item.to_json()])
    )


def cdn_page(body: str, title: str) -> str:
    """A self-contained HTML page around ``body``, loading the BokehJS core from the CDN."""
    scripts = bokeh_resources("cdn").render_js()
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title or 'carbon-jupyter')}</title>\n{scripts}\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )


def figure_page(layout: Any, title: str, extra_html: str = "") -> str:
    """A self-contained page of a whole Bokeh ``layout`` (Colab), ``extra_html`` under it."""
    return cdn_page(f"{embed_html(layout)}\n{extra_html}", title)


# -- power figures built once -------------------------------------------------------------
def encode_data(data: Mapping[str, Any]) -> str:
    """A data source's columns as Bokeh serializes them (arrays as base64), as JSON."""
    from bokeh.core.serialization import Serializer

    return _json(Serializer(deferred=False).encode(dict(data)))


def _walk(node: Any) -> Any:
    """Every dict in a JSON tree."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


class PowerTemplate:
    """The power figure for one set of devices, serialized once and filled per plot.

    Every id (the document's, the models', the page element's) becomes a short
    one with a prefix unique to the process and the plot. Thread-safe:
    rendering only reads the texts made here.
    """

    def __init__(
        self, devices: Sequence[DeviceInfo], intensity: Intensity, attribution: str
    ) -> None:
        from bokeh.models import ColumnDataSource

        from carbon_jupyter.show.plots import SOURCE_NAME, power_layout, power_rows

        self.devices = tuple(devices)
        source = ColumnDataSource(power_rows(devices, [], intensity=intensity), name=SOURCE_NAME)
        layout = power_layout(devices, source, intensity, attribution, json.loads(_HEADING))
        docs_json, item = _serialized(layout)
        (root,) = item.roots
        ids = [str(item.docid), str(root.elementid)]
        for node in _walk(docs_json):
            if node.get("type") == "object" and "id" in node:
                ids.append(str(node["id"]))
                if node["id"] == source.id:
                    node["attributes"]["data"] = json.loads(_DATA)
        short = {old: f"{_ID_PREFIX}{k:x}" for k, old in enumerate(dict.fromkeys(ids))}
        short[source.id] = _SOURCE_ID
        pattern = re.compile(r'(?<=")(?:' + "|".join(map(re.escape, short)) + r')(?=\\?")')

        def renamed(text: str) -> str:
            return pattern.sub(lambda match: short[match.group(0)], text)

        div = renamed(_div(root.elementid, root.id))
        items = renamed(_json([item.to_json()]))
        docs = renamed(_json(docs_json))
        self._html = div + _script(_in_script(docs), items)
        self._state = _json({"docs_json": "@DOCS@", "render_items": "@ITEMS@", "div": div})
        self._state = self._state.replace('"@DOCS@"', docs).replace('"@ITEMS@"', items)
        for text in (self._html, self._state):
            for fill in (_HEADING, _DATA, _SOURCE_ID):
                if fill not in text:  # a Bokeh that serializes differently
                    raise RuntimeError(f"Bokeh {_bokeh_version()}: cannot fill in {fill}")

    @staticmethod
    def _prefix() -> str:
        return f"c{_PROCESS}{next(_plots):x}-"

    def html(self, data: Mapping[str, Any], title: str = "") -> str:
        """A static plot of ``data`` (the columns of :func:`~.plots.power_rows`)."""
        from carbon_jupyter.show.plots import power_title

        prefix = self._prefix()
        return (
            self._html.replace(_ID_PREFIX, prefix)
            .replace(_SOURCE_ID, prefix + "s")
            .replace(_HEADING, _in_script(json.dumps(power_title(title))))
            .replace(_DATA, _in_script(encode_data(data)))
        )

    def page(self, data: Mapping[str, Any], title: str = "", extra_html: str = "") -> str:
        """A self-contained page of the plot (BokehJS from the CDN), ``extra_html`` under it."""
        return cdn_page(f"{self.html(data, title)}\n{extra_html}", title)

    def widget_state(self, source_id: str, data: Mapping[str, Any], title: str = "") -> str:
        """A ``jupyter_bokeh`` widget's ``render_bundle`` (JSON) drawing the source ``source_id``.

        ``data`` are that source's columns now, so the page starts where the kernel is.
        """
        from carbon_jupyter.show.plots import power_title

        return (
            self._state.replace(_ID_PREFIX, self._prefix())
            .replace(_SOURCE_ID, source_id)
            .replace(_HEADING, json.dumps(power_title(title)))
            .replace(_DATA, encode_data(data))
        )


def _bokeh_version() -> str:
    import bokeh

    return str(bokeh.__version__)


_templates: dict[tuple[tuple[DeviceInfo, ...], Intensity, str], PowerTemplate] = {}
_templates_lock = threading.Lock()
MAX_TEMPLATES = 16


def power_template(
    devices: Sequence[DeviceInfo], intensity: Intensity, attribution: str
) -> PowerTemplate:
    """The :class:`PowerTemplate` for these devices, made on first use and kept (a few)."""
    key = (tuple(devices), intensity, attribution)
    with _templates_lock:
        found = _templates.get(key)
        if found is None:
            if len(_templates) >= MAX_TEMPLATES:
                _templates.pop(next(iter(_templates)))
            found = _templates[key] = PowerTemplate(*key)
        return found
