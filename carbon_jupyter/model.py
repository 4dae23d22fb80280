"""The records every part of carbon-jupyter passes around.

All values are in SI units and the unit is part of the field name: joules
(``energy_j``), watts (``power_w``), seconds (``duration_s``), grams of CO2
equivalent (``co2_g``) and grams per kilowatt-hour (``intensity_g_per_kwh``).
Conversions to kWh, Wh or kg happen only when a number is displayed.

Every device total carries the ``method`` that produced it, so a reader can
always tell a measured counter from sampled power or a model estimate:

========================  =====================================================
``rapl``                  Intel/AMD RAPL energy counter (measured)
``nvml-energy``           NVML total-energy counter, Volta and newer (measured)
``nvml-power``            NVML power readings integrated by trapezoid (sampled)
``cpu-model``             CPU utilisation times a TDP figure (estimate)
``ram-model``             installed or resident memory times W/GB (estimate)
``replay``                a recorded power trace played back (replay)
``codecarbon``            imported from a CodeCarbon ``emissions.csv`` (imported)
========================  =====================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Method = Literal[
    "rapl", "nvml-energy", "nvml-power", "cpu-model", "ram-model", "replay", "codecarbon"
]
Kind = Literal["cpu", "gpu", "ram"]
Status = Literal["running", "ok", "error", "interrupted", "lost"]
Attribution = Literal["device", "process"]
Phase = Literal["train", "inference", "other"]

#: Methods whose figures are read from a hardware energy counter.
COUNTER_METHODS = frozenset({"rapl", "nvml-energy"})
#: Methods whose figures are estimates from a model rather than a measurement.
MODEL_METHODS = frozenset({"cpu-model", "ram-model"})

J_PER_KWH = 3.6e6
KINDS: tuple[Kind, ...] = ("cpu", "gpu", "ram")


def method_quality(method: str) -> str:
    """One word for how a figure was obtained: measured, sampled, estimated, replayed, imported."""
    if method in COUNTER_METHODS:
        return "measured"
    if method == "nvml-power":
        return "sampled"
    if method == "replay":
        return "replayed"
    if method == "codecarbon":
        return "imported"
    return "estimated"


@dataclass(frozen=True)
class DeviceInfo:
    """One source of energy figures: a CPU socket, a GPU, the machine's memory.

    ``device_id`` is stable across runs on one machine (``cpu:0``, ``gpu:0``,
    ``ram``); ``name`` is what a person recognises (``NVIDIA H100 80GB HBM3``).
    """

    device_id: str
    kind: Kind
    name: str
    method: Method
    uuid: str | None = None
    power_limit_w: float | None = None
    #: The source's own notes, e.g. the TDP figure a model used and where it came from.
    detail: str = ""


@dataclass(frozen=True)
class Sample:
    """One reading of one device while a run is live.

    ``t_s`` is seconds since the run started (monotonic clock); ``energy_j`` is
    the device's energy since the run started, so the last sample of a device
    is its running total.
    """

    t_s: float
    device_id: str
    power_w: float | None
    energy_j: float
    utilization_pct: float | None = None
    memory_used_b: int | None = None
    process_energy_j: float | None = None


@dataclass(frozen=True)
class DeviceEnergy:
    """What one device drew during a run: the device total and the process's share."""

    device: DeviceInfo
    energy_j: float
    #: Energy attributed to this kernel's process tree; None where it cannot be told.
    process_energy_j: float | None = None
    #: Mean power over the run in watts.
    mean_power_w: float | None = None
    #: Set when the sensor failed mid-run and was dropped; the energy is what it had until then.
    error: str | None = None

    @property
    def method(self) -> str:
        return self.device.method

    def attributed_j(self, attribution: str) -> float:
        """The energy this device contributes under ``attribution`` (device or process)."""
        if attribution == "process" and self.process_energy_j is not None:
            return self.process_energy_j
        return self.energy_j


@dataclass(frozen=True)
class Intensity:
    """A carbon-intensity factor and the PUE applied with it, with where each came from."""

    intensity_g_per_kwh: float
    source: str
    year: int | None
    pue: float
    pue_source: str
    #: How the factor was chosen: argument, environment, cloud-environment, default.
    chosen_by: str = "default"
    #: The key the factor was looked up by (``DEU``, ``aws:eu-west-1``, ``World``).
    key: str = "World"


@dataclass(frozen=True)
class Run:
    """The result of one tracked block of code.

    ``energy_j`` is the IT energy under the run's ``attribution`` (the devices'
    own draw, or the process's share of it); ``facility_energy_j`` adds the data
    centre overhead (``energy_j * pue``) and is what ``co2_g`` is computed from.
    """

    id: str
    label: str | None
    phase: str | None
    items: int | None
    status: Status
    started_at: str
    ended_at: str | None
    duration_s: float
    attribution: Attribution
    devices: tuple[DeviceEnergy, ...]
    intensity: Intensity
    energy_j: float
    cpu_energy_j: float
    gpu_energy_j: float
    ram_energy_j: float
    co2_g: float
    tags: dict[str, str] = field(default_factory=dict)
    notebook: str | None = None
    cell: str | None = None
    kernel: str | None = None
    user: str | None = None
    host: str | None = None
    error: str | None = None
    #: One-line findings that may make this run's figures wrong or incomplete (a sensor
    #: that dropped or was read late, a counter glitch, a device that could not be read,
    #: sampled rather than counted energy). Empty when nothing is known to be wrong.
    warnings: tuple[str, ...] = ()
    #: The user's own results logged with the run (``log_metric("accuracy", 0.91)``).
    metrics: dict[str, float] = field(default_factory=dict)
    samples: tuple[Sample, ...] = field(default=(), repr=False, compare=False)

    # -- derived figures -------------------------------------------------------------
    @property
    def intensity_g_per_kwh(self) -> float:
        return self.intensity.intensity_g_per_kwh

    @property
    def pue(self) -> float:
        return self.intensity.pue

    @property
    def facility_energy_j(self) -> float:
        return self.energy_j * self.intensity.pue

    @property
    def energy_kwh(self) -> float:
        return self.energy_j / J_PER_KWH

    @property
    def energy_per_item_j(self) -> float | None:
        return self.energy_j / self.items if self.items else None

    @property
    def co2_per_item_g(self) -> float | None:
        return self.co2_g / self.items if self.items else None

    @property
    def mean_power_w(self) -> float | None:
        return self.energy_j / self.duration_s if self.duration_s > 0 else None

    @property
    def estimated(self) -> bool:
        """True when any device figure in the run comes from a model rather than a measurement."""
        return any(d.method in MODEL_METHODS for d in self.devices)

    def __repr__(self) -> str:
        from carbon_jupyter.show.format import run_repr

        return run_repr(self)

    def _repr_html_(self) -> str:
        """The notebook summary, when a Run is a cell's last expression."""
        from carbon_jupyter.show.display import summary_html

        return summary_html(self)
