"""The Jupyter server extension behind the JupyterLab sidebar.

Installing carbon-jupyter enables it (``jupyter server extension list`` shows
``carbon_jupyter``). It serves JSON over the run store that the kernels write,
under ``<base_url>carbon-jupyter/api/``; every route needs the server's token
or login cookie, exactly like Jupyter's own API:

=========================================  ================================================
``GET /``                                  version and the run store's path
``GET /runs``                              runs, newest first; filters ``label``, ``phase``,
                                           ``notebook``, ``kernel``, ``since``, ``status``
                                           (comma-separated), ``tag``, ``origin``, ``limit``
``GET /runs/<id>``                         one run by id or unique prefix, with its samples
                                           (``?samples=0`` for none)
``GET /kernels/<kernel_id>/live``          the kernel's current run and its samples after
                                           ``?since=<cursor>`` (send back ``run`` and
                                           ``cursor`` from the previous answer)
``GET /kernels/<kernel_id>/totals``        count, duration, energy and CO2 of the kernel's
                                           runs, and the carbon intensity in use
``GET /machine``                           the machine's power now, per device
``GET /forwarding``                        forwarding to a team server: the server, requests
                                           waiting, the last delivery and the last error
=========================================  ================================================

For example, with the token printed by ``jupyter lab``::

    curl -H "Authorization: token $TOKEN" http://127.0.0.1:8888/carbon-jupyter/api/runs?limit=5

The extension only reads the store: before the first tracked run there is no
file, and the routes answer as for an empty store (no runs, zero totals; one
run by id is 404). A bad parameter is a 400 naming it.

The machine's power is read in the server process only while some client polls
``/machine``; it stops ``machine_idle_s`` seconds after the last poll. Settings
are on :class:`~carbon_jupyter.serverext.app.CarbonJupyterApp`
(``c.CarbonJupyterApp.machine_interval_s = 0.5`` in ``jupyter_server_config.py``).

Importing this package is cheap; Jupyter Server is imported only when the
server loads the extension.
"""

from __future__ import annotations

from typing import Any


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from carbon_jupyter.serverext.app import CarbonJupyterApp

    return [{"module": "carbon_jupyter.serverext.app", "app": CarbonJupyterApp}]
