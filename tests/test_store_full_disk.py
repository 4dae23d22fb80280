"""A disk that fills during a run: the run is kept, written when space is back, never called lost.

The disk is real: a small tmpfs mounted for each test (tests run as root in
CI; elsewhere they are skipped, saying why), filled with a file until the
kernel answers ENOSPC, and freed by deleting that file. Runs are tracked by
the tracker with its default sink, in this process or in a fresh one (for
what happens when a process ends).
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import carbon_jupyter as cj
from carbon_jupyter.store import open_store
from tests.test_cli import cli
from tests.test_store_support import make_run, run_python
from tests.test_tracker import SteadySensor

DISK_SIZE = "3m"


class SmallDisk:
    """A tmpfs of ``DISK_SIZE`` at ``root``: ``fill()`` takes every free byte, ``free()`` frees."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.filler = root / "filler"

    def fill(self) -> None:
        fill(self.filler)

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)


def fill(filler: Path) -> None:
    """Write ``filler`` until the disk holding it is full, to the last byte."""
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for chunk in (1 << 16, 1 << 12, 1 << 9, 1):
            while True:
                try:
                    os.write(fd, b"\0" * chunk)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[SmallDisk]:
    root = tmp_path / "disk"
    root.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("a small real disk needs `mount -t tmpfs`, which is not installed")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE},mode=0700", "tmpfs", str(root)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(
            "a small real disk needs `mount -t tmpfs` (root with CAP_SYS_ADMIN): "
            + (mounted.stderr.strip() or f"exit code {mounted.returncode}")
        )
    try:
        yield SmallDisk(root)
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)


def sensors() -> list[SteadySensor]:
    return [SteadySensor(50.0), SteadySensor(10.0, kind="ram", device_id="ram", method="ram-model")]


def kept_messages(text: str) -> list[str]:
    return [line for line in text.splitlines() if "kept in memory" in line]


def test_a_run_that_finished_on_a_full_disk_is_written_by_the_next_run(
    disk: SmallDisk, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = disk.root / "carbon.db"
    monkeypatch.setenv("CARBON_JUPYTER_DB", str(path))
    with cj.track("filled", sensors=sensors(), interval=0.1, intensity=100) as first:
        time.sleep(1.3)  # the run and its first second of samples are stored
        disk.fill()
        time.sleep(1.5)
    run = first.run
    assert run is not None and run.status == "ok" and run.duration_s > 2.5

    said = kept_messages(caplog.text)
    assert len(said) == 1, caplog.text
    assert str(path) in said[0] and "full" in said[0]
    assert "will be written when space is back" in said[0]
    assert ".." not in said[0].replace("...", "")

    # Reading works on the full disk, and shows what was stored so far.
    listed = cli("runs", "--db", str(path))
    assert listed.returncode == 0, listed.stderr
    assert "filled" in listed.stdout

    disk.free()
    with cj.track("next", sensors=sensors(), interval=0.1, intensity=100) as second:
        pass
    with open_store(path) as store:
        stored = store.get_run(run.id, samples=True)
        assert stored.status == "ok"
        assert stored.duration_s == run.duration_s
        assert stored.energy_j == run.energy_j
        assert len(stored.samples) == len(run.samples)
        assert second.run is not None
        assert store.get_run(second.run.id).status == "ok"
    assert "could not save run" not in caplog.text  # said once, by the store's sink
    assert any("can be written again" in r.getMessage() for r in caplog.records)


SCRIPT = """
import sys, time
from pathlib import Path
import carbon_jupyter as cj
from tests.test_store_full_disk import fill, sensors

disk = Path(sys.argv[1])
with cj.track("at-exit", sensors=sensors(), interval=0.1, intensity=100) as handle:
    time.sleep(1.3)
    fill(disk / "filler")
    time.sleep(1.0)
run = handle.run
print(run.id, run.status, run.duration_s, len(run.samples), flush=True)
if sys.argv[2] == "free":
    (disk / "filler").unlink()  # space is back before the process ends
"""


def _tracked_in_a_process(
    disk: SmallDisk, then: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[str], str]:
    monkeypatch.setenv("CARBON_JUPYTER_DB", str(disk.root / "carbon.db"))
    done = run_python(SCRIPT, str(disk.root), then)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done.stdout.split(), done.stderr


def test_a_run_kept_in_memory_is_written_when_the_process_ends(
    disk: SmallDisk, monkeypatch: pytest.MonkeyPatch
) -> None:
    (run_id, status, duration_s, samples), stderr = _tracked_in_a_process(disk, "free", monkeypatch)
    assert status == "ok"
    said = kept_messages(stderr)
    assert len(said) == 1, stderr
    assert str(disk.root / "carbon.db") in said[0]
    with open_store(disk.root / "carbon.db") as store:
        stored = store.get_run(run_id, samples=True)
        assert stored.status == "ok"
        assert stored.duration_s == float(duration_s)
        assert len(stored.samples) == int(samples)


def test_a_run_never_written_is_said_and_not_called_ended_early(
    disk: SmallDisk, monkeypatch: pytest.MonkeyPatch
) -> None:
    (run_id, status, duration_s, _), stderr = _tracked_in_a_process(disk, "keep-full", monkeypatch)
    assert status == "ok"
    assert len(kept_messages(stderr)) == 1, stderr
    last = stderr.strip().splitlines()[-1]
    assert run_id[:8] in last and str(disk.root / "carbon.db") in last

    disk.free()
    with open_store(disk.root / "carbon.db") as store:
        stored = store.get_run(run_id)
    if stored.status == "ok":  # the run's end fitted where its samples did not
        assert stored.duration_s == float(duration_s)
        assert any("samples" in w for w in stored.warnings) or "samples" in last
    else:
        assert stored.status == "lost"
        assert "or before the run store could be written again" in (stored.error or "")


def test_reading_works_on_a_full_disk(disk: SmallDisk) -> None:
    path = disk.root / "carbon.db"
    with open_store(path) as store:
        store.finish_run(make_run(label="kept-safe"))
    # A process that died while its run was live: opening the store marks it lost.
    code = (
        "import os, sys\n"
        "from carbon_jupyter.store import open_store\n"
        "from tests.test_store_support import make_run, make_samples\n"
        "s = open_store(sys.argv[1]); r = make_run(status='running', label='died')\n"
        "s.begin_run(r); s.add_samples(r.id, make_samples(1, 3)); s.close(); os._exit(0)\n"
    )
    assert run_python(code, str(path)).returncode == 0
    assert sorted(p.name for p in disk.root.iterdir()) == ["carbon.db"]
    disk.fill()

    listed = cli("runs", "--db", str(path))
    assert listed.returncode == 0, listed.stderr
    assert "kept-safe" in listed.stdout and "died" in listed.stdout
    assert cli("totals", "--db", str(path)).returncode == 0
    checked = cli("store", "check", "--db", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    with open_store(path, create=False) as store:
        assert {r.label for r in store.runs()} == {"kept-safe", "died"}
