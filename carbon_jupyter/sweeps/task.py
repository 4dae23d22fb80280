"""One configuration of a submitted sweep, run on the host given it, and sent to the server.

A team server's executor hands each configuration to a host: its own machine
(the ``local`` executor) or a Dask worker (``dask://...``). Either calls
:func:`run_task`, which

1. waits for the host's sweep lock (:func:`host_lock`): one configuration at a
   time per machine, whatever the number of server or Dask worker processes on
   it, so that runs do not disturb each other's measurements;
2. writes the target into a fresh folder (:meth:`SweepSpec.materialize`);
3. runs it in a fresh process, tracked on this host
   (:func:`~carbon_jupyter.sweeps.runner.run_configuration`), forwarding the
   run and its live samples to the server every few seconds, through an
   outbox in this host's executor store (:func:`executor_store`), so that a
   server briefly away loses nothing;
4. waits until the server has the final run, and returns what happened.

:func:`run_task` is a plain function of plain data (:class:`ConfigTask`), so Dask
can ship it to a worker; the worker needs carbon-jupyter installed.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

#: How often a configuration's live samples reach the server, in seconds.
LIVE_INTERVAL_S = 2.0
#: How long a finished run may take to reach the server before the task returns anyway.
DELIVERY_WAIT_S = 60.0
#: The environment variable naming the executor store (default: beside the local store).
EXECUTOR_DB_ENV = "CARBON_JUPYTER_EXECUTOR_DB"


@dataclass(frozen=True)
class ConfigTask:
    """What a host needs to run one configuration of a submitted sweep."""

    sweep_id: str
    spec: dict[str, Any]
    repeat: int
    config: str
    index: int
    total: int
    #: The server's URL as this host reaches it, and the token to send runs with.
    server: str
    token: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def executor_store() -> Path:
    """The SQLite file where a host keeps the runs it measured for sweeps, and their outbox."""
    override = os.environ.get(EXECUTOR_DB_ENV, "").strip()
    if override:
        return Path(override).expanduser().absolute()
    from carbon_jupyter.store import default_db_path

    return default_db_path().with_name("executor.db")


def lock_path() -> Path:
    """The file every sweep process of this host locks while it runs a configuration."""
    return Path(tempfile.gettempdir()) / f"carbon-jupyter-sweep-{os.getuid()}.lock"


@contextlib.contextmanager
def host_lock(poll_s: float = 0.2) -> Iterator[None]:
    """Hold this host's sweep lock; released when the holder ends, even when it dies."""
    import fcntl

    with open(lock_path(), "a+b") as handle:
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                time.sleep(poll_s)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def run_task(task: ConfigTask | dict[str, Any]) -> dict[str, Any]:
    """Run one configuration (see the module docstring); its run's id, status and error."""
    from carbon_jupyter.forward.config import Destination
    from carbon_jupyter.forward.registry import sender_for
    from carbon_jupyter.forward.sink import BothSinks, ForwardSink
    from carbon_jupyter.store import open_sink
    from carbon_jupyter.sweeps.runner import run_configuration
    from carbon_jupyter.sweeps.spec import SweepSpec

    if isinstance(task, dict):
        task = ConfigTask(**task)
    spec = SweepSpec.from_json(task.spec)
    config = spec.configuration(task.config)
    store = executor_store()
    store.parent.mkdir(parents=True, exist_ok=True)
    destination = Destination.of(task.server, task.token, interval_s=LIVE_INTERVAL_S)
    sender = sender_for(store, destination)
    sink = BothSinks(open_sink(str(store)), ForwardSink(sender))
    with host_lock(), tempfile.TemporaryDirectory(prefix="carbon-sweep-") as folder:
        target = spec.materialize(Path(folder))
        run = run_configuration(
            target,
            config,
            task.repeat,
            task.sweep_id,
            index=task.index,
            total=task.total,
            output_dir=Path(folder) / "out",
            tracker_options={**spec.options, "sink": sink},
            label=spec.label or spec.target_name(),
            phase=spec.phase,
            items=spec.items,
        )
    delivered = sender.flush(DELIVERY_WAIT_S)
    return {
        "run_id": run.id,
        "status": run.status,
        "error": run.error,
        "host": socket.gethostname(),
        "delivered": delivered,
    }
