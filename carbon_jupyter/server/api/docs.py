"""The interactive API documentation at ``/docs``, served by this server alone.

FastAPI's own ``/docs`` page loads Swagger UI's script and style from a CDN, so
opening it reaches the internet. Here they come from the ``fastapi-offline``
package (installed with the ``server`` extra; it ships Swagger UI 5, which reads
OpenAPI 3.1), served under ``/docs/static``;
the page reads the description from ``/openapi.json`` as before. Where the
package is missing, ``/docs`` says so in one line and points to
``/openapi.json``; it never falls back to a CDN. Like ``/openapi.json``, the
page needs no token (the API it describes does).
"""

from __future__ import annotations

import html
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

#: Where the page's script, style and icon are served from.
STATIC = "/docs/static"


def swagger_ui_folder() -> Path | None:
    """The folder of Swagger UI's files in ``fastapi-offline``, or None if not installed."""
    import importlib.resources
    import importlib.util

    if importlib.util.find_spec("fastapi_offline") is None:
        return None
    folder = Path(str(importlib.resources.files("fastapi_offline") / "static"))
    return folder if (folder / "swagger-ui-bundle.js").is_file() else None


def add_docs(app: FastAPI) -> None:
    """``/docs`` (and its files under ``/docs/static``) on ``app``, made with ``docs_url=None``."""
    folder = swagger_ui_folder()
    openapi_url = app.openapi_url or "/openapi.json"
    title = f"{app.title}: API"
    if folder is not None:
        app.mount(STATIC, StaticFiles(directory=folder), name="swagger-ui")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        if folder is None:
            return HTMLResponse(
                f"<!doctype html><title>{html.escape(title)}</title><p>The interactive "
                "documentation needs the <code>fastapi-offline</code> package: "
                "<code>pip install 'carbon-jupyter[server]'</code>. The API's description is "
                f'at <a href="{openapi_url}">{openapi_url}</a>.</p>'
            )
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=title,
            swagger_js_url=f"{STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{STATIC}/swagger-ui.css",
            swagger_favicon_url=f"{STATIC}/favicon.png",
        )
