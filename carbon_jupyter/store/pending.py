"""Writes the run store could not take yet, kept in memory and written when it can.

A tracker hands its run to the store through a :class:`KeptWritesSink`
(:func:`carbon_jupyter.store.open_sink`). When a write fails (the disk is full,
the file is locked for too long, or cannot be opened at all), the sink keeps
it in memory, in order, with every later write for that store, and says so
once: which file, why, and that the run is kept and will be written when the
store can be written again. It tries again:

* when a run starts or stops (``begin_run``, ``finish_run``), so at the latest
  at the next run;
* while a run is live, at most every :data:`RETRY_INTERVAL_S` seconds;
* when the process exits (``atexit``).

So a run that finished while the disk was full is stored finished, with its
samples, as soon as space is back, and nothing is written twice (samples carry
their sequence numbers, runs are written whole). When everything kept has been
written the sink says so; if the process ends first, its last message names
the runs that could not be written (the store then marks them ``lost`` the next
time it is opened, saying why that may be). At most :data:`MAX_KEPT_SAMPLES`
samples are kept; beyond that the oldest batches of live samples go first (a
finished run carries its own samples, so little is lost).
"""

from __future__ import annotations

import atexit
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from carbon_jupyter.errors import StoreError
from carbon_jupyter.model import Run, Sample
from carbon_jupyter.notices import logger
from carbon_jupyter.store.failures import disk_full
from carbon_jupyter.store.sqlite import Store

#: The shortest wait between two tries while a run is live, in seconds.
RETRY_INTERVAL_S = 5.0
#: The most samples kept in memory for one store, all kept runs together.
MAX_KEPT_SAMPLES = 400_000

_sinks: dict[Path, KeptWritesSink] = {}
_sinks_lock = threading.Lock()
_exit_hook_lock = threading.Lock()
_exit_hook_registered = False


@dataclass
class _Write:
    """One sink call that could not be made yet."""

    method: str  # begin_run, add_samples or finish_run
    run: Run | None
    run_id: str
    samples: list[Sample]


