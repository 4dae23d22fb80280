"""Fake Linux powercap trees for tests, and a writer that advances a counter at a known power.

The tree has the layout the kernel gives ``/sys/class/powercap``: one directory
per RAPL zone, named ``intel-rapl:N`` (packages, psys) or ``intel-rapl:N:M``
(sub-domains), each with ``name``, ``energy_uj`` and ``max_energy_range_uj``::

    tree = FakePowercap(tmp_path / "powercap")
    pkg = tree.add_package(0)
    tree.add_subdomain(0, 0, "core")
    writer = CounterWriter(pkg / "energy_uj", power_w=50.0, max_range_uj=tree.max_range_uj)
    writer.start()
    ...
    writer.stop()
    truth_j = writer.energy_between_j(t0, t1)

Files are replaced atomically (write then rename), so a reader never sees a half
written number.
"""

from __future__ import annotations

import os
import pickle
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

#: The range of a typical Intel package counter (about 262 kJ).
DEFAULT_MAX_RANGE_UJ = 262_143_328_850

T = TypeVar("T")


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one step, as sysfs readers see it."""
    temporary = path.with_name(f".{path.name}.{threading.get_ident()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


class FakePowercap:
    """A powercap tree under ``root`` with RAPL zones added one by one."""

    def __init__(
        self,
        root: Path,
        prefix: str = "intel-rapl",
        max_range_uj: int = DEFAULT_MAX_RANGE_UJ,
    ) -> None:
        self.root = Path(root)
        self.prefix = prefix
        self.max_range_uj = max_range_uj
        self.root.mkdir(parents=True, exist_ok=True)

    def add_zone(self, zone: str, name: str, energy_uj: int = 0) -> Path:
        """Create ``<root>/<zone>`` with its name, counter and range; returns the directory."""
        path = self.root / zone
        path.mkdir()
        (path / "name").write_text(name + "\n")
        (path / "energy_uj").write_text(f"{energy_uj}\n")
        (path / "max_energy_range_uj").write_text(f"{self.max_range_uj}\n")
        return path

    def add_package(self, socket: int, energy_uj: int = 0, index: int | None = None) -> Path:
        """Package domain of ``socket`` (zone index defaults to the socket number)."""
        zone_index = socket if index is None else index
        return self.add_zone(f"{self.prefix}:{zone_index}", f"package-{socket}", energy_uj)

    def add_subdomain(self, index: int, sub: int, name: str, energy_uj: int = 0) -> Path:
        """Sub-domain ``<prefix>:<index>:<sub>`` named ``core``, ``uncore`` or ``dram``."""
        return self.add_zone(f"{self.prefix}:{index}:{sub}", name, energy_uj)

    def add_psys(self, index: int, energy_uj: int = 0) -> Path:
        """A top-level ``psys`` domain (the whole SoC, laptops)."""
        return self.add_zone(f"{self.prefix}:{index}", "psys", energy_uj)

    def set_energy_uj(self, zone: Path, energy_uj: int) -> None:
        write_atomic(zone / "energy_uj", f"{energy_uj}\n")


def build_tree(
    root: Path,
    sockets: int = 1,
    *,
    dram: bool = False,
    core: bool = False,
    uncore: bool = False,
    psys: bool = False,
    prefix: str = "intel-rapl",
) -> FakePowercap:
    """A tree with ``sockets`` packages and the chosen sub-domains under each."""
    tree = FakePowercap(root, prefix=prefix)
    for socket in range(sockets):
        tree.add_package(socket, energy_uj=1_000_000 * (socket + 1))
        sub = 0
        for wanted, name in ((core, "core"), (uncore, "uncore"), (dram, "dram")):
            if wanted:
                tree.add_subdomain(socket, sub, name, energy_uj=7_000_000)
                sub += 1
    if psys:
        tree.add_psys(sockets, energy_uj=9_000_000)
    return tree


class CounterWriter:
    """Advances an ``energy_uj`` file as a device drawing ``power_w`` would, wrapping at the range.

    The file holds ``(start_uj + power_w * 1e6 * (t - t_start)) mod max_range_uj``
    written every ``interval_s`` on a thread named ``fakepowercap-writer``.
    Every write is recorded in :attr:`writes` as ``(t, unwrapped_uj)`` with its
    ``time.monotonic()`` time, so a test can compare what a reader measured
    with the true energy between two times (:meth:`energy_between_j`); a
    reader's value lags the truth by at most ``interval_s`` plus scheduling.
    """

    def __init__(
        self,
        energy_file: Path,
        power_w: float,
        max_range_uj: int = DEFAULT_MAX_RANGE_UJ,
        start_uj: int = 0,
        interval_s: float = 0.005,
    ) -> None:
        self.energy_file = Path(energy_file)
        self.power_w = power_w
        self.max_range_uj = max_range_uj
        self.start_uj = start_uj
        self.interval_s = interval_s
        self.writes: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t_start = 0.0

    def unwrapped_uj_at(self, t: float) -> int:
        return self.start_uj + int(self.power_w * 1e6 * (t - self._t_start))

    def energy_between_j(self, t0: float, t1: float) -> float:
        """The true energy in joules drawn between monotonic times ``t0`` and ``t1``."""
        return self.power_w * (t1 - t0)

    def write_now(self) -> int:
        t = time.monotonic()
        unwrapped = self.unwrapped_uj_at(t)
        write_atomic(self.energy_file, f"{unwrapped % self.max_range_uj}\n")
        self.writes.append((t, unwrapped))
        return unwrapped

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.write_now()

    def start(self) -> CounterWriter:
        self._t_start = time.monotonic()
        self.write_now()
        self._thread = threading.Thread(target=self._run, name="fakepowercap-writer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> CounterWriter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def deny_reads(path: Path) -> None:
    """Take every permission off ``path`` (effective only for a user other than root)."""
    path.chmod(0)


class CannotDropPrivileges(RuntimeError):
    """Running as root, but switching to an unprivileged user failed (e.g. no CAP_SETUID)."""


def run_unprivileged(fn: Callable[[], T]) -> T:
    """Run ``fn`` as a user without root's right to read any file, and return its result.

    Root reads files whatever their mode, so where the tests run as root ``fn``
    runs in a forked child that first switches to the ``nobody`` user (65534);
    its result comes back pickled. As any other user ``fn`` simply runs here.
    Raises CannotDropPrivileges when the switch is not possible, and RuntimeError
    naming the exception when ``fn`` raised one.
    """
    if os.geteuid() != 0:
        return fn()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        status = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
        except OSError as exc:
            payload = pickle.dumps(("nodrop", repr(exc)))
        else:
            try:
                payload = pickle.dumps(("ok", fn()))
            except BaseException as exc:  # everything goes back to the parent
                payload = pickle.dumps(("error", repr(exc)))
        try:
            with os.fdopen(write_end, "wb") as out:
                out.write(payload)
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as incoming:
        data = incoming.read()
    os.waitpid(pid, 0)
    if not data:
        raise RuntimeError("the unprivileged child returned nothing")
    outcome, value = pickle.loads(data)
    if outcome == "nodrop":
        raise CannotDropPrivileges(f"cannot switch to the nobody user: {value}")
    if outcome != "ok":
        raise RuntimeError(f"the unprivileged child failed: {value}")
    return value  # type: ignore[no-any-return]
