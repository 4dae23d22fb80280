"""Work done in child processes counts in the process share, and others' work does not.

Each test runs a tracked block with ``attribution="process"`` while unrelated
processes (not descendants of this one) keep all CPUs but one busy, and a
child of ours keeps the last one busy for most of the block, so the machine's
power is nearly steady and the run's process share of the CPU energy can be
compared with the truth: the CPU seconds this process and its children used
during the block (:func:`os.times`, plus any child still alive at the end)
over the machine's busy CPU seconds (``/proc/stat``) in the same time. The
children burn more CPU time than the whole machine has in one sampling
interval, which is what an interval's share used to be capped at.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psutil
import pytest

import carbon_jupyter as cj
from carbon_jupyter import sensors
from carbon_jupyter.sensors.cpu_share import machine_cpu_seconds
from carbon_jupyter.sensors.process import ProcessTree

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/stat"),
]

#: Unrelated busy processes: one per CPU but the one our child uses.
BURNERS = max(1, (os.cpu_count() or 1) - 1)
#: The process share may differ from the truth by this fraction of the truth.
TOLERANCE = 0.10

BURN = (
    "import sys, time\n"
    "end = time.monotonic() + float(sys.argv[1])\n"
    "while time.monotonic() < end: pass\n"
)
#: Starts a burner in a new session and exits at once, so the burner is no child of ours.
LAUNCH = (
    "import subprocess, sys\n"
    "p = subprocess.Popen([sys.executable, '-c', sys.argv[1], '60'], start_new_session=True,"
    " stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
    "print(p.pid)\n"
)


def burn_cpu(cpu_seconds: float) -> None:
    end = time.process_time() + cpu_seconds
    while time.process_time() < end:
        pass


def run_grandchild_then_idle(cpu_seconds: float, idle_s: float) -> None:
    """Run a grandchild that burns ``cpu_seconds``, wait for it, then stay idle."""
    code = f"import time\nend = time.process_time() + {cpu_seconds}\n"
    subprocess.run(
        [sys.executable, "-c", code + "while time.process_time() < end: pass"], check=True
    )
    time.sleep(idle_s)


@contextmanager
def unrelated_burners(count: int) -> Iterator[list[int]]:
    """``count`` processes busy-looping (for at most a minute), none a descendant of ours."""
    pids = []
    try:
        for _ in range(count):
            out = subprocess.run(
                [sys.executable, "-c", LAUNCH, BURN], capture_output=True, text=True, check=True
            )
            pids.append(int(out.stdout))
        assert not set(pids) & ProcessTree().pids()
        time.sleep(0.3)  # let them get going
        yield pids
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def tree_cpu_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def live_child_cpu_s(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system + t.children_user + t.children_system


def shares(block: Callable[[], float], interval_s: float = 1.0) -> tuple[float, float]:
    """(reported, true) process share of the CPU for ``block``, sampled every ``interval_s``.

    ``block`` returns the CPU seconds of children it leaves alive at its end.
    """
    busy0, _ = machine_cpu_seconds()
    tree0 = tree_cpu_s()
    with cj.track(
        "children", attribution="process", sink=None, interval=interval_s, intensity=100
    ) as handle:
        still_alive_s = block()
    tree1 = tree_cpu_s()
    busy1, _ = machine_cpu_seconds()
    run = handle.run
    assert run is not None
    cpus = [d for d in run.devices if d.device.kind == "cpu"]
    energy_j = sum(d.energy_j for d in cpus)
    process_j = sum(d.process_energy_j or 0.0 for d in cpus)
    assert energy_j > 0
    return process_j / energy_j, (tree1 - tree0 + still_alive_s) / (busy1 - busy0)


@pytest.fixture
def warm_sensors() -> Iterator[None]:
    """Sensors probed before the block, as in a kernel that has already run a cell."""
    sensors.reset()
    sensors.discover()
    yield
    sensors.reset()


@pytest.mark.usefixtures("warm_sensors")
def test_a_child_busy_for_most_of_the_block_counts_in_full() -> None:
    context = multiprocessing.get_context()
    with unrelated_burners(BURNERS):

        def block() -> float:
            child = context.Process(target=burn_cpu, args=(4.0,))
            child.start()
            child.join()
            time.sleep(0.2)
            return 0.0

        reported, truth = shares(block)
    assert truth > 0.1  # the child had its part of the CPUs
    assert reported == pytest.approx(truth, rel=TOLERANCE)


@pytest.mark.usefixtures("warm_sensors")
def test_a_child_that_ends_inside_the_block_counts_in_full() -> None:
    context = multiprocessing.get_context()
    with unrelated_burners(BURNERS):

        def block() -> float:
            time.sleep(0.3)
            child = context.Process(target=burn_cpu, args=(3.0,))
            child.start()
            child.join()
            time.sleep(1.0)
            return 0.0

        reported, truth = shares(block, interval_s=0.5)
    assert truth > 0.1
    assert reported == pytest.approx(truth, rel=TOLERANCE)


@pytest.mark.usefixtures("warm_sensors")
def test_a_grandchild_reaped_by_a_child_that_outlives_the_block_counts() -> None:
    context = multiprocessing.get_context()
    with unrelated_burners(BURNERS):
        child = context.Process(target=run_grandchild_then_idle, args=(3.0, 30.0))
        try:

            def block() -> float:
                child.start()
                assert child.pid is not None
                deadline = time.monotonic() + 15
                # The grandchild's time shows in the child once the child waited for it.
                while live_child_cpu_s(child.pid) < 3.0 and time.monotonic() < deadline:
                    time.sleep(0.05)
                time.sleep(0.3)
                return live_child_cpu_s(child.pid)

            reported, truth = shares(block)
        finally:
            child.kill()
            child.join()
    assert truth > 0.05
    assert reported == pytest.approx(truth, rel=TOLERANCE)
