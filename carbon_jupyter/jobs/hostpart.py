"""The host part of a job: one process per host measures the host's shared devices.

The CPU packages and the memory of a machine are shared by every rank on it;
measured by each rank they would be counted once per rank. So each rank's
tracker starts a :class:`HostPart` beside it, and the host parts of one job
on one host compete for a lock file (:func:`lock_path`, ``flock``): the one
that holds it measures the host's CPU and RAM as a part of its own, tagged
``part=host``; the others wait in the kernel (a blocking ``flock``: no CPU, no
polling). The lock belongs to the holder's open file, so when the holder ends
(or dies) the kernel releases it and wakes a waiting rank at once, which starts
a new host part from that moment. The host part hands every sample to the store
as it is taken, so a holder that dies loses none it took: the gap is at most
one sampling interval.

Two optional hooks let the caller act on the edges of a part's life without
holding up the lock: ``on_taken`` runs in the host part's thread once the lock
came to this process and its tracker started; ``on_stopped`` runs in the thread
that calls :meth:`HostPart.stop`, after the host part (if held) has ended. Both
must not raise (:mod:`carbon_jupyter.jobs.lost` uses them to tell the team
server about the parts of dead processes).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from carbon_jupyter.jobs.identity import JobIdentity

LOCK_DIR_ENV = "CARBON_JUPYTER_LOCK_DIR"


def lock_path(identity: JobIdentity) -> Path:
    """The lock file of ``identity``'s job on its host (in ``CARBON_JUPYTER_LOCK_DIR`` or /tmp)."""
    folder = Path(os.environ.get(LOCK_DIR_ENV, "").strip() or tempfile.gettempdir())
    digest = hashlib.sha256(f"{identity.job_id}\0{identity.host}".encode()).hexdigest()[:20]
    return folder / f"carbon-jupyter-job-{digest}.lock"


class HostPart:
    """Competes for the host's lock; while held, runs the tracker ``make_tracker`` builds.

    ``on_taken`` and ``on_stopped`` are the hooks of the module docstring.
    """

    def __init__(
        self,
        identity: JobIdentity,
        make_tracker: Callable[[], Any],
        *,
        on_taken: Callable[[], None] | None = None,
        on_stopped: Callable[[], None] | None = None,
    ) -> None:
        self.identity = identity
        self._make_tracker = make_tracker
        self._on_taken = on_taken
        self._on_stopped = on_stopped
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.tracker: Any = None
        self.held = threading.Event()
        self._state = threading.Lock()
        self._status = "ok"

    def start(self) -> HostPart:
        self._thread = threading.Thread(target=self._main, name="carbon-host-part", daemon=True)
        self._thread.start()
        return self

    def stop(self, status: str = "ok", timeout_s: float = 10.0) -> None:
        """End the host part if this process holds it (waiting for its run to be stored).

        A rank still waiting for the lock stops waiting: when the lock comes to it,
        it gives the lock up at once, to the next rank waiting. ``on_stopped`` runs
        once, at the first call.
        """
        with self._state:
            first = not self._stop.is_set()
            self._status = status
            self._stop.set()
            holding = self.held.is_set()
        if holding and self._thread is not None:
            self._thread.join(timeout_s)
        if first and self._on_stopped is not None:
            self._on_stopped()

    def _main(self) -> None:
        import fcntl

        path = lock_path(self.identity)
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)  # sleeps until the lock is ours
            try:
                with self._state:
                    if self._stop.is_set():
                        return
                    self.tracker = self._make_tracker().start()
                    self.held.set()
                if self._on_taken is not None:
                    self._on_taken()
                self._stop.wait()
                self.tracker.stop(self._status)
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
