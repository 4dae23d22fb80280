"""The kernel's own process tree: which processes are ours, their CPU time and memory.

Used for the process share of each device (``attribution = "process"``): CPU
time of this process and its descendants against the machine's busy CPU time,
resident memory against the machine's used memory, and the PIDs whose GPU
utilisation NVML reports.
"""

from __future__ import annotations

import os

import psutil


class ProcessTree:
    """This process (or ``root_pid``) and its live descendants, read on demand."""

    def __init__(self, root_pid: int | None = None) -> None:
        self.root_pid = root_pid if root_pid is not None else os.getpid()
        self._root = psutil.Process(self.root_pid)

    def processes(self) -> list[psutil.Process]:
        """The root and its live descendants."""
        try:
            children = self._root.children(recursive=True)
        except psutil.Error:
            children = []
        return [self._root, *children]

    def pids(self) -> set[int]:
        return {p.pid for p in self.processes()}

    def cpu_seconds(self) -> float:
        """User plus system CPU seconds of the tree, reaped children included."""
        total = 0.0
        for proc in self.processes():
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
