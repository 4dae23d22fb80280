"""The kernel's own process tree: which processes are ours, their CPU time and memory.

Used for the process share of each device (``attribution = "process"``): CPU
time of this process and its descendants against the machine's busy CPU time,
resident memory against the machine's used memory, and the PIDs whose GPU
utilisation NVML reports.

**Finding the members.** On Linux descendants are found through
``/proc/<pid>/task/<tid>/children`` (tens of microseconds for a kernel with a
few threads), and the list is scanned again on the next read after any
process or thread was created on the machine (the last PID handed out, the
fifth field of ``/proc/loadavg``, moved), after a member ended (the read of it
failed, or this process waited for a child), and at least every
:data:`DEFAULT_REFRESH_S` seconds. A worker started between two
readings is therefore found at the next one, its CPU time since it started
included. Elsewhere (and on kernels without the children files) psutil scans
every process on the machine, about 1 ms per 70 processes, so the list is
scanned every :data:`DEFAULT_REFRESH_S` seconds only. ``refresh_s`` fixes the
period instead.

**Counting CPU time.** :meth:`ProcessTree.cpu_seconds` is a cumulative counter:

* the root's user and system time plus its ``children_user`` and
  ``children_system`` (children it has waited for, the way
  ``multiprocessing`` joins its workers);
* for every live descendant the same four figures, so a grandchild that a
  child waited for is counted in that child, and a child that ends moves its
  whole time into its parent's children figures, counted once either way;
* a member that leaves the tree still running (its parent ended and it was
  re-parented elsewhere) keeps the time it had when last read.

The root is read before its descendants and parents before their children,
so a child reaped while the tree is being read is missing from both for that
one reading, never counted twice; the counter never goes backwards (it keeps
its highest value), so such a dip costs nothing. A member that ends and is
waited for outside the tree (its parent ended in the same instant) takes its
time with it: the counter then stays flat until the tree has made that up.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import psutil

from carbon_jupyter.sensors.procfs import KeptFile

#: Longest a member list is kept, in seconds (the only trigger where a scan is costly).
DEFAULT_REFRESH_S = 5.0


_LOADAVG = KeptFile("/proc/loadavg")


def last_pid(loadavg: str = "/proc/loadavg") -> int | None:
    """The last PID the kernel handed out (processes and threads alike); None if unknown."""
    try:
        if loadavg == _LOADAVG.path:
            return int(_LOADAVG.read(256).split()[4])
        with open(loadavg, "rb") as f:
            return int(f.read().split()[4])
    except (OSError, ValueError, IndexError):
        return None


class ProcessTree:
    """This process (or ``root_pid``) and its live descendants, read on demand.

    ``refresh_s`` None (the default) scans as the module docstring says; a
    number scans at that period (and after a member ended) only. ``clock`` and
    ``last_pid`` are injectable for tests.
    """

    def __init__(
        self,
        root_pid: int | None = None,
        *,
        refresh_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        last_pid: Callable[[], int | None] = last_pid,
    ) -> None:
        self.root_pid = root_pid if root_pid is not None else os.getpid()
        self._root = psutil.Process(self.root_pid)
        self._refresh_s = refresh_s
        self._clock = clock
        self._last_pid = last_pid
        #: Live descendants, each after its parent.
        self._children: list[psutil.Process] = []
        self._scanned_at: float | None = None
        self._scanned_pid: int | None = None
        self._scanned_reaped_s: float | None = None
        self._cheap_scan = False
        self._member_ended = False
        #: CPU seconds (own + waited-for children) of each descendant at the last read.
        self._seen_s: dict[int, float] = {}
        #: Each member's ``/proc/<pid>/stat``, kept open while it is a member.
        self._stat_files: dict[int, KeptFile] = {}
        #: CPU seconds of descendants that left the tree alive.
        self._departed_s = 0.0
        self._counter_s = 0.0
        self._lock = threading.Lock()
        #: How many scans were made (for tests and the cost measurement).
        self.scans = 0

    # -- members ------------------------------------------------------------------------
    def processes(self) -> list[psutil.Process]:
        """The root and its live descendants, parents before their children."""
        with self._lock:
            return [self._root, *self._members_locked()]

    def pids(self) -> set[int]:
        return {p.pid for p in self.processes()}

    def _members_locked(self) -> list[psutil.Process]:
        now = self._clock()
        if self._scan_due(now):
            # Read before the scan, so a process born or reaped during it is seen next time.
            pid, reaped_s = self._last_pid(), self._reaped_s()
            self._scan_locked()
            self._scanned_at = now
            self._scanned_pid = pid
            self._scanned_reaped_s = reaped_s
            self._member_ended = False
        return self._children

    def _reaped_s(self) -> float | None:
        """CPU seconds of the children this process waited for (it moves when one ends)."""
        if self.root_pid != os.getpid():
            return None
        own = os.times()
        return own.children_user + own.children_system

    def _scan_due(self, now: float) -> bool:
        if self._scanned_at is None or self._member_ended:
            return True
        age_s = now - self._scanned_at
        if self._refresh_s is not None:
            return age_s >= self._refresh_s
        if age_s >= DEFAULT_REFRESH_S:
            return True
        if not self._cheap_scan:
            return False
        pid = self._last_pid()
        return pid is None or pid != self._scanned_pid or self._reaped_s() != self._scanned_reaped_s

    def _scan_locked(self) -> None:
        self.scans += 1
        pids = _descendant_pids(self.root_pid)
        self._cheap_scan = pids is not None
        known = {p.pid: p for p in self._children}
        found: list[psutil.Process] = []
        if pids is None:
            try:
                found = self._root.children(recursive=True)
            except psutil.Error:
                found = []
        else:
            for pid in pids:
                proc = known.get(pid)
                if proc is None:
                    try:
                        proc = psutil.Process(pid)
                    except psutil.Error:
                        continue
                found.append(proc)
        still = {p.pid for p in found}
        for pid, proc in known.items():
            if pid in still or pid not in self._seen_s:
                continue
            seen_s = self._seen_s.pop(pid)
            # Gone from the tree but running (or a zombie no member will wait for):
            # nobody of ours will count its time again, so keep what it had.
            if _running(proc):
                self._departed_s += seen_s
        self._children = found
        for pid in set(self._stat_files) - still:
            self._stat_files.pop(pid).close()

    # -- figures ------------------------------------------------------------------------
    def cpu_seconds(self) -> float:
        """User plus system CPU seconds of the tree, waited-for children included.

        A counter that never goes backwards; see the module docstring.
        """
        with self._lock:
            for _ in range(2):  # once more, at once, if a member ended
                members = self._members_locked()
                total = self._root_seconds()
                seen: dict[int, float] = {}
                for proc in members:
                    seconds = (
                        _stat_cpu_seconds(proc.pid, self._stat_files) if self._cheap_scan else None
                    )
                    if seconds is None:
                        try:
                            t = proc.cpu_times()
                        except psutil.Error:
                            self._member_ended = True
                            continue
                        seconds = t.user + t.system + t.children_user + t.children_system
                    seen[proc.pid] = seconds
                self._seen_s.update(seen)
                if not self._member_ended:
                    break
            self._seen_s = seen
            total += sum(seen.values()) + self._departed_s
            self._counter_s = max(self._counter_s, total)
            return self._counter_s

    def _root_seconds(self) -> float:
        if self.root_pid == os.getpid():
            own = os.times()  # one system call, no /proc parsing
            return own.user + own.system + own.children_user + own.children_system
        try:
            t = self._root.cpu_times()
        except psutil.Error:
            return 0.0
        return t.user + t.system + t.children_user + t.children_system

    def rss_bytes(self) -> int:
        """Resident memory of the tree in bytes."""
        total = 0
        for proc in self.processes():
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                continue
        return total


_CLOCK_TICKS_PER_S = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0


def _stat_cpu_seconds(pid: int, kept: dict[int, KeptFile] | None = None) -> float | None:
    """utime + stime + cutime + cstime of ``pid`` from ``/proc/<pid>/stat``; None if unread.

    Half the cost of :meth:`psutil.Process.cpu_times`, which reads the same file;
    a quarter of it again when ``kept`` holds the file open between reads.
    """
    try:
        if kept is None:
            with open(f"/proc/{pid}/stat", "rb") as f:
                data = f.read()
        else:
            stat = kept.get(pid)
            if stat is None:
                stat = kept[pid] = KeptFile(f"/proc/{pid}/stat")
            data = stat.read(2048)
        fields = data[data.rindex(b")") + 2 :].split()
        return sum(int(x) for x in fields[11:15]) / _CLOCK_TICKS_PER_S
    except (OSError, ValueError, IndexError):
        return None


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running()
    except psutil.Error:
        return False


def _descendant_pids(root_pid: int) -> list[int] | None:
    """Descendants from the kernel's children files, each after its parent.

    None where the kernel has no children files (or ``root_pid`` is gone).
    """
    found: list[int] = []
    queue = [root_pid]
    for pid in queue:  # grows while it is walked: breadth first
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            if pid == root_pid:
                return None
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                    children = [int(c) for c in f.read().split()]
            except FileNotFoundError:
                if not os.path.exists(f"/proc/{pid}/task/{tid}"):
                    continue  # the thread ended
                return None  # no CONFIG_PROC_CHILDREN
            except OSError:
                continue
            found.extend(children)
            queue.extend(children)
    return found


_shared: ProcessTree | None = None
_shared_lock = threading.Lock()


def shared_tree() -> ProcessTree:
    """One ProcessTree for this process, shared by every sensor (one scan serves all)."""
    global _shared
    with _shared_lock:
        if _shared is None or _shared.root_pid != os.getpid():
            _shared = ProcessTree()
        return _shared


def reset_shared_tree() -> None:
    """Forget the shared tree, so the next use scans for descendants at once (tests)."""
    global _shared
    with _shared_lock:
        _shared = None
