"""Hardware sources, one per module, probed lazily (nothing is touched at import).

:func:`discover` finds what this machine can measure, best source first:

* CPU: RAPL energy counters (:mod:`.rapl`), else the utilisation model
  (:mod:`.cpu_model`), with one message naming how to make RAPL readable.
* Memory: RAPL ``dram`` domains where the CPU exposes them, else the W/GB
  model (:mod:`.memory`).
* GPUs: NVIDIA through NVML (:mod:`.nvml`), only those this process can see
  unless ``gpus`` says otherwise; plus replayed traces when
  ``CARBON_JUPYTER_REPLAY`` is set (:mod:`.replay`).

The sensors are made once per process and per set of arguments, and reused
by every run: probing NVML costs far more than reading it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace

from carbon_jupyter.notices import logger, notice_once
from carbon_jupyter.sensors.base import Probe, Reading, Sensor
from carbon_jupyter.sensors.process import reset_shared_tree

__all__ = ["Discovery", "Probe", "Reading", "Sensor", "discover", "reset"]


@dataclass(frozen=True)
class Discovery:
    """The sensors in use and every probe's findings (``carbon-jupyter doctor`` prints them)."""

    sensors: tuple[Sensor, ...]
    probes: tuple[Probe, ...]

    @property
    def problems(self) -> tuple[str, ...]:
        return tuple(p for probe in self.probes for p in probe.problems)

    @property
    def warnings(self) -> tuple[str, ...]:
        """What every run measured with these sensors carries in ``Run.warnings``."""
        return tuple(w for probe in self.probes for w in probe.warnings)


_cache: dict[tuple[object, ...], Discovery] = {}
_lock = threading.Lock()


def _gpus_key(gpus: str | Sequence[int | str] | None) -> object:
    if gpus is None or isinstance(gpus, str):
        return gpus
    return tuple(gpus)


def discover(
    gpus: str | Sequence[int | str] | None = None,
    *,
    powercap_root: str | None = None,
    refresh: bool = False,
    announce: bool = True,
) -> Discovery:
    """The sensors for this machine. Problems are said once, each naming its fix.

    ``announce=False`` leaves the problems to the caller (``carbon-jupyter doctor``).
    """
    key = (
        _gpus_key(gpus),
        powercap_root or os.environ.get("CARBON_JUPYTER_POWERCAP_ROOT"),
        os.environ.get("CARBON_JUPYTER_REPLAY"),
        os.environ.get("CUDA_VISIBLE_DEVICES"),
    )
    with _lock:
        if not refresh and key in _cache:
            return _cache[key]
        found = _probe_all(gpus, powercap_root)
        _cache[key] = found
    for probe in found.probes if announce else ():
        for problem in probe.problems:
            if probe.expected:
                # How this machine is (a VM without RAPL, no NVIDIA software): logged
                # quietly; `carbon-jupyter doctor` and every run's methods still show it.
                logger.info("carbon-jupyter: %s", problem)
            else:
                notice_once(f"probe:{problem}", f"carbon-jupyter: {problem}")
    return found


def reset() -> None:
    """Forget the sensors found so far (tests, or after hardware changed)."""
    with _lock:
        for found in _cache.values():
            for sensor in found.sensors:
                try:
                    sensor.close()
                except Exception:
                    pass
        _cache.clear()
    reset_shared_tree()


def _probe_all(gpus: str | Sequence[int | str] | None, powercap_root: str | None) -> Discovery:
    from carbon_jupyter.sensors import cpu_model, memory, nvml, rapl, replay

    probes: list[Probe] = []
    rapl_probe = rapl.probe(powercap_root)
    probes.append(rapl_probe)
    cpu = [s for s in rapl_probe.sensors if s.info.kind == "cpu"]
    dram = [s for s in rapl_probe.sensors if s.info.kind == "ram"]
    if not cpu:
        model = cpu_model.probe()
        probes.append(model)
        cpu = list(model.sensors)
    if not dram:
        ram = memory.probe()
        probes.append(ram)
        dram = list(ram.sensors)
    else:
        rest = _memory_without_dram(cpu, dram)
        if rest is not None:
            probes.append(rest)
            dram.extend(rest.sensors)
    gpu_probe = nvml.probe(gpus)
    replay_probe = replay.probe()
    probes.extend([gpu_probe, replay_probe])
    sensors = [*cpu, *dram, *gpu_probe.sensors, *replay_probe.sensors]
    return Discovery(tuple(sensors), tuple(probes))


def _socket(device_id: str) -> str:
    """``cpu:1-die0`` and ``ram:dram1`` -> ``1``."""
    tail = device_id.split(":", 1)[-1].removeprefix("dram")
    return tail.split("-", 1)[0]


def _memory_without_dram(cpu: Sequence[Sensor], dram: Sequence[Sensor]) -> Probe | None:
    """The RAM model for the sockets that have no RAPL ``dram`` domain, if any lack one."""
    from carbon_jupyter.sensors import memory

    sockets = sorted({_socket(s.info.device_id) for s in cpu if s.info.method == "rapl"})
    covered = {_socket(s.info.device_id) for s in dram}
    uncovered = [s for s in sockets if s not in covered]
    if not sockets or not uncovered:
        return None
    fraction = len(uncovered) / len(sockets)
    model = memory.probe()
    scaled = tuple(ScaledSensor(s, fraction, ", ".join(uncovered)) for s in model.sensors)
    have = ", ".join(sorted(covered))
    lacking = ", ".join(uncovered)
    warning = (
        f"RAPL measures the memory of package {have} only (no dram domain on package "
        f"{lacking}); the memory of package {lacking} is estimated with the RAM model as "
        f"{len(uncovered)}/{len(sockets)} of the installed memory"
    )
    return Probe(source="ram-model", sensors=scaled, warnings=(warning,))


class ScaledSensor:
    """Another sensor's figures times ``fraction`` (the RAM model for some sockets only)."""

    def __init__(self, sensor: Sensor, fraction: float, sockets: str) -> None:
        self._sensor = sensor
        self.fraction = fraction
        self.info = replace(
            sensor.info,
            name=f"{sensor.info.name} (package {sockets}, no dram counter)",
            detail=f"{fraction:.3g} x ({sensor.info.detail}): the sockets without a RAPL dram "
            f"domain",
        )

    def read(self) -> Reading:
        reading = self._sensor.read()
        scale = self.fraction
        return replace(
            reading,
            counter_j=None if reading.counter_j is None else reading.counter_j * scale,
            counter_range_j=None
            if reading.counter_range_j is None
            else reading.counter_range_j * scale,
            power_w=None if reading.power_w is None else reading.power_w * scale,
        )

    def close(self) -> None:
        self._sensor.close()
