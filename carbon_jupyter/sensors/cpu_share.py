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
  system, reaped children included, see
  :class:`carbon_jupyter.sensors.process.ProcessTree`) over the machine's busy
  CPU time, clamped to 0..1. A child reaped between two readings brings all
  its CPU time at once, which the clamp caps at the whole machine's.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

import psutil

from carbon_jupyter.sensors.process import ProcessTree, shared_tree

_CLOCK_TICKS_PER_S = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the machine since boot, summed over logical CPUs.

    On Linux the first line of ``/proc/stat`` is parsed directly (a few
    microseconds, read on every sample); elsewhere :func:`psutil.cpu_times`.
    """
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/stat", "rb") as f:
                fields = f.readline().split()
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


def _clamp01(value: float) -> float:
    return min(1.0, max(0.0, value))


@dataclass(frozen=True)
class CpuDelta:
    """CPU activity between two updates (fractions in 0..1)."""

    busy_fraction: float
    process_share: float


class CpuActivity:
    """Tracks machine and process-tree CPU time from one :meth:`update` to the next.

    ``machine_seconds`` returns (busy, total) CPU seconds and ``tree_seconds``
    the process tree's CPU seconds; both are cumulative counters. They default
    to :func:`machine_cpu_seconds` and ``ProcessTree().cpu_seconds``.
    """

    def __init__(
        self,
        tree: ProcessTree | None = None,
        *,
        machine_seconds: Callable[[], tuple[float, float]] = machine_cpu_seconds,
        tree_seconds: Callable[[], float] | None = None,
    ) -> None:
        if tree_seconds is None:
            tree_seconds = (tree if tree is not None else shared_tree()).cpu_seconds
        self._machine_seconds = machine_seconds
        self._tree_seconds = tree_seconds
        self._previous: tuple[float, float, float] | None = None
        self._last: CpuDelta | None = None

    def since_boot_busy_fraction(self) -> float:
        """The machine's busy fraction averaged since boot (a prior before any update)."""
        busy_s, total_s = self._machine_seconds()
        return _clamp01(busy_s / total_s) if total_s > 0 else 0.0

    def update(self) -> CpuDelta | None:
        """Activity since the previous update; None on the first call.

        CPU time is counted in clock ticks (10 ms on Linux), so an interval of
        less than :data:`MIN_RESOLVED_S` CPU-seconds across the machine (the
        reading at a stop that follows a tick closely) cannot tell busy from
        idle: the previous figures are returned, and the next interval is
        measured from the last resolved reading.
        """
        busy_s, total_s = self._machine_seconds()
        tree_s = self._tree_seconds()
        previous = self._previous
        if previous is None:
            self._previous = (busy_s, total_s, tree_s)
            return None
        d_total = max(0.0, total_s - previous[1])
        if d_total < MIN_RESOLVED_S and self._last is not None:
            return self._last
        self._previous = (busy_s, total_s, tree_s)
        d_busy = max(0.0, busy_s - previous[0])
        d_tree = max(0.0, tree_s - previous[2])
        busy_fraction = _clamp01(d_busy / d_total) if d_total > 0 else 0.0
        # No busy time at all: the tree used nothing, or less than one clock tick showed.
        share = _clamp01(d_tree / d_busy) if d_busy > 0 else float(d_tree > 0)
        self._last = CpuDelta(busy_fraction=busy_fraction, process_share=share)
        return self._last
