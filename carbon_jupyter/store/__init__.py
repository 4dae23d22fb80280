"""The shared run store: every measured run, its devices and its live samples, in one SQLite file.

Every view (notebook, sidebar, server, CLI) reads this store, so they cannot
disagree. The file is ``$CARBON_JUPYTER_DB`` when set, else
``<jupyter data dir>/carbon_jupyter/carbon.db`` (``jupyter --data-dir`` shows
the folder). It is created readable by its owner only, and shared safely by
every kernel, thread and server process on the machine.

::

    from carbon_jupyter.store import open_store

    store = open_store()
    store.runs(label="fine-tune", since="7d")           # Run records, newest first
    store.runs(notebook="train.ipynb", as_frame=True)   # a pandas DataFrame
    run = store.get_run("3f2a")                         # by id or unique id prefix
    store.samples(run.id)                               # the live readings of one run
    store.totals(by="day", since="30d")                 # count, duration, energy, CO2
    store.export_csv("runs.csv", samples=True)          # runs.csv and runs-samples.csv
    store.export_json("runs.json")                      # lossless; store.import_json(...)
    store.export_codecarbon("emissions.csv")            # CodeCarbon's layout
    store.import_codecarbon("old/emissions.csv")        # bring a CodeCarbon history in

While a run is live the tracker writes it here: the run at start (status
``running``), its samples in batches about once a second, the final record at
stop (``ok``, ``error``, ``interrupted``). A run whose process died (a killed
kernel) is marked ``lost`` with the energy flushed until then.

When the file cannot be used (a read-only folder, a full disk, a file that is
not a carbon-jupyter database or is damaged, a file from a newer version), a
:class:`~carbon_jupyter.errors.StoreError` names the file and the fix. The
store never deletes or rewrites a file it cannot read.
"""

from __future__ import annotations

import os
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from carbon_jupyter.model import Run
from carbon_jupyter.store.query import RunFilter, RunNotFoundError
from carbon_jupyter.store.sqlite import DEFAULT_TIMEOUT_S, Store

__all__ = [
    "RunFilter",
    "RunNotFoundError",
    "Store",
    "default_db_path",
    "get_run",
    "open_store",
    "runs",
    "samples",
    "totals",
]

ENV_VAR = "CARBON_JUPYTER_DB"

_shared: dict[Path, Store] = {}
_shared_lock = threading.Lock()


def default_db_path() -> Path:
    """``$CARBON_JUPYTER_DB`` if set, else ``<jupyter data dir>/carbon_jupyter/carbon.db``."""
    override = os.environ.get(ENV_VAR, "").strip()
    if override:
        return Path(override).expanduser().absolute()
    from jupyter_core.paths import jupyter_data_dir

    return Path(jupyter_data_dir()) / "carbon_jupyter" / "carbon.db"


def open_store(
    path: str | os.PathLike[str] | None = None, *, timeout_s: float = DEFAULT_TIMEOUT_S
) -> Store:
    """Open (creating if needed) the run store at ``path``, by default :func:`default_db_path`.

    Opening checks the file, upgrades an older schema in place and marks ``lost``
    the runs of processes that died. Without ``path`` the store is shared within
    the process (one per default path), so calling this for every run is cheap.
    ``timeout_s`` is how long a write waits for another writer before failing.
    Raises :class:`~carbon_jupyter.errors.StoreError` when the file cannot be used.
    """
    if path is not None:
        return Store(path, timeout_s=timeout_s)
    target = default_db_path()
    with _shared_lock:
        store = _shared.get(target)
        if store is None:
            store = Store(target, timeout_s=timeout_s)
            _shared[target] = store
        return store


def runs(
    label: str | None = None,
    phase: str | None = None,
    notebook: str | None = None,
    kernel: str | None = None,
    since: datetime | timedelta | str | None = None,
    status: str | list[str] | None = None,
    tag: str | dict[str, str] | None = None,
    limit: int | None = 50,
    as_frame: bool = False,
) -> Any:
    """Runs in the default store, newest first; see :meth:`Store.runs`."""
    return open_store().runs(
        label=label, phase=phase, notebook=notebook, kernel=kernel, since=since,
        status=status, tag=tag, limit=limit, as_frame=as_frame,
    )  # fmt: skip


def samples(run_id: str, since_seq: int | None = None, *, as_frame: bool = False) -> Any:
    """The samples of a run in the default store; see :meth:`Store.samples`."""
    return open_store().samples(run_id, since_seq, as_frame=as_frame)


def get_run(run_id: str, *, samples: bool = False) -> Run:
    """One run of the default store by id or unique id prefix; see :meth:`Store.get_run`."""
    return open_store().get_run(run_id, samples=samples)


def totals(
    by: str = "label", since: datetime | timedelta | str | None = None, **filters: Any
) -> list[dict[str, Any]]:
    """Totals of the default store grouped by label, notebook, phase or day."""
    return open_store().totals(by, since, **filters)
