"""Intel and AMD CPUs measured by RAPL through the Linux powercap tree (method ``rapl``).

RAPL (Running Average Power Limit) keeps an energy counter per CPU package, and
on many Intel servers one for the memory attached to it. Linux shows them under
``/sys/class/powercap`` (``CARBON_JUPYTER_POWERCAP_ROOT`` points elsewhere, e.g.
a tree mounted into a container)::

    intel-rapl:0/        name "package-0"   energy_uj   max_energy_range_uj
    intel-rapl:0:0/      name "core"        (inside package-0: not counted)
    intel-rapl:0:1/      name "dram"        (memory of socket 0: counted as RAM)
    intel-rapl:1/        name "package-1"   (second socket)
    intel-rapl:2/        name "psys"        (whole SoC: not counted)

One sensor per package (device ``cpu:0``, ``cpu:1``; a package split in dies
gives ``cpu:0-die1``) and one per ``dram`` sub-domain (``ram:dram0``, kind
``ram``). The ``core``, ``uncore`` (integrated graphics) and ``psys`` domains
are skipped, since their energy is already inside the package figure (or, for
``psys``, covers the packages too) and counting them would count it twice.
AMD processors use the same ``intel-rapl`` names on Linux; an ``amd-rapl`` tree
is read when there is no ``intel-rapl`` one, never both, and ``intel-rapl-mmio``
(a second view of package 0) is ignored.

Each reading gives the counter in joules and the range at which it wraps; the
sampler takes differences, so the energy of a run is exact at start and stop.

Each sensor also knows the most power its domain can plausibly draw
(``max_power_w``), first that applies: the zone's ``constraint_*_max_power_uw``
x 1.5; its ``constraint_*_power_limit_uw`` x 2 (short-term limits run above
the TDP); for a package, the CPU model's TDP from the shipped table x 2; else
:data:`DEFAULT_MAX_POWER_W`. The sampler uses it twice: a counter step that
implies more is a glitch (a counter reset, a resume from suspend), not a wrap;
and the counter is read at least twice per ``max_energy_range_uj /
max_power_w``, so that no wrap goes unseen however long the user's interval.
The margins are generous on purpose: too low a figure would turn real draws
into glitches, too high a figure only costs a few more reads.

The process share of a package is the kernel's share of the machine's busy CPU
time since the previous reading (:mod:`carbon_jupyter.sensors.cpu_share`). It
is the same for every socket: the split of the process's threads between
sockets is not tracked. A ``dram`` domain takes the memory share of
:func:`carbon_jupyter.sensors.memory.memory_share`, as the RAM model does.

Since CVE-2020-8694 (2020) Linux lets only root read ``energy_uj``. Then this
source finds no sensors and says how to open the counters, for example
``sudo chmod o+r /sys/class/powercap/intel-rapl:*/energy_uj`` until the next
reboot, or a udev rule to keep it. That lets every local user read the CPU's
energy, which is the side channel the CVE closed; a group instead of ``o+r``
limits it to chosen users.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from carbon_jupyter.errors import SensorError
from carbon_jupyter.model import DeviceInfo, Kind
from carbon_jupyter.sensors.base import Probe, Reading
from carbon_jupyter.sensors.cpu_share import CpuActivity
from carbon_jupyter.sensors.hardware import cpu_model_name, lookup_tdp_w
from carbon_jupyter.sensors.memory import memory_share
from carbon_jupyter.sensors.process import ProcessTree, shared_tree

ROOT_ENV = "CARBON_JUPYTER_POWERCAP_ROOT"
DEFAULT_ROOT = "/sys/class/powercap"
PREFIXES = ("intel-rapl", "amd-rapl")

#: The plausible maximum of a domain that says nothing about its power (a large server
#: package draws up to about 400 W; the figure only needs to be above any real draw).
DEFAULT_MAX_POWER_W = 500.0
MAX_POWER_MARGIN = 1.5
POWER_LIMIT_MARGIN = 2.0
TDP_MARGIN = 2.0

_ZONE = re.compile(r"^(intel-rapl|amd-rapl):(\d+)(?::(\d+))?$")
_PACKAGE = re.compile(r"^package-(\d+)(?:-die-(\d+))?$")


def _read_uj(path: Path) -> int:
    return int(path.read_text().strip())


def _unreadable(path: Path, exc: Exception) -> str:
    """Why a counter could not be read, and what to do: garbage is not a permission problem."""
    if isinstance(exc, PermissionError):
        return (
            f"cannot read the RAPL counter {path}: permission denied; "
            f"run `sudo chmod o+r {path}` (see `carbon-jupyter doctor`)"
        )
    if isinstance(exc, ValueError):
        try:
            text = path.read_text().strip()
        except OSError:
            text = "?"
        return (
            f"the RAPL counter {path} holds {text[:40]!r}, not a count of microjoules: the "
            f"powercap driver gave garbage or {ROOT_ENV} points at a tree that is not a real "
            f"powercap tree; check `cat {path}`, point {ROOT_ENV} at the right tree, or reload "
            "the driver (`sudo modprobe -r intel_rapl_msr && sudo modprobe intel_rapl_msr`)"
        )
    if isinstance(exc, FileNotFoundError):
        return (
            f"the RAPL counter {path} is gone (the powercap driver was unloaded or the tree "
            "unmounted); reload the driver or remount the tree, then start a new run"
        )
    return f"cannot read the RAPL counter {path}: {exc}"


class RaplSensor:
    """One RAPL domain's energy counter."""

    def __init__(
        self,
        info: DeviceInfo,
        zone: Path,
        range_j: float | None,
        tree: ProcessTree,
        max_power_w: float = DEFAULT_MAX_POWER_W,
    ) -> None:
        self.info = info
        self.zone = zone
        self.range_j = range_j
        self.max_power_w = max_power_w
        self._tree = tree
        self._cpu = CpuActivity(tree) if info.kind == "cpu" else None

    def read_energy(self) -> Reading:
        """The counter alone (the sampler's private reads between ticks)."""
        path = self.zone / "energy_uj"
        try:
            counter_j = _read_uj(path) / 1e6
        except (OSError, ValueError) as exc:
            raise SensorError(_unreadable(path, exc)) from exc
        return Reading(counter_j=counter_j, counter_range_j=self.range_j)

    def read(self) -> Reading:
        counter_j = self.read_energy().counter_j
        if self._cpu is not None:
            delta = self._cpu.update()
            share = None if delta is None else delta.process_share
        else:
            share = memory_share(self._tree)[0]
        return Reading(counter_j=counter_j, counter_range_j=self.range_j, process_share=share)

    def close(self) -> None:
        """Nothing is held open between readings."""


