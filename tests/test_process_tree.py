"""The kernel's process tree: descendants found, member list cached, CPU time summed."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil
import pytest

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


BURN_THEN_SLEEP = (
    "import sys, time\n"
    "end = time.process_time() + float(sys.argv[1])\n"
    "while time.process_time() < end: pass\n"
    "print('burned', flush=True)\n"
    "time.sleep(float(sys.argv[2]))\n"
)


def burner(cpu_s: float, then_sleep_s: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", BURN_THEN_SLEEP, str(cpu_s), str(then_sleep_s)],
        stdout=subprocess.PIPE,
        text=True,
    )


def test_a_new_child_is_found_at_the_next_read() -> None:
    tree = ProcessTree()
    assert tree.pids() == {os.getpid()}
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(20)"])
    try:
        assert child.pid in tree.pids()  # no waiting for a refresh period
    finally:
        child.kill()
        child.wait()


def test_no_rescan_while_no_process_was_created() -> None:
    last = [1000]
    tree = ProcessTree(last_pid=lambda: last[0])
    tree.cpu_seconds()
    scans = tree.scans
    for _ in range(5):
        tree.cpu_seconds()
    assert tree.scans == scans
    last[0] += 1  # a process or thread was created somewhere
    tree.cpu_seconds()
    assert tree.scans == scans + 1


CLOCK_TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def test_a_child_counts_from_its_start_and_once_after_it_is_reaped() -> None:
    tree = ProcessTree()
    before = tree.cpu_seconds()
    child = burner(0.4, 0.5)
    try:
        assert child.stdout is not None and child.stdout.readline() == "burned\n"
        alive = tree.cpu_seconds() - before
        # its time since it started, while it still runs (to the clock tick: /proc counts
        # CPU time in ticks of 10 ms, and the sum of them may round just under)
        assert alive >= 0.4 - CLOCK_TICK_S
        child.wait()
        reaped = tree.cpu_seconds() - before  # now in this process's children time
        own = psutil.Process().cpu_times()
        assert reaped == pytest.approx(alive, abs=0.15)
        assert reaped < 0.4 + 0.3 + (own.user + own.system)  # not counted twice
    finally:
        child.kill()
        child.wait()


GRANDPARENT = (
    "import subprocess, sys, time\n"
    "subprocess.run([sys.executable, '-c', sys.argv[1], '0.4', '0'], stdout=subprocess.DEVNULL)\n"
    "print('reaped', flush=True)\n"
    "time.sleep(20)\n"
)


def test_a_grandchild_reaped_by_a_live_child_still_counts() -> None:
    tree = ProcessTree()
    before = tree.cpu_seconds()
    child = subprocess.Popen(
        [sys.executable, "-c", GRANDPARENT, BURN_THEN_SLEEP], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "reaped\n"
        t = psutil.Process(child.pid).cpu_times()
        assert t.children_user + t.children_system >= 0.4
        assert tree.cpu_seconds() - before >= 0.4
    finally:
        child.kill()
        child.wait()


ORPHAN_MAKER = (
    "import subprocess, sys\n"
    "p = subprocess.Popen([sys.executable, '-c', sys.argv[1], '0.4', '20'],"
    " stdout=subprocess.PIPE, text=True)\n"
    "print(p.pid, p.stdout.readline().strip(), flush=True)\n"
    "sys.stdin.readline()\n"
)


def test_a_member_that_leaves_the_tree_keeps_its_time_and_others_still_count() -> None:
    tree = ProcessTree()
    before = tree.cpu_seconds()
    parent = subprocess.Popen(
        [sys.executable, "-c", ORPHAN_MAKER, BURN_THEN_SLEEP],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdin is not None and parent.stdout is not None
    pid_text, said = parent.stdout.readline().split()
    orphan = int(pid_text)
    try:
        assert said == "burned"
        assert orphan in tree.pids()
        with_orphan = tree.cpu_seconds()
        assert with_orphan - before >= 0.4
        parent.stdin.write("\n")
        parent.stdin.flush()
        parent.wait()  # the orphan is re-parented outside the tree, still running
        assert orphan not in tree.pids()
        kept = tree.cpu_seconds()
        assert kept >= with_orphan
        deadline = time.process_time() + 0.2
        while time.process_time() < deadline:
            pass
        assert tree.cpu_seconds() - kept >= 0.15  # later work is not swallowed
    finally:
        try:
            os.kill(orphan, 9)
        except ProcessLookupError:
            pass
