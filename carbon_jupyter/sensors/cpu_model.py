"""The CPU, estimated from its utilisation (method ``cpu-model``).

Used where no RAPL counter can be read. The machine's CPU utilisation ``u``
(0..1, busy over total CPU time of all logical CPUs, see
:mod:`carbon_jupyter.sensors.cpu_share`) becomes power in one of two ways.

**Bare metal: the TDP load curve.** ``power_w = tdp_w * curve(u)`` on the
curve Teads Engineering derived from SPECpower results and their own RAPL
measurements of AWS bare-metal machines (B. Davy, *Estimating AWS EC2
Instances Power Consumption*, Teads Engineering, 2021), also used by the
Boavizta API and the Green Software Foundation's Impact Framework: 12 % of TDP
at idle, 32 % at 10 % load, 75 % at 50 % load and 102 % at full load, linear in
between. These four points are not in the shipped data files; they are an
assumption taken from those publications, and the curve is known not to fit
every processor. The TDP, first that applies:

1. ``CARBON_JUPYTER_CPU_TDP_W`` - the total TDP of the CPUs this machine sees,
   in watts (a positive number; anything else raises ConfigError);
2. the shipped hardware table (:func:`carbon_jupyter.sensors.hardware.lookup_tdp_w`)
   for the CPU's model name, times the number of sockets;
3. 12 W per physical core (Green Algorithms' figure for an unknown CPU, TDP_cpu.csv
   ``Any``), times the physical cores :func:`psutil.cpu_count` reports;
4. 85 W (CodeCarbon's figure for an unknown CPU model) when even the core count
   is unknown.

**Virtual machine: per vCPU.** A guest sees the host's model name and a few of
its threads, so a package TDP (or 12 W times the cores the guest sees) is
several times too high. There ``power_w = vcpus * (min_w + u * (max_w - min_w))``
with the watts per vCPU of Cloud Carbon Footprint for the processor's
microarchitecture, or a provider's or the providers' average when the
microarchitecture is unknown; ``vcpus`` is the logical CPU count the guest
sees. How a virtual machine and its cloud are recognised, the override
``CARBON_JUPYTER_VIRTUAL=1``/``0`` and the coefficient table are in
:mod:`carbon_jupyter.sensors.virtual`. ``CARBON_JUPYTER_CPU_TDP_W`` wins over
this too: set it to use the load curve with your own figure.

**Energy, whatever the interval.** The sensor integrates itself: each reading
turns the utilisation since *its* previous reading into power and adds that
power times the time since that reading (its own monotonic clock) to a running
total, returned as ``Reading.counter_j`` (with no range). The sampler takes
differences of that counter, so a run's energy is the sum over its intervals of
``power(u_interval) * dt_interval``: it does not depend on the sampling interval,
and no utilisation from before the run (such as the average since boot) enters
it, since the reading at a run's start only sets the run's zero.
``Reading.power_w`` is the latest interval's power for the live plot (at the
utilisation shown with it: that of the latest interval long enough to
resolve, see :mod:`carbon_jupyter.sensors.cpu_share`); the sensor's very first
reading has no interval, so it gives no power, utilisation or process share.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import psutil

from carbon_jupyter.model import DeviceInfo
from carbon_jupyter.sensors import virtual
from carbon_jupyter.sensors.base import Probe, Reading
from carbon_jupyter.sensors.cpu_share import CpuActivity
from carbon_jupyter.sensors.hardware import (
    constant_value,
    cpu_model_name,
    cpu_socket_count,
    cpuinfo_field,
    env_positive_float,
    lookup_tdp_w,
)
from carbon_jupyter.sensors.process import ProcessTree

CPU_TDP_ENV = "CARBON_JUPYTER_CPU_TDP_W"

#: (utilisation, fraction of TDP) points of the Teads load curve; see the module docstring.
LOAD_CURVE: tuple[tuple[float, float], ...] = ((0.0, 0.12), (0.1, 0.32), (0.5, 0.75), (1.0, 1.02))
#: ``max_power_w`` over the model's full-load power: room for a reading's timing jitter.
MAX_POWER_MARGIN = 1.5


def _interpolate(points: tuple[tuple[float, float], ...], u: float) -> float:
    u = min(1.0, max(0.0, u))
    for (u0, y0), (u1, y1) in itertools.pairwise(points):
        if u <= u1:
            return y0 + (y1 - y0) * (u - u0) / (u1 - u0)
    return points[-1][1]


def load_fraction(utilisation: float) -> float:
    """Fraction of TDP drawn at ``utilisation`` (0..1, clamped), on :data:`LOAD_CURVE`."""
    return _interpolate(LOAD_CURVE, utilisation)


def cpu_power_w(tdp_w: float, utilisation: float) -> float:
    """Estimated CPU power in watts at ``utilisation`` (0..1) for a CPU of ``tdp_w``."""
    return tdp_w * load_fraction(utilisation)


@dataclass(frozen=True)
class CpuPowerModel:
    """Power in watts as a piecewise-linear function of utilisation (0..1).

    ``points`` are (utilisation, watts) from 0 to 1; ``note`` says where the
    figures come from; ``rated_w`` is the figure the model is scaled by (the
    TDP, or the vCPUs' full-load power), recorded as the device's power limit.
    """

    points: tuple[tuple[float, float], ...]
    note: str
    rated_w: float

    def power_w(self, utilisation: float) -> float:
        """Modelled power in watts at ``utilisation`` (clamped to 0..1)."""
        return _interpolate(self.points, utilisation)

    @property
    def idle_w(self) -> float:
        return self.points[0][1]

    @property
    def full_load_w(self) -> float:
        return max(watts for _, watts in self.points)


def tdp_power_model(tdp_w: float, tdp_note: str = "") -> CpuPowerModel:
    """The Teads load curve for a CPU of ``tdp_w`` watts."""
    note = (
        f"CPU utilisation on the Teads load curve (12 % of TDP idle, 102 % at full load) "
        f"x {tdp_note or f'TDP {tdp_w:g} W'}"
    )
    return CpuPowerModel(tuple((u, tdp_w * f) for u, f in LOAD_CURVE), note, tdp_w)


def vcpu_power_model(vcpus: int, coefficients: virtual.VcpuPower) -> CpuPowerModel:
    """``vcpus`` times the per-vCPU line of ``coefficients``."""
    low, high = coefficients.min_w, coefficients.max_w
    note = (
        f"{vcpus} vCPUs x ({low:.3g} W + utilisation x ({high:.3g} - {low:.3g}) W) = "
        f"{vcpus * low:.3g} W idle, {vcpus * high:.3g} W at full load; per-vCPU coefficients "
        f"of Cloud Carbon Footprint: {coefficients.basis}"
    )
    return CpuPowerModel(((0.0, vcpus * low), (1.0, vcpus * high)), note, vcpus * high)


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


def resolve_power_model(
    model_name: str,
    *,
    cpuinfo: str | os.PathLike[str] = virtual.CPUINFO,
    dmi_dir: str | os.PathLike[str] = virtual.DMI_DIR,
    environ: Mapping[str, str] | None = None,
    vcpus: int | None = None,
    machine: str | None = None,
) -> CpuPowerModel:
    """The power model for this machine; its ``note`` says which and why.

    ``cpuinfo``, ``dmi_dir`` and ``environ`` are where the machine is
    recognised (:func:`carbon_jupyter.sensors.virtual.detect`); ``vcpus``
    defaults to the logical CPU count and ``machine`` to :func:`platform.machine`.
    Raises ConfigError for a bad ``CARBON_JUPYTER_CPU_TDP_W`` or
    ``CARBON_JUPYTER_VIRTUAL``.
    """
    found = virtual.detect(cpuinfo=cpuinfo, dmi_dir=dmi_dir, environ=environ)
    override = env_positive_float(CPU_TDP_ENV)
    if found.virtual and override is None:
        arch = virtual.microarchitecture(
            model_name,
            provider=found.provider,
            machine=machine,
            cpu_part=cpuinfo_field("CPU part", cpuinfo),
        )
        coefficients = virtual.vcpu_power(model_name, provider=found.provider, arch=arch or "")
        model = vcpu_power_model(vcpus or virtual.logical_cpus(), coefficients)
        cloud = (
            f", on {found.provider} ({found.provider_evidence})"
            if found.provider is not None
            else ""
        )
        where = f"virtual machine ({found.evidence}{cloud})"
        return CpuPowerModel(model.points, f"{where}: {model.note}", model.rated_w)
    tdp_w, tdp_note = resolve_tdp_w(model_name, cpu_socket_count(cpuinfo))
    model = tdp_power_model(tdp_w, tdp_note)
    if found.virtual:
        where = f"virtual machine ({found.evidence}), {CPU_TDP_ENV} wins over per-vCPU figures"
    else:
        where = f"bare metal ({found.evidence})"
    return CpuPowerModel(model.points, f"{where}: {model.note}", model.rated_w)


class CpuModelSensor:
    """Machine CPU utilisation turned into power and integrated; an estimate, not a measurement.

    ``clock`` (monotonic seconds) is injectable for tests. See the module
    docstring for what each reading carries.
    """

    def __init__(
        self,
        info: DeviceInfo,
        model: CpuPowerModel,
        activity: CpuActivity,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.info = info
        self.model = model
        #: The most this model can say, with a margin (see :mod:`carbon_jupyter.sensors.base`).
        self.max_power_w = MAX_POWER_MARGIN * model.full_load_w
        self._activity = activity
        self._clock = clock
        self._lock = threading.Lock()
        self._read_at: float | None = None
        self._energy_j = 0.0

    def read(self) -> Reading:
        with self._lock:
            now = self._clock()
            delta = self._activity.update()
            previous, self._read_at = self._read_at, now
            if delta is None or previous is None:
                return Reading(counter_j=self._energy_j)
            # The energy uses this very interval; the live figures the resolved one.
            power_w = self.model.power_w(delta.interval_busy_fraction)
            self._energy_j += power_w * max(0.0, now - previous)
            return Reading(
                counter_j=self._energy_j,
                power_w=self.model.power_w(delta.busy_fraction),
                utilization_pct=100.0 * delta.busy_fraction,
                process_share=delta.process_share,
            )

    def close(self) -> None:
        """Nothing to release."""


def probe(
    *,
    tree: ProcessTree | None = None,
    activity: CpuActivity | None = None,
    cpuinfo: str | os.PathLike[str] = virtual.CPUINFO,
    dmi_dir: str | os.PathLike[str] = virtual.DMI_DIR,
    environ: Mapping[str, str] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Probe:
    """The CPU model for this machine. Raises ConfigError for a bad override."""
    model_name = cpu_model_name(cpuinfo)
    model = resolve_power_model(model_name, cpuinfo=cpuinfo, dmi_dir=dmi_dir, environ=environ)
    info = DeviceInfo(
        device_id="cpu",
        kind="cpu",
        name=model_name or "CPU",
        method="cpu-model",
        power_limit_w=model.rated_w,
        detail=f"estimate: {model.note}",
    )
    if activity is None:
        activity = CpuActivity(tree)
    sensor = CpuModelSensor(info, model, activity, clock=clock)
    return Probe(source="cpu-model", sensors=(sensor,))