def _zones(root: Path) -> dict[str, Path]:
    """RAPL zone directories by name, from a flat tree or one nested by control type."""
    found: dict[str, Path] = {}
    candidates = [root, *(root / prefix for prefix in PREFIXES)]
    while candidates:
        folder = candidates.pop(0)
        try:
            entries = sorted(folder.iterdir())
        except OSError:
            continue
        for entry in entries:
            if _ZONE.match(entry.name) and entry.name not in found and entry.is_dir():
                found[entry.name] = entry
                candidates.append(entry)
    return found


def _text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _range_j(zone: Path) -> float | None:
    raw = _text(zone / "max_energy_range_uj")
    try:
        return int(raw) / 1e6 if raw else None
    except ValueError:
        return None


def _power_limit_w(zone: Path) -> float | None:
    raw = _text(zone / "constraint_0_power_limit_uw")
    try:
        return int(raw) / 1e6 if raw and int(raw) > 0 else None
    except ValueError:
        return None


def _largest_w(zone: Path, pattern: str) -> float | None:
    """The largest positive figure among the zone's ``constraint_*_<pattern>`` files, in W."""
    found = []
    for path in zone.glob(f"constraint_*_{pattern}"):
        raw = _text(path)
        try:
            value = int(raw) / 1e6 if raw else 0.0
        except ValueError:
            continue
        if value > 0:
            found.append(value)
    return max(found) if found else None


def plausible_max_power_w(zone: Path, tdp_w: float | None = None) -> tuple[float, str]:
    """The most power a domain can plausibly draw, and where the figure comes from."""
    max_w = _largest_w(zone, "max_power_uw")
    if max_w is not None:
        return max_w * MAX_POWER_MARGIN, f"constraint max power {max_w:g} W x {MAX_POWER_MARGIN}"
    limit_w = _largest_w(zone, "power_limit_uw")
    if limit_w is not None:
        return limit_w * POWER_LIMIT_MARGIN, f"power limit {limit_w:g} W x {POWER_LIMIT_MARGIN}"
    if tdp_w is not None:
        return tdp_w * TDP_MARGIN, f"TDP {tdp_w:g} W x {TDP_MARGIN}"
    return DEFAULT_MAX_POWER_W, f"{DEFAULT_MAX_POWER_W:g} W, no figure in the tree"


def _domains(zones: dict[str, Path]) -> list[tuple[str, Kind, str, Path]]:
    """(device id, kind, label, zone) for every package and dram domain, in a stable order."""
    by_prefix = {p: {n: z for n, z in zones.items() if n.startswith(p + ":")} for p in PREFIXES}
    chosen = next((z for z in by_prefix.values() if z), {})
    domains: list[tuple[str, Kind, str, Path]] = []
    for name, zone in chosen.items():
        match = _ZONE.match(name)
        assert match is not None
        domain_name = _text(zone / "name") or ""
        package = _PACKAGE.match(domain_name)
        if match.group(3) is None and package:
            socket, die = package.group(1), package.group(2)
            if die is None:
                domains.append((f"cpu:{socket}", "cpu", f"package {socket}", zone))
            else:
                label = f"package {socket}, die {die}"
                domains.append((f"cpu:{socket}-die{die}", "cpu", label, zone))
        elif match.group(3) is not None and domain_name == "dram":
            parent = _text(chosen.get(f"{match.group(1)}:{match.group(2)}", zone) / "name") or ""
            parent_match = _PACKAGE.match(parent)
            socket = parent_match.group(1) if parent_match else match.group(2)
            domains.append((f"ram:dram{socket}", "ram", f"package {socket}", zone))
    return sorted(domains, key=lambda d: (d[1] != "cpu", _natural(d[0])))


