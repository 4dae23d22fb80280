"""How busy the CPUs were between two readings, and how much of that was this kernel.

Both CPU sources use this: the RAPL reader for its process share, the CPU model
for its utilisation and process share. Between two calls of
:meth:`CpuActivity.update`:

* the machine's **busy fraction** is its busy CPU time over its total CPU time
  (from :func:`psutil.cpu_times`, summed over all logical CPUs; busy means
  everything but ``idle`` and ``iowait``, and on Linux ``guest`` time is not
  counted twice since the kernel already includes it in ``user``), the same
  figure as :func:`psutil.cpu_percent` but without psutil's shared state;
* the **process share** is the CPU time of the kernel's process tree (user plus
  system, waited-for children included, see
  :class:`carbon_jupyter.sensors.process.ProcessTree`) over the machine's busy
  CPU time, at most 1.

CPU time that reaches the tree's counter in one interval beyond what the
machine was busy (a child found late brings its time since it started, a
child's time and the machine's are counted on different clock ticks) is not
thrown away: it is **carried** to the following intervals, spent against busy
time the tree did not use there, and forgotten after :data:`CARRY_HORIZON_S`
seconds, so it cannot leak into an unrelated run much later.

CPU time is counted in clock ticks (10 ms on Linux), so an interval of less
than :data:`MIN_RESOLVED_S` machine CPU-seconds (the reading at a stop that
follows a tick closely) cannot tell busy from idle: its shown busy fraction
and process share are those of the previous resolved interval, and the next
share is measured from the last resolved reading. The raw figures of every
interval (:attr:`CpuDelta.interval_busy_s`, :attr:`CpuDelta.interval_total_s`)
are given as well, so a model that turns them into energy neither drops nor
counts twice any stretch of time.
"""

from __future__ import annotations

import os
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import psutil

from carbon_jupyter.sensors.process import ProcessTree, shared_tree
from carbon_jupyter.sensors.procfs import KeptFile