class KeptWritesSink:
    """A run sink over the store at ``path`` that keeps what it could not write yet.

    ``opener`` opens the :class:`~carbon_jupyter.store.Store`; it is called on the
    first write and again after a failure to open. ``clock`` is a monotonic clock in
    seconds. Every method is thread-safe. See the module docstring.
    """

    def __init__(
        self,
        path: Path,
        opener: Callable[[], Store],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self._opener = opener
        self._clock = clock
        self._store: Store | None = None
        self._lock = threading.RLock()
        self._kept: list[_Write] = []
        self._last_try_s = 0.0
        self._dropped_samples = 0
        self._reason = ""

    def __repr__(self) -> str:
        return f"KeptWritesSink({str(self.path)!r}, kept={len(self._kept)})"

    # -- the sink ----------------------------------------------------------------------
    def begin_run(self, run: Run) -> None:
        self._write(_Write("begin_run", run, run.id, []), retry_now=True)

    def add_samples(self, run_id: str, samples: Sequence[Sample]) -> None:
        if samples:
            self._write(_Write("add_samples", None, run_id, list(samples)), retry_now=False)

    def finish_run(self, run: Run) -> None:
        self._write(_Write("finish_run", run, run.id, []), retry_now=True)

    def open(self) -> Store:
        """Open the store now, to fail early on a path that cannot hold one (StoreError)."""
        with self._lock:
            if self._store is None:
                self._store = self._opener()
            return self._store

    def prepare(self) -> None:
        """Open the store now if it can be, so that a run's first write does not wait for it.

        A failure is left for the first write, which keeps the run and says why.
        """
        try:
            self.open()
        except StoreError:
            pass

    # -- what is kept ------------------------------------------------------------------
    @property
    def kept_runs(self) -> list[str]:
        """The ids of the runs with writes kept in memory, oldest first."""
        with self._lock:
            return list(dict.fromkeys(w.run_id for w in self._kept))

    def retry(self) -> bool:
        """Write what is kept now. True when nothing is left kept."""
        with self._lock:
            return self._retry_locked()

    # -- internals ---------------------------------------------------------------------
    def _write(self, write: _Write, *, retry_now: bool) -> None:
        with self._lock:
            if self._kept:
                due = retry_now or self._clock() - self._last_try_s >= RETRY_INTERVAL_S
                if not (due and self._retry_locked()):
                    self._keep(write)
                    return
            try:
                self._apply(write)
            except StoreError as exc:
                self._keep(write)
                self._say_kept(exc, write.run_id)

    def _apply(self, write: _Write) -> None:
        store = self.open()
        if write.method == "add_samples":
            store.add_samples(write.run_id, write.samples)
        elif write.method == "begin_run":
            assert write.run is not None
            store.begin_run(write.run)
        else:
            assert write.run is not None
            store.finish_run(write.run)

    def _retry_locked(self) -> bool:
        self._last_try_s = self._clock()
        runs = len({w.run_id for w in self._kept})
        while self._kept:
            try:
                self._apply(self._kept[0])
            except StoreError as exc:
                self._reason = _sentence(exc)
                return False
            self._kept.pop(0)
        if runs:
            dropped = (
                f" ({self._dropped_samples} live samples had to be dropped to save memory)"
                if self._dropped_samples
                else ""
            )
            logger.warning(
                "carbon-jupyter: the run store %s can be written again: %d kept run%s "
                "written%s.",
                self.path, runs, "" if runs == 1 else "s", dropped,
            )  # fmt: skip
            self._dropped_samples = 0
        self._reason = ""
        return True

    def _keep(self, write: _Write) -> None:
        if write.method == "finish_run" and write.run is not None and write.run.samples:
            # A finished run carries its samples: kept batches it covers are not needed.
            first_t_s = write.run.samples[0].t_s
            self._kept = [
                w
                for w in self._kept
                if not (
                    w.method == "add_samples"
                    and w.run_id == write.run_id
                    and w.samples[0].t_s >= first_t_s
                )
            ]
        self._kept.append(write)
        kept_samples = sum(len(w.samples) for w in self._kept)
        while kept_samples > MAX_KEPT_SAMPLES:
            oldest = next((w for w in self._kept if w.method == "add_samples"), None)
            if oldest is None:
                break
            self._kept.remove(oldest)
            kept_samples -= len(oldest.samples)
            self._dropped_samples += len(oldest.samples)
        _call_at_exit()

    def _say_kept(self, exc: StoreError, run_id: str) -> None:
        first = not self._reason
        self._reason = _sentence(exc)
        if not first:
            return
        when = "space is back" if disk_full(exc) else "the run store can be written again"
        logger.warning(
            "carbon-jupyter: %s Run %s is kept in memory and will be written when %s "
            "(tried again at each run, and when this process exits); later runs wait with it.",
            self._reason, run_id[:8], when,
        )  # fmt: skip

    def _at_exit(self) -> None:
        with self._lock:
            if not self._kept or self._retry_locked():
                return
            runs = [w.run for w in self._kept if w.run is not None]
            named = {r.id: f"{r.id[:8]} ({r.label})" if r.label else r.id[:8] for r in runs}
            ids = [named.get(run_id, run_id[:8]) for run_id in self.kept_runs]
            logger.warning(
                "carbon-jupyter: %d run%s could not be written to the run store %s before this "
                "process ended: %s. %s Their figures were shown when they stopped; a run whose "
                "start was stored shows as lost.",
                len(ids), "" if len(ids) == 1 else "s", self.path, ", ".join(ids), self._reason,
            )  # fmt: skip


def sink_for(path: Path, opener: Callable[[], Store]) -> KeptWritesSink:
    """The one sink of this process for the store at ``path`` (made on first use)."""
    with _sinks_lock:
        sink = _sinks.get(path)
        if sink is None:
            sink = KeptWritesSink(path, opener)
            _sinks[path] = sink
        return sink


def forget() -> None:
    """Drop every sink and what it keeps, unwritten (tests)."""
    with _sinks_lock:
        _sinks.clear()


def write_kept_now() -> None:
    """Try to write everything kept, for every store; say what could not be written."""
    with _sinks_lock:
        sinks = list(_sinks.values())
    for sink in sinks:
        sink._at_exit()


def _call_at_exit() -> None:
    global _exit_hook_registered
    with _exit_hook_lock:
        if not _exit_hook_registered:
            atexit.register(write_kept_now)
            _exit_hook_registered = True


def _sentence(exc: BaseException) -> str:
    text = str(exc).strip()
    return text if text.endswith((".", "!", "?")) else f"{text}."
