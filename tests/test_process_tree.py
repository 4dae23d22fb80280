"""The kernel's process tree: descendants found, member list cached, CPU time summed."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from carbon_jupyter.sensors.process import ProcessTree, _descendant_pids

GRANDCHILD = (
    "import subprocess, sys, time; "
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(20)']); time.sleep(20)"
)


class StepClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def wait_for(condition, timeout_s: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_children_and_grandchildren_are_members_and_the_list_is_cached() -> None:
    clock = StepClock()
    tree = ProcessTree(refresh_s=2.0, clock=clock)
    assert tree.pids() == {os.getpid()}
    child = subprocess.Popen([sys.executable, "-c", GRANDCHILD])
    try:
        assert wait_for(lambda: len(_descendant_pids(os.getpid()) or []) >= 2)
        assert tree.pids() == {os.getpid()}  # cached: no rescan before refresh_s
        clock.now = 2.0
        members = tree.pids()
        assert child.pid in members and len(members) == 3
        assert tree.rss_bytes() > 0
    finally:
        child.kill()
        child.wait()


def test_cpu_seconds_grow_with_work_in_this_process() -> None:
    tree = ProcessTree()
    before = tree.cpu_seconds()
    deadline = time.process_time() + 0.2
    while time.process_time() < deadline:
        pass
    assert tree.cpu_seconds() - before >= 0.15
