"""The server extension's settings and lifecycle (a Jupyter ``ExtensionApp``).

Settings go in ``jupyter_server_config.py`` (or on the command line), e.g.::

    c.CarbonJupyterApp.machine_interval_s = 0.5
    c.CarbonJupyterApp.db_path = "/data/carbon.db"

The app opens the run store on first use, for reading only: it never creates
the file (before the first tracked run there is none, and the routes answer as
for an empty store), and on a full disk it reads the file as it is. It runs
blocking reads on a few worker threads (SQLite and hardware reads never block
the server's event loop), checks every few seconds whether the machine-power
sampler has been left unpolled, and stops everything when the server shuts down.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from jupyter_server.extension.application import ExtensionApp
from tornado.ioloop import PeriodicCallback
from traitlets import Float, Int, TraitError, Unicode, validate

from carbon_jupyter.errors import ConfigError
from carbon_jupyter.measure.sampler import check_interval
from carbon_jupyter.serverext.machine import MachinePower
from carbon_jupyter.store import Store, open_store

T = TypeVar("T")


class CarbonJupyterApp(ExtensionApp):
    """carbon-jupyter's server extension: REST routes for the JupyterLab sidebar."""

    name = "carbon_jupyter"
    description = "REST routes over the carbon-jupyter run store, for the JupyterLab sidebar."
    load_other_extensions = True

    db_path = Unicode(
        "",
        help="The run store file. Empty: $CARBON_JUPYTER_DB, else "
        "<jupyter data dir>/carbon_jupyter/carbon.db, the file the kernels write.",
    ).tag(config=True)
    machine_interval_s = Float(
        1.0, help="Seconds between readings of the machine's power (0.05-60)."
    ).tag(config=True)
    machine_idle_s = Float(
        10.0,
        help="Stop reading the machine's power when no client has asked for it for this "
        "many seconds.",
    ).tag(config=True)
    max_runs = Int(500, help="The most runs one request to /runs returns.").tag(config=True)
    max_samples = Int(3600, help="The most samples one request to /kernels/<id>/live returns.").tag(
        config=True
    )

    @validate("machine_interval_s")
    def _check_interval(self, proposal: Any) -> float:
        try:
            return check_interval(proposal["value"])
        except ConfigError as exc:
            raise TraitError(f"CarbonJupyterApp.machine_interval_s: {exc}") from None

    @validate("machine_idle_s", "max_runs", "max_samples")
    def _check_positive(self, proposal: Any) -> Any:
        if proposal["value"] <= 0:
            name = proposal["trait"].name
            raise TraitError(f"CarbonJupyterApp.{name} must be positive, not {proposal['value']}")
        return proposal["value"]

    # -- lifecycle (called by Jupyter Server) ------------------------------------------
    def initialize_settings(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="carbon-serverext")
        self._store_lock = threading.Lock()
        self._store: Store | None = None
        self.machine = MachinePower(interval_s=self.machine_interval_s, idle_s=self.machine_idle_s)
        check_ms = 1000 * min(max(self.machine_idle_s / 2, 0.5), 5.0)
        self._idle_check = PeriodicCallback(self._check_idle, check_ms)
        self._idle_check.start()

    def initialize_handlers(self) -> None:
        from carbon_jupyter.serverext.handlers import ROUTES

        self.handlers.extend(ROUTES)

    async def stop_extension(self) -> None:
        self._idle_check.stop()
        await self.run_blocking(self.machine.close)
        self._executor.shutdown(wait=True)
        if self.db_path and self._store is not None:
            self._store.close()

    # -- used by the handlers ----------------------------------------------------------
    def store(self) -> Store:
        """The run store, opened for reading on first use.

        Raises :class:`~carbon_jupyter.store.StoreMissingError` while there is no store
        yet (asked again at every call, so the first run's store is found), and
        StoreError naming the fix when the file cannot be used.
        """
        if not self.db_path:
            return open_store(create=False)  # shared per path, follows $CARBON_JUPYTER_DB
        with self._store_lock:
            if self._store is not None:
                return self._store
            store = open_store(self.db_path, create=False)
            if not store.read_only:  # read-only is for now (a full disk); reopen next time
                self._store = store
            return store

    async def run_blocking(self, fn: Callable[[], T]) -> T:
        """``fn()`` on a worker thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    def _check_idle(self) -> None:
        self._executor.submit(self.machine.stop_if_idle)
