"""A rank's share of its host's CPU: its process tree's CPU time against the machine's.

A rank part does not read the CPU energy counters (the host part measures the
host's CPU packages once, see :mod:`carbon_jupyter.jobs.hostpart`), but it
keeps what is needed to give it its share of them. :class:`RankCpuShare`
reads two cumulative counters when the rank starts and when it stops:

* the CPU time (user plus system) of the rank's process tree, children
  included: those it waited for, and those still alive at the stop (a data
  loader's workers), through the process-wide
  :class:`~carbon_jupyter.sensors.process.ProcessTree`;
* the machine's busy CPU seconds (:func:`~carbon_jupyter.sensors.cpu_share.machine_cpu_seconds`).

Their differences are stored on the rank's run as the tags :data:`CPU_TIME_TAG`
and :data:`HOST_BUSY_TAG` (seconds, as text); :mod:`carbon_jupyter.jobs.group`
turns them into the rank's ``cpu_share`` and ``cpu_process_energy_j``. The
tree is also read on the sampler's ticks, at most every :data:`POLL_PERIOD_S`
seconds: a descendant that leaves the tree still running (its parent ended
without waiting for it) then keeps the CPU time it had when last read.

The cost is two reads of ``/proc`` at the start and the stop, and one read of
the tree per poll (tens of microseconds for a rank with a few threads).
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from carbon_jupyter.measure.sampler import Sampler

#: Tag of a rank part: its process tree's CPU seconds (user + system) during the run.
CPU_TIME_TAG = "cpu_time_s"
#: Tag of a rank part: the machine's busy CPU seconds (all logical CPUs) during the run.
HOST_BUSY_TAG = "host_busy_cpu_s"
#: Least seconds between two reads of the process tree on the sampler's ticks.
POLL_PERIOD_S = 1.0


class RankCpuShare:
    """Reads a rank's CPU time and the machine's busy time at start and stop.

    ``tree_seconds`` (the process tree's CPU seconds), ``machine_busy_s`` (the
    machine's busy CPU seconds) and ``clock`` are injectable for tests; by
    default the shared process tree, ``/proc/stat`` and the monotonic clock.
    Nothing here raises: a counter that cannot be read leaves the tags out.
    """

    def __init__(
        self,
        *,
        tree_seconds: Callable[[], float] | None = None,
        machine_busy_s: Callable[[], float] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # Imported here: grouping (which reads the tags) needs no sensors.
        from carbon_jupyter.sensors.cpu_share import machine_cpu_seconds
        from carbon_jupyter.sensors.process import shared_tree

        self._tree_seconds = tree_seconds or (lambda: shared_tree().cpu_seconds())
        self._machine_busy_s = machine_busy_s or (lambda: machine_cpu_seconds()[0])
        self._clock = clock
        self._lock = threading.Lock()
        self._start: tuple[float, float] | None = None
        self._polled_at = 0.0
        self._tags: dict[str, str] = {}

    def _read(self, *, machine_first: bool) -> tuple[float, float] | None:
        """(tree, machine) seconds; the machine read first at the start and last at the stop,
        so that the machine's window holds the tree's."""
        try:
            if machine_first:
                busy_s = self._machine_busy_s()
                return self._tree_seconds(), busy_s
            tree_s = self._tree_seconds()
            return tree_s, self._machine_busy_s()
        except Exception:
            return None

    def start(self, sampler: Sampler | None = None) -> RankCpuShare:
        """Read both counters (the run's zero); poll the tree on ``sampler``'s ticks."""
        with self._lock:
            self._start = self._read(machine_first=True)
            self._polled_at = self._clock()
        if sampler is not None:
            sampler.subscribe(self.poll)
        return self

    def poll(self, _samples: Sequence[Any] = ()) -> None:
        """Read the process tree, at most every :data:`POLL_PERIOD_S` (a sampler listener)."""
        now = self._clock()
        if now - self._polled_at < POLL_PERIOD_S:
            return
        self._polled_at = now
        with contextlib.suppress(Exception):
            self._tree_seconds()

    def stop(self) -> Mapping[str, str]:
        """Read both counters again; the run's tags (empty if a counter was unreadable)."""
        with self._lock:
            if self._start is None or self._tags:
                return dict(self._tags)
            end = self._read(machine_first=False)
            if end is None:
                return {}
            cpu_s = max(0.0, end[0] - self._start[0])
            busy_s = max(0.0, end[1] - self._start[1])
            self._tags = {CPU_TIME_TAG: f"{cpu_s:.3f}", HOST_BUSY_TAG: f"{busy_s:.3f}"}
            return dict(self._tags)


def read_share(tags: Mapping[str, str]) -> float | None:
    """The share (0..1) of the host's busy CPU time a rank's tags record; None if unknown.

    The rank's CPU seconds over the machine's busy CPU seconds during its run,
    at most 1 (the two counters tick on different clocks). None when a tag is
    missing (a rank still running, lost, or from an older version) or the
    machine showed no busy time.
    """
    try:
        cpu_s = float(tags[CPU_TIME_TAG])
        busy_s = float(tags[HOST_BUSY_TAG])
    except (KeyError, ValueError):
        return None
    if not (math.isfinite(cpu_s) and math.isfinite(busy_s)) or busy_s <= 0 or cpu_s < 0:
        return None
    return min(1.0, cpu_s / busy_s)
