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
from dataclasses import dataclass

from carbon_jupyter.device_health import forget as forget_lost_devices
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
    forget_lost_devices()


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
    gpu_probe = nvml.probe(gpus)
    replay_probe = replay.probe()
    probes.extend([gpu_probe, replay_probe])
    sensors = [*cpu, *dram, *gpu_probe.sensors, *replay_probe.sensors]
    return Discovery(tuple(sensors), tuple(probes))
