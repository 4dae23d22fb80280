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
    for run in store.iter_runs(label="sweep-*"): ...    # every match, streamed
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
store never deletes or rewrites a file it cannot read; ``carbon-jupyter store
check`` and ``store recover`` (:mod:`carbon_jupyter.store.recover`) deal with a
damaged one.

Reading never creates: the readers here (and ``open_store(create=False)``)
raise :class:`~carbon_jupyter.store.failures.StoreMissingError` where there is
no store yet, and read a store on a full disk as it is. A tracker writes through
:func:`open_sink`, which keeps in memory what the store cannot take yet (a full
disk) and writes it when it can (:mod:`carbon_jupyter.store.pending`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from carbon_jupyter.model import Run
from carbon_jupyter.store import pending
from carbon_jupyter.store.failures import StoreMissingError
from carbon_jupyter.store.pending import KeptWritesSink
from carbon_jupyter.store.query import RunFilter, RunNotFoundError
from carbon_jupyter.store.sqlite import DEFAULT_TIMEOUT_S, Store

__all__ = [
    "KeptWritesSink",
    "RunFilter",
    "RunNotFoundError",
    "Store",
    "StoreMissingError",
    "default_db_path",
    "get_run",
    "iter_runs",
    "open_sink",
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
    path: str | os.PathLike[str] | None = None,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    create: bool = True,
) -> Store:
    """Open (creating if needed) the run store at ``path``, by default :func:`default_db_path`.

    Opening checks the file, upgrades an older schema in place and marks ``lost``
    the runs of processes that died. Without ``path`` the store is shared within
    the process (one per default path), so calling this for every run is cheap.
    ``timeout_s`` is how long a write waits for another writer before failing.
    ``create=False`` opens for reading: nothing is created, a missing store raises
    :class:`~carbon_jupyter.store.failures.StoreMissingError`, and a file that cannot
    be written (a full disk) is opened read-only.
    Raises :class:`~carbon_jupyter.errors.StoreError` when the file cannot be used.
    """
    if path is not None:
        return Store(path, timeout_s=timeout_s, create=create)
    target = default_db_path()
    with _shared_lock:
        store = _shared.get(target)
        if store is None:
            store = Store(target, timeout_s=timeout_s, create=create)
            if store.read_only:  # a reader's view for now; a writer needs a writable one
                return store
            _shared[target] = store
        return store


def open_sink(path: str | os.PathLike[str] | None = None) -> KeptWritesSink:
    """Where a tracker writes runs: the store at ``path`` (default :func:`default_db_path`).

    The store is opened (created if needed) now when it can be. A write it cannot take
    (a full disk, a file that cannot be opened) is kept in memory, said once, and made
    when the store can be written again; see :mod:`carbon_jupyter.store.pending`. One
    sink per path and process, so the next run writes what an earlier one could not.
    """
    if path is None:
        target = default_db_path()
        sink = pending.sink_for(target, lambda: _shared_or_own(target))
    else:
        target = Path(path).expanduser().absolute()
        sink = pending.sink_for(target, lambda: Store(target))
    sink.prepare()
    return sink


def _shared_or_own(target: Path) -> Store:
    """The shared store while ``target`` is still the default path, else one of its own."""
    return open_store() if default_db_path() == target else Store(target)


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
    return open_store(create=False).runs(
        label=label, phase=phase, notebook=notebook, kernel=kernel, since=since,
        status=status, tag=tag, limit=limit, as_frame=as_frame,
    )  # fmt: skip


def iter_runs(
    label: str | None = None,
    phase: str | None = None,
    notebook: str | None = None,
    kernel: str | None = None,
    since: datetime | timedelta | str | None = None,
    status: str | list[str] | None = None,
    tag: str | dict[str, str] | None = None,
    limit: int | None = None,
) -> Iterator[Run]:
    """Runs in the default store, newest first, streamed; see :meth:`Store.iter_runs`."""
    return open_store(create=False).iter_runs(
        label=label, phase=phase, notebook=notebook, kernel=kernel, since=since,
        status=status, tag=tag, limit=limit,
    )  # fmt: skip


def samples(run_id: str, since_seq: int | None = None, *, as_frame: bool = False) -> Any:
    """The samples of a run in the default store; see :meth:`Store.samples`."""
    return open_store(create=False).samples(run_id, since_seq, as_frame=as_frame)


def get_run(run_id: str, *, samples: bool = False) -> Run:
    """One run of the default store by id or unique id prefix; see :meth:`Store.get_run`."""
    return open_store(create=False).get_run(run_id, samples=samples)


def totals(
    by: str = "label", since: datetime | timedelta | str | None = None, **filters: Any
) -> list[dict[str, Any]]:
    """Totals of the default store grouped by label, notebook, phase or day."""
    return open_store(create=False).totals(by, since, **filters)
