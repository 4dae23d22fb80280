"""Files under /proc read through a kept descriptor are fresh on every read."""

from __future__ import annotations

import os
import sys

import pytest

from carbon_jupyter.sensors.procfs import KeptFile

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def test_a_kept_proc_file_shows_the_kernels_figures_now() -> None:
    stat = KeptFile(f"/proc/{os.getpid()}/stat")

    def utime_ticks() -> int:
        data = stat.read()
        return int(data[data.rindex(b")") + 2 :].split()[11])

    before = utime_ticks()
    end = os.times().user + 0.3
    while os.times().user < end:
        pass
    assert utime_ticks() > before  # not the content of the first read
    stat.close()
    stat.close()
    assert utime_ticks() > before  # reopens after close


def test_a_process_that_ended_is_an_error_not_stale_figures() -> None:
    import subprocess

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    stat = KeptFile(f"/proc/{child.pid}/stat")
    assert stat.read().startswith(str(child.pid).encode())
    child.kill()
    child.wait()
    with pytest.raises(OSError):
        stat.read()
