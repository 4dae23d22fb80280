"""The kernel's own process tree: which processes are ours, their CPU time and memory.

Used for the process share of each device (``attribution = "process"``): CPU
time of this process and its descendants against the machine's busy CPU time,
resident memory against the machine's used memory, and the PIDs whose GPU
utilisation NVML reports.

On Linux descendants are found through ``/proc/<pid>/task/<tid>/children``
(tens of microseconds for a kernel with a few threads); elsewhere psutil scans
every process on the machine (about 1 ms per 70 processes). Either way the
member list is refreshed at most every ``refresh_s`` seconds (default 5); in
between only the known members are read (a few microseconds each). A worker
started less than ``refresh_s`` ago is counted from the next refresh, its CPU
time since it started included.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import psutil

#: Seconds between scans for new descendants.
DEFAULT_REFRESH_S = 5.0


class ProcessTree:
    """This process (or ``root_pid``) and its live descendants, read on demand."""

    def __init__(
        self,
        root_pid: int | None = None,
        *,
        refresh_s: float = DEFAULT_REFRESH_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.root_pid = root_pid if root_pid is not None else os.getpid()
        self._root = psutil.Process(self.root_pid)
        self._refresh_s = refresh_s
        self._clock = clock
        self._children: list[psutil.Process] = []
        self._scanned_at: float | None = None
        self._lock = threading.Lock()

    def processes(self) -> list[psutil.Process]:
        """The root and its live descendants (the list at most ``refresh_s`` old)."""
        with self._lock:
            now = self._clock()
            if self._scanned_at is None or now - self._scanned_at >= self._refresh_s:
                self._children = self._scan()
                self._scanned_at = now
            return [self._root, *self._children]

    def _scan(self) -> list[psutil.Process]:
        pids = _descendant_pids(self.root_pid)
        if pids is None:
            try:
                return self._root.children(recursive=True)
            except psutil.Error:
                return []
        known = {p.pid: p for p in self._children}
        found = []
        for pid in pids:
            proc = known.get(pid)
            if proc is None:
                try:
                    proc = psutil.Process(pid)
                except psutil.Error:
                    continue
            found.append(proc)
        return found

    def pids(self) -> set[int]:
        return {p.pid for p in self.processes()}

    def cpu_seconds(self) -> float:
        """User plus system CPU seconds of the tree, reaped children included."""
        total = 0.0
        for proc in self.processes():
            if proc.pid == self.root_pid == os.getpid():
                own = os.times()  # one system call, no /proc parsing
                total += own.user + own.system + own.children_user + own.children_system
                continue
            try:
                t = proc.cpu_times()
            except psutil.Error:
                continue
            total += t.user + t.system
            if proc.pid == self.root_pid:
                total += t.children_user + t.children_system
        return total

    def rss_bytes(self) -> int:
        """Resident memory of the tree in bytes."""
        total = 0
        for proc in self.processes():
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                continue
        return total


def _descendant_pids(root_pid: int) -> list[int] | None:
    """Descendants from the kernel's children files; None where the kernel has none."""
    found: list[int] = []
    queue = [root_pid]
    while queue:
        pid = queue.pop()
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            if pid == root_pid:
                return None
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as f:
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
