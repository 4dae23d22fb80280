"""The machine's memory, estimated from its size (method ``ram-model``).

Power is constant while a run lasts: installed memory in GB times a figure in
watts per GB. The default, 0.3725 W/GB, is Green Algorithms' ``memoryPower``
(Lannelongue, Grealey & Inouye, *Green Algorithms: Quantifying the Carbon
Footprint of Computation*, Adv. Sci. 2021, doi:10.1002/advs.202100707, CC BY
4.0; data v3.0 ``referenceValues.csv``, which cites Karyakin & Salem 2017,
doi:10.1145/3076113.3076117). Set ``CARBON_JUPYTER_RAM_W_PER_GB`` to use
another figure.

"Installed" is the total the operating system reports (:func:`psutil.virtual_memory`),
counted in GiB because memory is sold in binary gigabytes; in a container this is
the host's memory, not the container's limit. In a virtual machine (recognised
as :mod:`carbon_jupyter.sensors.virtual` says) it is the memory given to the
guest, its part of the host's, and the device's detail says so; the W/GB
figure stays the same, since memory draws power per GB whoever holds it.

The process share is the resident memory of the kernel's process tree over the
machine's used memory, clamped to 0..1 (see :func:`memory_share`); it and the
memory in use are read at most every :data:`MEMORY_REFRESH_S` seconds.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping

import psutil

from carbon_jupyter.model import DeviceInfo
from carbon_jupyter.sensors import virtual
from carbon_jupyter.sensors.base import Probe, Reading
from carbon_jupyter.sensors.hardware import constant_value, env_positive_float
from carbon_jupyter.sensors.process import ProcessTree, shared_tree

RAM_W_PER_GB_ENV = "CARBON_JUPYTER_RAM_W_PER_GB"
_B_PER_GB = 2**30


def default_ram_w_per_gb() -> float:
    """Green Algorithms' memory power figure in W/GB (0.3725)."""
    return constant_value("ram_w_per_gb", "green_algorithms")


def memory_share(tree: ProcessTree) -> tuple[float | None, int]:
    """(share of used memory held by ``tree``, machine used memory in bytes)."""
    used_b = int(psutil.virtual_memory().used)
    if used_b <= 0:
        return None, used_b
    return min(1.0, max(0.0, tree.rss_bytes() / used_b)), used_b


#: Seconds between reads of memory use: the modelled power is constant and the share
#: of resident memory changes slowly, so this sensor costs next to nothing per tick.
MEMORY_REFRESH_S = 5.0


class RamModelSensor:
    """Installed memory times watts per GB; an estimate, not a measurement."""

    def __init__(
        self,
        info: DeviceInfo,
        power_w: float,
        tree: ProcessTree,
        *,
        refresh_s: float = MEMORY_REFRESH_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.info = info
        self.power_w = power_w
        self._tree = tree
        self._refresh_s = refresh_s
        self._clock = clock
        self._read_at: float | None = None
        self._share: tuple[float | None, int] = (None, 0)

    def read(self) -> Reading:
        now = self._clock()
        if self._read_at is None or now - self._read_at >= self._refresh_s:
            self._share = memory_share(self._tree)
            self._read_at = now
        share, used_b = self._share
        return Reading(power_w=self.power_w, process_share=share, memory_used_b=used_b)

    def close(self) -> None:
        """Nothing to release."""


def probe(
    *,
    tree: ProcessTree | None = None,
    cpuinfo: str | os.PathLike[str] = virtual.CPUINFO,
    dmi_dir: str | os.PathLike[str] = virtual.DMI_DIR,
    environ: Mapping[str, str] | None = None,
) -> Probe:
    """The RAM model for this machine. Raises ConfigError for a bad override.

    ``cpuinfo``, ``dmi_dir`` and ``environ`` are where a virtual machine is
    recognised (:func:`carbon_jupyter.sensors.virtual.detect`).
    """
    override = env_positive_float(RAM_W_PER_GB_ENV)
    if override is not None:
        w_per_gb, source = override, f"set by {RAM_W_PER_GB_ENV}"
    else:
        w_per_gb, source = default_ram_w_per_gb(), "Green Algorithms memoryPower"
    total_b = int(psutil.virtual_memory().total)
    size_gb = total_b / _B_PER_GB
    power_w = size_gb * w_per_gb
    found = virtual.detect(cpuinfo=cpuinfo, dmi_dir=dmi_dir, environ=environ)
    scope = (
        f"; a virtual machine ({found.evidence}): the memory is the guest's own, "
        f"its part of the host's"
        if found.virtual
        else ""
    )
    info = DeviceInfo(
        device_id="ram",
        kind="ram",
        name=f"RAM {size_gb:.1f} GB",
        method="ram-model",
        detail=(
            f"estimate: {size_gb:.1f} GB installed x {w_per_gb:g} W/GB ({source}) "
            f"= {power_w:.1f} W, constant while the run lasts{scope}"
        ),
    )
    sensor = RamModelSensor(info, power_w, tree if tree is not None else shared_tree())
    return Probe(source="ram-model", sensors=(sensor,))
