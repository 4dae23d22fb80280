"""The CPU, estimated from its utilisation (method ``cpu-model``).

Used where no RAPL counter can be read. Each reading turns the machine's CPU
utilisation since the previous reading into power on a load curve scaled by the
CPU's thermal design power (TDP)::

    power_w = tdp_w * curve(utilisation)

**The load curve** is the one Teads Engineering derived from SPECpower results
and their own RAPL measurements of AWS bare-metal machines (B. Davy, *Estimating
AWS EC2 Instances Power Consumption*, Teads Engineering, 2021), also used by the
Boavizta API and the Green Software Foundation's Impact Framework: 12 % of TDP
at idle, 32 % at 10 % load, 75 % at 50 % load and 102 % at full load, linear in
between. These four points are not in the shipped data files; they are an
assumption taken from those publications, and the curve is known not to fit
every processor. It keeps an idle floor (a powered CPU draws power while doing
nothing) and rises with load.

**The TDP**, first that applies:

1. ``CARBON_JUPYTER_CPU_TDP_W`` - the total TDP of the CPUs this machine sees,
   in watts (a positive number; anything else raises ConfigError);
2. the shipped hardware table (:func:`carbon_jupyter.sensors.hardware.lookup_tdp_w`)
   for the CPU's model name, times the number of sockets;
3. 12 W per physical core (Green Algorithms' figure for an unknown CPU, TDP_cpu.csv
   ``Any``), times the physical cores :func:`psutil.cpu_count` reports;
4. 85 W (CodeCarbon's figure for an unknown CPU model) when even the core count
   is unknown.

In a virtual machine the table's TDP is the whole physical package's, shared
with other tenants; set ``CARBON_JUPYTER_CPU_TDP_W`` to your part of it (for
example TDP x your vCPUs / the package's threads) for a fairer device figure.

The first reading of a run has no previous one to compare with, so its power
uses the average utilisation since boot and its process share is None.
"""

from __future__ import annotations

import itertools

import psutil

from carbon_jupyter.model import DeviceInfo
from carbon_jupyter.sensors.base import Probe, Reading
from carbon_jupyter.sensors.cpu_share import CpuActivity
from carbon_jupyter.sensors.hardware import (
    constant_value,
    cpu_model_name,
    cpu_socket_count,
    env_positive_float,
    lookup_tdp_w,
)
from carbon_jupyter.sensors.process import ProcessTree

CPU_TDP_ENV = "CARBON_JUPYTER_CPU_TDP_W"

#: (utilisation, fraction of TDP) points of the Teads load curve; see the module docstring.
LOAD_CURVE: tuple[tuple[float, float], ...] = ((0.0, 0.12), (0.1, 0.32), (0.5, 0.75), (1.0, 1.02))


def load_fraction(utilisation: float) -> float:
    """Fraction of TDP drawn at ``utilisation`` (0..1, clamped), on :data:`LOAD_CURVE`."""
    u = min(1.0, max(0.0, utilisation))
    for (u0, f0), (u1, f1) in itertools.pairwise(LOAD_CURVE):
        if u <= u1:
            return f0 + (f1 - f0) * (u - u0) / (u1 - u0)
    return LOAD_CURVE[-1][1]


def cpu_power_w(tdp_w: float, utilisation: float) -> float:
    """Estimated CPU power in watts at ``utilisation`` (0..1) for a CPU of ``tdp_w``."""
    return tdp_w * load_fraction(utilisation)


def resolve_tdp_w(model_name: str, sockets: int | None = None) -> tuple[float, str]:
    """The TDP in watts used for this machine and a sentence saying where it comes from.

    ``sockets`` defaults to the count in ``/proc/cpuinfo``.
    """
    override = env_positive_float(CPU_TDP_ENV)
    if override is not None:
        return override, f"TDP {override:g} W set by {CPU_TDP_ENV}"
    found = lookup_tdp_w("cpu", model_name) if model_name else None
    if found is not None:
        tdp_w, source = found
        if sockets is None:
            sockets = cpu_socket_count()
        per = f"{sockets} sockets x {tdp_w:g} W" if sockets > 1 else f"{tdp_w:g} W"
        return tdp_w * sockets, f"TDP {per} for {model_name} (source: {source})"
    unknown = f"{model_name!r} is not in the TDP table" if model_name else "CPU model unknown"
    cores = psutil.cpu_count(logical=False)
    if cores:
        w_per_core = constant_value("cpu_default_w_per_core", "green_algorithms")
        return (
            w_per_core * cores,
            f"{unknown}; TDP {w_per_core:g} W/core x {cores} physical cores "
            f"(Green Algorithms default)",
        )
    tdp_w = constant_value("cpu_default_tdp_unknown_model", "codecarbon")
    return tdp_w, f"{unknown} and the core count is unknown; TDP {tdp_w:g} W (CodeCarbon default)"


class CpuModelSensor:
    """Machine CPU utilisation on a load curve times a TDP; an estimate, not a measurement."""

    def __init__(self, info: DeviceInfo, tdp_w: float, activity: CpuActivity) -> None:
        self.info = info
        self.tdp_w = tdp_w
        self._activity = activity

    def read(self) -> Reading:
        delta = self._activity.update()
        if delta is None:
            busy, share = self._activity.since_boot_busy_fraction(), None
        else:
            busy, share = delta.busy_fraction, delta.process_share
        return Reading(
            power_w=cpu_power_w(self.tdp_w, busy),
            utilization_pct=100.0 * busy,
            process_share=share,
        )

    def close(self) -> None:
        """Nothing to release."""


def probe(*, tree: ProcessTree | None = None, activity: CpuActivity | None = None) -> Probe:
    """The CPU model for this machine. Raises ConfigError for a bad TDP override."""
    model_name = cpu_model_name()
    tdp_w, tdp_note = resolve_tdp_w(model_name)
    info = DeviceInfo(
        device_id="cpu",
        kind="cpu",
        name=model_name or "CPU",
        method="cpu-model",
        power_limit_w=tdp_w,
        detail=(
            f"estimate: CPU utilisation on the Teads load curve (12 % of TDP idle, "
            f"102 % at full load) x {tdp_note}"
        ),
    )
    if activity is None:
        activity = CpuActivity(tree)
    return Probe(source="cpu-model", sensors=(CpuModelSensor(info, tdp_w, activity),))
