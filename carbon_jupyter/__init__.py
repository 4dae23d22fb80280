"""carbon-jupyter: the energy and CO2 of machine-learning work, measured where it is written.

Python API::

    import carbon_jupyter as cj

    with cj.track("fine-tune", phase="train") as t:
        train()
    print(t.run)                      # a Run: energy_j, co2_g, per device and method

    @cj.track("predict", phase="inference", items=1000)
    def predict(): ...

    cj.runs(label="fine-tune")        # stored runs, newest first
    cj.iter_runs(label="sweep-*")     # every matching run, streamed
    cj.samples(run_id)                # the power samples of one run
    cj.totals(by="day")               # energy and CO2 added up per label, notebook, phase, day
    cj.log_metric("accuracy", 0.91)   # the user's own result, stored with the current run
    cj.sweep("train.py", params={"batch": [32, 128]}, threads=[1, 2])  # compare configurations

In a notebook: ``%load_ext carbon_jupyter`` then ``%%carbon`` on a cell.

Importing this package is cheap: Bokeh, NVML and the store are imported on
first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from carbon_jupyter._version import __version__

if TYPE_CHECKING:
    from carbon_jupyter.measure.metrics import log_metric
    from carbon_jupyter.measure.track import track
    from carbon_jupyter.measure.tracker import Tracker
    from carbon_jupyter.model import DeviceEnergy, DeviceInfo, Intensity, Run, Sample
    from carbon_jupyter.sweeps.api import sweep

__all__ = [
    "DeviceEnergy",
    "DeviceInfo",
    "Intensity",
    "Run",
    "Sample",
    "Tracker",
    "__version__",
    "iter_runs",
    "job",
    "load_ipython_extension",
    "log_metric",
    "runs",
    "samples",
    "sweep",
    "totals",
    "track",
    "unload_ipython_extension",
]

_LAZY = {
    "Tracker": "carbon_jupyter.measure.tracker",
    "track": "carbon_jupyter.measure.track",
    "Run": "carbon_jupyter.model",
    "Sample": "carbon_jupyter.model",
    "DeviceInfo": "carbon_jupyter.model",
    "DeviceEnergy": "carbon_jupyter.model",
    "Intensity": "carbon_jupyter.model",
    "log_metric": "carbon_jupyter.measure.metrics",
    "sweep": "carbon_jupyter.sweeps.api",
    "job": "carbon_jupyter.jobs",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'carbon_jupyter' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


def runs(**filters: Any) -> Any:
    """Stored runs, newest first; see :meth:`carbon_jupyter.store.Store.runs` for the filters."""
    from carbon_jupyter.store import open_store

    return open_store(create=False).runs(**filters)


def iter_runs(**filters: Any) -> Any:
    """Every stored run matching ``filters``, newest first, streamed one at a time.

    See :meth:`carbon_jupyter.store.Store.iter_runs`.
    """
    from carbon_jupyter.store import open_store

    return open_store(create=False).iter_runs(**filters)


def samples(run_id: str) -> Any:
    """The stored samples of one run (an id or a unique prefix of one)."""
    from carbon_jupyter.store import open_store

    store = open_store(create=False)
    return store.samples(store.get_run(run_id).id)


def totals(by: str = "label", **filters: Any) -> Any:
    """Count, duration, energy and CO2 of stored runs per label, notebook, phase or day."""
    from carbon_jupyter.store import open_store

    return open_store(create=False).totals(by=by, **filters)


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext carbon_jupyter``: register the ``%carbon`` and ``%%carbon`` magics."""
    from carbon_jupyter.notebook.magics import load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext carbon_jupyter``: remove the magics and every hook they registered."""
    from carbon_jupyter.notebook.magics import unload

    unload(ipython)


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    """Jupyter Server: the sidebar's REST routes (see :mod:`carbon_jupyter.serverext`)."""
    from carbon_jupyter.serverext import _jupyter_server_extension_points as points

    return points()


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """JupyterLab: the prebuilt sidebar extension shipped in the package."""
    return [{"src": "labextension", "dest": "carbon-jupyter"}]
