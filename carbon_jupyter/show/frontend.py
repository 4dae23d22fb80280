"""Where the code runs, and so how a run can be shown: decided here, in one place.

:func:`detect` answers one of:

=====================  ==========================================================
``jupyter-widgets``    a Jupyter kernel with ipywidgets and jupyter_bokeh importable
                       (JupyterLab, Notebook 7, VS Code): a live Bokeh widget
``colab``              Google Colab: display updates with self-contained HTML
``html``               a Jupyter kernel without widgets: display updates with HTML
``terminal``           IPython in a terminal, or plain Python: text only
``none``               nothing shown while running; a summary at the end
=====================  ==========================================================

``CARBON_JUPYTER_DISPLAY`` overrides the guess: ``widgets``, ``html``,
``colab``, ``text`` or ``none`` (the full names above work too). Detection
never raises: anything unexpected falls back to ``html`` inside a kernel and
to ``terminal`` elsewhere.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Mapping
from typing import Any

from carbon_jupyter.notices import notice_once

WIDGETS = "jupyter-widgets"
COLAB = "colab"
HTML = "html"
TERMINAL = "terminal"
NONE = "none"
MODES = (WIDGETS, COLAB, HTML, TERMINAL, NONE)

#: Values accepted by CARBON_JUPYTER_DISPLAY and by a view's ``mode`` argument.
ALIASES = {
    "widgets": WIDGETS,
    "widget": WIDGETS,
    "jupyter-widgets": WIDGETS,
    "html": HTML,
    "colab": COLAB,
    "text": TERMINAL,
    "terminal": TERMINAL,
    "none": NONE,
    "off": NONE,
}


def normalise(mode: str) -> str | None:
    """The mode an alias names (``text`` -> ``terminal``), or None when unknown."""
    return ALIASES.get(mode.strip().lower())


def _shell() -> Any:
    """The running IPython shell, without importing IPython when it is not loaded."""
    if "IPython" not in sys.modules:
        return None
    try:
        from IPython import get_ipython

        return get_ipython()
    except Exception:
        return None


def in_kernel(shell: Any = None) -> bool:
    """True inside a Jupyter kernel (ipykernel's shell), False in a terminal or plain Python."""
    shell = _shell() if shell is None else shell
    if shell is None:
        return False
    if getattr(shell, "kernel", None) is not None:
        return True
    return any(cls.__name__ == "ZMQInteractiveShell" for cls in type(shell).__mro__)


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _from_environment(environ: Mapping[str, str]) -> str | None:
    value = environ.get("CARBON_JUPYTER_DISPLAY", "").strip()
    if not value:
        return None
    mode = normalise(value)
    if mode is None:
        notice_once(
            "display-env-unknown",
            f"carbon-jupyter: CARBON_JUPYTER_DISPLAY={value!r} is not one of widgets, html, "
            "colab, text, none; ignoring it and choosing the display from the environment.",
        )
    return mode


def detect(environ: Mapping[str, str] | None = None) -> str:
    """How runs can be shown here: one of :data:`MODES` (see the module docs)."""
    env = os.environ if environ is None else environ
    kernel = False
    try:
        override = _from_environment(env)
        if override is not None:
            return override
        if "google.colab" in sys.modules:
            return COLAB
        shell = _shell()
        kernel = in_kernel(shell)
        if not kernel:
            return TERMINAL
        if "spyder_kernels" in sys.modules:  # Spyder's console shows text, not HTML
            return TERMINAL
        if _importable("ipywidgets") and _importable("jupyter_bokeh"):
            return WIDGETS
        return HTML
    except Exception:
        return HTML if kernel else TERMINAL