_CLOCK_TICKS_PER_S = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0
_PROC_STAT = KeptFile("/proc/stat")


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the machine since boot, summed over logical CPUs.

    On Linux the first line of ``/proc/stat`` is parsed directly, read through a
    descriptor kept open (one system call per sample); elsewhere
    :func:`psutil.cpu_times`.
    """
    if sys.platform.startswith("linux"):
        try:
            fields = _PROC_STAT.read(512).split(b"\n", 1)[0].split()
            if fields[0] == b"cpu":
                # user nice system idle iowait irq softirq steal [guest guest_nice]:
                # guest time is already inside user and nice, so it is not added again.
                ticks = [int(x) for x in fields[1:9]]
                total_s = sum(ticks) / _CLOCK_TICKS_PER_S
                idle_s = (ticks[3] + ticks[4]) / _CLOCK_TICKS_PER_S
                return total_s - idle_s, total_s
        except (OSError, ValueError, IndexError):
            pass
    times = psutil.cpu_times()
    named = times._asdict()
    total_s = sum(named.values())
    if sys.platform.startswith("linux"):
        total_s -= named.get("guest", 0.0) + named.get("guest_nice", 0.0)
    idle_s = named.get("idle", 0.0) + named.get("iowait", 0.0)
    return total_s - idle_s, total_s


#: Machine CPU-seconds an interval needs before its busy fraction is trusted (10 ticks).
MIN_RESOLVED_S = 0.1
#: Seconds (of wall time, measured as machine CPU time over the CPU count) that tree
#: CPU time beyond an interval's busy time is carried before it is forgotten.
CARRY_HORIZON_S = 10.0


def _clamp01(value: float) -> float:
    return min(1.0, max(0.0, value))


@dataclass(frozen=True)
class CpuDelta:
    """CPU activity between two updates.

    ``busy_fraction`` and ``process_share`` (0..1) are those of the latest
    resolved interval (see the module docstring); ``interval_busy_s`` and
    ``interval_total_s`` are the machine's busy and total CPU-seconds since
    the previous update, whatever their size; ``resolved`` says whether this
    interval had its own figures.
    """

    busy_fraction: float
    process_share: float
    interval_busy_s: float = 0.0
    interval_total_s: float = 0.0
    resolved: bool = True

    @property
    def interval_busy_fraction(self) -> float:
        """Busy fraction of this very interval; the shown one when it had no CPU time."""
        if self.interval_total_s <= 0:
            return self.busy_fraction
        return _clamp01(self.interval_busy_s / self.interval_total_s)


class CpuActivity:
    """Tracks machine and process-tree CPU time from one :meth:`update` to the next.

    ``machine_seconds`` returns (busy, total) CPU seconds and ``tree_seconds``
    the process tree's CPU seconds; both are cumulative counters. They default
    to :func:`machine_cpu_seconds` and the shared tree's ``cpu_seconds``.
    ``cpus`` (the logical CPU count, for the carry horizon) defaults to
    :func:`psutil.cpu_count`.
    """

    def __init__(
        self,
        tree: ProcessTree | None = None,
        *,
        machine_seconds: Callable[[], tuple[float, float]] = machine_cpu_seconds,
        tree_seconds: Callable[[], float] | None = None,
        cpus: int | None = None,
    ) -> None:
        if tree_seconds is None:
            tree_seconds = (tree if tree is not None else shared_tree()).cpu_seconds
        self._machine_seconds = machine_seconds
        self._tree_seconds = tree_seconds
        self._horizon_s = CARRY_HORIZON_S * (cpus or psutil.cpu_count() or 1)
        #: (busy, total) machine CPU-seconds at the previous update.
        self._raw: tuple[float, float] | None = None
        #: (busy, total, tree) CPU-seconds at the last resolved update.
        self._previous: tuple[float, float, float] | None = None
        self._last: CpuDelta | None = None
        #: Tree CPU-seconds not yet matched by busy time: (machine total when it
        #: arrived, seconds), oldest first.
        self._carry: deque[tuple[float, float]] = deque()

    @property
    def carried_s(self) -> float:
        """Tree CPU-seconds waiting to be matched by machine busy time."""
        return sum(seconds for _, seconds in self._carry)

    def update(self) -> CpuDelta | None:
        """Activity since the previous update; None on the first call."""
        busy_s, total_s = self._machine_seconds()
        raw, previous = self._raw, self._previous
        self._raw = (busy_s, total_s)
        if raw is None or previous is None:
            self._previous = (busy_s, total_s, self._tree_seconds())
            return None
        interval_busy_s = max(0.0, busy_s - raw[0])
        interval_total_s = max(0.0, total_s - raw[1])
        d_total = max(0.0, total_s - previous[1])
        if d_total < MIN_RESOLVED_S and self._last is not None:
            return CpuDelta(
                busy_fraction=self._last.busy_fraction,
                process_share=self._last.process_share,
                interval_busy_s=interval_busy_s,
                interval_total_s=interval_total_s,
                resolved=False,
            )
        tree_s = self._tree_seconds()
        self._previous = (busy_s, total_s, tree_s)
        d_busy = max(0.0, busy_s - previous[0])
        d_tree = max(0.0, tree_s - previous[2])
        busy_fraction = _clamp01(d_busy / d_total) if d_total > 0 else 0.0
        share = self._share(d_tree, d_busy, total_s)
        self._last = CpuDelta(
            busy_fraction=busy_fraction,
            process_share=share,
            interval_busy_s=interval_busy_s,
            interval_total_s=interval_total_s,
        )
        return self._last

    def _share(self, d_tree: float, d_busy: float, total_s: float) -> float:
        """The tree's share of ``d_busy``, spending and refilling the carry."""
        while self._carry and total_s - self._carry[0][0] > self._horizon_s:
            self._carry.popleft()
        if d_busy <= 0:
            # No busy time showed, so nothing of the interval is the tree's; whatever it
            # used shows in the machine's busy time of a later interval.
            if d_tree > 0:
                self._carry.append((total_s, d_tree))
            return 0.0
        used = min(d_tree, d_busy)
        spare = d_busy - used
        while spare > 0 and self._carry:
            arrived, seconds = self._carry[0]
            spent = min(seconds, spare)
            used += spent
            spare -= spent
            if spent < seconds:
                self._carry[0] = (arrived, seconds - spent)
            else:
                self._carry.popleft()
        if d_tree > d_busy:
            self._carry.append((total_s, d_tree - d_busy))
        return _clamp01(used / d_busy)
