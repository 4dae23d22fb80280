"""Pages from templates: Jinja2 with autoescape, Bokeh figures embedded, BokehJS from the server.

Every value a template prints is escaped unless it is markup this package
made (:func:`markup`): Bokeh's own ``components`` output and
:func:`carbon_jupyter.show.display.summary_html`, which escapes what it
shows. User text reaches figures only as Bokeh data, which BokehJS draws as
text. Data for the page's script goes in as JSON inside a
``<script type="application/json">`` element, with ``<``, ``>`` and ``&``
escaped so no text can close it.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi.responses import HTMLResponse
from markupsafe import Markup

from carbon_jupyter.show import format as fmt

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
#: Where the server serves BokehJS from (the bokeh package's own files).
BOKEH_STATIC_URL = "/static/bokeh"
#: Where the dashboard's own script and style are served.
DASHBOARD_STATIC_URL = "/dashboard/static"


@lru_cache(maxsize=1)
def environment() -> Any:
    """The template environment (autoescape on for every template)."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["energy"] = fmt.energy
    env.filters["mass"] = fmt.mass
    env.filters["power"] = fmt.power
    env.filters["duration"] = fmt.duration
    env.filters["when"] = when
    env.globals["bokeh_js"] = bokeh_js_url()
    env.globals["static"] = DASHBOARD_STATIC_URL
    return env


def when(stamp: str | None) -> str:
    """A stored UTC timestamp as ``2025-01-02 03:04:05`` (the zone is said in the headings)."""
    if not stamp:
        return "-"
    return stamp[:19].replace("T", " ")


@lru_cache(maxsize=1)
def bokeh_js_url() -> str:
    """The URL of the BokehJS core served by this server, versioned so browsers cache it."""
    import bokeh

    return f"{BOKEH_STATIC_URL}/bokeh.min.js?v={bokeh.__version__}"


def bokeh_js_folder() -> Path:
    """The bokeh package's folder of built BokehJS files."""
    from bokeh.util.paths import bokehjs_path

    return Path(bokehjs_path()) / "js"


def markup(html: str) -> Markup:
    """Markup made by this package (Bokeh's embed output, escaped summaries): kept as is."""
    return Markup(html)  # only ever given markup built here


def page_data(data: Any) -> Markup:
    """``data`` as JSON safe inside ``<script type="application/json">``."""
    text = json.dumps(data, allow_nan=False, separators=(",", ":"))
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(text)  # JSON, every markup character escaped


def embed(model: Any) -> tuple[Markup, Markup]:
    """A Bokeh model as its ``<script>`` and ``<div>`` (BokehJS is loaded by the page)."""
    from bokeh.embed import components

    script, div = components(model)
    return markup(script), markup(div)


def render(
    template: str, status_code: int = 200, headers: dict[str, str] | None = None, **values: Any
) -> HTMLResponse:
    """The page ``template`` filled with ``values`` (who, open_server and bokeh optional)."""
    values.setdefault("who", None)
    values.setdefault("open_server", True)
    values.setdefault("bokeh", False)
    text = environment().get_template(template).render(**values)
    response = HTMLResponse(text, status_code=status_code, headers=headers)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def error_page(status_code: int, title: str, message: str, **values: Any) -> HTMLResponse:
    """A page saying what went wrong and what to do, with ``status_code``."""
    values.setdefault("who", None)
    values.setdefault("open_server", True)
    return render("error.html", status_code=status_code, title=title, message=message, **values)