def _natural(text: str) -> list[tuple[int, str]]:
    """Sort key that puts ``cpu:2`` before ``cpu:10``."""
    return [(int(part), "") if part.isdigit() else (-1, part) for part in re.split(r"(\d+)", text)]


def _denied_problem(root: Path, zone: Path) -> str:
    prefix = zone.name.split(":")[0]
    return (
        f"RAPL energy counters under {root} are readable only by root (Linux has restricted "
        f"them since CVE-2020-8694), so CPU energy is estimated with the CPU model instead; "
        f"to measure it, run `sudo chmod o+r {root}/{prefix}:*/energy_uj` (until reboot) or "
        f'add the udev rule `SUBSYSTEM=="powercap", ACTION=="add", '
        f'RUN+="/bin/chmod o+r /sys%p/energy_uj"`'
    )


def probe(root: str | os.PathLike[str] | None = None, *, tree: ProcessTree | None = None) -> Probe:
    """The RAPL sensors of this machine, or the reason there are none."""
    if root is None:
        root = os.environ.get(ROOT_ENV) or DEFAULT_ROOT
    root_path = Path(root)
    zones = _zones(root_path)
    domains = _domains(zones)
    if not domains and any(_text(z / "name") == "psys" for z in zones.values()):
        return Probe(
            source="rapl",
            sensors=(),
            problems=(
                f"the RAPL tree at {root_path} shows only the psys (platform) domain: its "
                f"package domains are hidden (some laptops, hypervisors and containers expose "
                f"only psys), so CPU energy is estimated with the CPU model; psys is not used "
                f"for the CPU since it covers the whole platform (display, chipset, memory). "
                f"To measure the CPU, enable the package domains (firmware RAPL settings) or "
                f"run where the whole tree is visible",
            ),
            expected=True,
        )
    if not domains:
        return Probe(
            source="rapl",
            sensors=(),
            problems=(
                f"no RAPL powercap tree at {root_path} (not Linux, a VM or a container without "
                f"/sys/class/powercap), so CPU energy is estimated with the CPU model instead; "
                f"set {ROOT_ENV} if the tree is mounted elsewhere",
            ),
            expected=True,
        )
    problems: list[str] = []
    readable: list[tuple[str, Kind, str, Path]] = []
    unread: list[tuple[str, Kind, str, Path]] = []
    for domain in domains:
        try:
            _read_uj(domain[3] / "energy_uj")
        except PermissionError:
            return Probe(
                source="rapl", sensors=(), problems=(_denied_problem(root_path, domain[3]),)
            )
        except (OSError, ValueError) as exc:
            problems.append(_unreadable(domain[3] / "energy_uj", exc))
            unread.append(domain)
        else:
            readable.append(domain)
    if tree is None:
        tree = shared_tree()
    model = cpu_model_name()
    found_tdp = lookup_tdp_w("cpu", model) if model else None
    sockets = sum(1 for d in readable if d[1] == "cpu")
    sensors = []
    for device_id, kind, label, zone in readable:
        if kind == "cpu":
            name = f"{model} ({label})" if model and sockets > 1 else model or f"CPU {label}"
            detail = f"RAPL package counter {zone}/energy_uj (cores, uncore and caches)"
        else:
            name = f"DRAM ({label})"
            detail = f"RAPL DRAM counter {zone}/energy_uj (memory attached to {label})"
        tdp_w = found_tdp[0] if found_tdp is not None and kind == "cpu" else None
        max_w, max_note = plausible_max_power_w(zone, tdp_w)
        info = DeviceInfo(
            device_id=device_id,
            kind=kind,
            name=name,
            method="rapl",
            power_limit_w=_power_limit_w(zone) if kind == "cpu" else None,
            detail=f"{detail}; plausible maximum {max_w:g} W ({max_note})",
        )
        sensors.append(RaplSensor(info, zone, _range_j(zone), tree, max_w))
    warnings = [
        f"{device_id} ({label}) is in the RAPL tree but its counter could not be read, so "
        f"this run leaves it out and its figures are low; see `carbon-jupyter doctor`"
        for device_id, _, label, _ in unread
        if readable
    ]
    return Probe(
        source="rapl", sensors=tuple(sensors), problems=tuple(problems), warnings=tuple(warnings)
    )
