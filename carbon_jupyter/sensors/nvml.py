"""NVIDIA GPUs through NVML (the library behind ``nvidia-smi``).

Which GPUs are measured
-----------------------
By default, the GPUs this process can see, as CUDA would show them:

* ``CUDA_VISIBLE_DEVICES`` unset: every GPU on the machine.
* set to indices (``0,2``): those GPUs.
* set to UUIDs or unique UUID prefixes (``GPU-8f3a``, ``MIG-...``): the GPUs
  with those UUIDs.
* set to an empty string, ``-1`` or ``NoDevFiles``: none.

As in CUDA, the list ends at its first entry that names no GPU; that entry is
reported by ``carbon-jupyter doctor``. ``gpus="all"`` (``--gpus all``) measures
every GPU whatever the variable says, and ``gpus="0,1"`` or ``gpus=[0, 1]``
picks NVML indices (the numbering of ``nvidia-smi -L``). CUDA numbers GPUs
fastest first unless ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` is set, NVML by PCI bus;
on a machine with identical GPUs the two agree. Where they might not, set
``CUDA_DEVICE_ORDER=PCI_BUS_ID`` or name GPUs by UUID.

How energy is obtained
----------------------
* ``nvml-energy`` (Volta and newer): the GPU's total-energy counter
  (``nvmlDeviceGetTotalEnergyConsumption``, millijoules, 64 bits, never wraps in
  practice). The energy of a run is the counter difference between start and
  stop, whatever the sampling interval. Power is read too, for the live view.
* ``nvml-power`` (older GPUs): power draw only. Read once per tick of the
  user's interval, power would miss whatever happens between ticks, so the
  interval only sets what is plotted and stored; the energy comes from one of
  two paths (:mod:`carbon_jupyter.sensors.nvml_samples` explains both):

  - where the driver keeps a buffer of its power samples (about one every
    20 ms), those samples, integrated by trapezoid on the driver's timestamps
    (``nvmlDeviceGetSamples`` with ``NVML_TOTAL_POWER_SAMPLES``); the sensor
    reports the running total as a counter;
  - otherwise ``nvmlDeviceGetPowerUsage``, which the sampler reads every
    0.05 s on a private tick (the sensor's ``poll_period_s``) and integrates
    by trapezoid.

  The device's ``detail``, printed by ``carbon-jupyter doctor``, says which.

A GPU that gives neither is left out with a message. Every GPU's plausible
maximum power (``max_power_w``, against which the sampler judges counter
steps) is its enforced power limit times 1.5, where NVML reports the limit.

The kernel's share
------------------
Where the driver reports per-process utilisation
(``nvmlDeviceGetProcessUtilization``), each reading carries the share of the
GPU's SM activity since the previous reading that belongs to this process and
its children. The share is unknown (``None``) when:

* the driver does not report per-process figures (many consumer cards, MIG,
  WSL), or
* the process runs in a container with its own PID namespace: NVML reports
  host PIDs, which do not match the PIDs seen inside the container. When no
  reported PID matches ours and none of them exists in our PID namespace, the
  share is taken as unknown rather than zero.

When the driver reports no process at all for an interval and the GPU's SM
utilisation is zero, the GPU was idle and our share is 0.

MIG
---
NVML reports no energy or power per MIG instance. A MIG instance named in
``CUDA_VISIBLE_DEVICES`` is measured through its parent GPU: the figures are
the whole GPU's, shared with any other instances on it, and the device's
``detail`` says so. Several instances of one GPU count that GPU once.

Nothing here touches NVML at import; :func:`probe` imports ``pynvml`` (package
``nvidia-ml-py``) when called, and a missing library or driver becomes a
message, never an exception.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import psutil

from carbon_jupyter.errors import SensorError
from carbon_jupyter.model import DeviceInfo, Method
from carbon_jupyter.sensors.base import Probe, Reading
from carbon_jupyter.sensors.nvml_errors import (
    NO_GPU_PROBLEM,
    code,
    nvml_error,
    reason,
    unsupported_codes,
)
from carbon_jupyter.sensors.nvml_samples import (
    BUFFER_READ_PERIOD_S,
    DETAIL_POLLED,
    DETAIL_SAMPLES,
    POLL_PERIOD_S,
    PowerSampleBuffer,
    SampleValueError,
)
from carbon_jupyter.sensors.nvml_select import Gpu, choose, nvml_text, refuse_named, selection_of
from carbon_jupyter.sensors.process import ProcessTree, shared_tree

SOURCE = "nvml"
#: A GPU's plausible maximum power over its enforced power limit (brief excursions above it).
MAX_POWER_OVER_LIMIT = 1.5


class _Session:
    """One ``nvmlInit`` shared by the sensors of one probe; shut down when the last closes."""

    def __init__(self, nvml: ModuleType) -> None:
        self.nvml = nvml
        self._users = 0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            self._users += 1

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users != 0:
                return
        with contextlib.suppress(self.nvml.NVMLError):
            self.nvml.nvmlShutdown()


class NvmlSensor:
    """One NVIDIA GPU read through NVML. Made by :func:`probe`.

    ``samples`` is the driver's power sample buffer of a power-only GPU that
    keeps one; a power-only GPU without it asks to be polled every
    :attr:`poll_period_s` seconds.
    """

    def __init__(
        self,
        *,
        session: _Session,
        info: DeviceInfo,
        handle: Any,
        label: str,
        samples: PowerSampleBuffer | None = None,
    ) -> None:
        self.info = info
        self._session = session
        self._nvml = session.nvml
        self._handle = handle
        self._label = label
        self._has_counter = info.method == "nvml-energy"
        self._samples = samples if not self._has_counter else None
        #: The most power the GPU can plausibly draw, in watts (None: limit unknown).
        self.max_power_w = info.power_limit_w * MAX_POWER_OVER_LIMIT if info.power_limit_w else None
        #: Seconds between the sampler's private reads: power polled, or the sample buffer
        #: read before the driver drops samples; None for a GPU with an energy counter.
        self.poll_period_s = (
            None
            if self._has_counter
            else POLL_PERIOD_S
            if self._samples is None
            else BUFFER_READ_PERIOD_S
        )
        self._doing = (
            "reading the energy counter"
            if self._has_counter
            else "reading the power samples"
            if self._samples is not None
            else "reading the power draw"
        )
        self._lock = threading.Lock()
        self._closed = False
        self._unsupported = unsupported_codes(self._nvml)
        # Optional figures; each turns off for good the first time NVML says it is unsupported.
        self._power_ok = True
        self._utilization_ok = True
        self._memory_ok = True
        self._share_ok = True
        self._last_seen_us = 0
        self._tree: ProcessTree | None = None
        session.acquire()
        self._prime_process_samples()

    # -- Sensor protocol -----------------------------------------------------------
    def read(self) -> Reading:
        """Read the GPU now. Raises SensorError when NVML fails."""
        with self._lock:
            self._check_open()
            doing = self._doing
            try:
                counter_j, power_w = self._energy(with_power=True)
                doing = "reading the utilisation"
                utilization_pct = self._optional_utilization()
                doing = "reading the memory use"
                memory_used_b = self._optional_memory()
                doing = "reading the per-process utilisation"
                share = self._process_share(utilization_pct)
            except self._nvml.NVMLError as exc:
                raise nvml_error(self._nvml, exc, doing=doing, device=self._label) from exc
        return Reading(
            counter_j=counter_j,
            counter_range_j=None,
            power_w=power_w,
            process_share=share,
            utilization_pct=utilization_pct,
            memory_used_b=memory_used_b,
        )

    def read_energy(self) -> Reading:
        """The energy figure alone, cheaply: the counter, the sample total, or the power."""
        with self._lock:
            self._check_open()
            try:
                counter_j, power_w = self._energy(with_power=False)
            except self._nvml.NVMLError as exc:
                raise nvml_error(self._nvml, exc, doing=self._doing, device=self._label) from exc
        return Reading(counter_j=counter_j, power_w=power_w)

    def close(self) -> None:
        """Let go of NVML; the last sensor of a probe to close shuts NVML down. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._session.release()

    @property
    def power_samples(self) -> PowerSampleBuffer | None:
        """The driver's power sample buffer this GPU's energy comes from, if it has one."""
        return self._samples

    def __repr__(self) -> str:
        return f"NvmlSensor({self.info.device_id!r}, {self.info.name!r}, {self.info.method!r})"

    # -- energy ------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise SensorError(
                f"{self._label} was read after its sensor was closed; probe the GPUs again"
            )

    def _energy(self, *, with_power: bool) -> tuple[float | None, float | None]:
        """(counter in J, power in W) by this GPU's path; the counter's power only if asked."""
        if self._has_counter:
            counter_mj = self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
            return float(counter_mj) / 1000.0, self._optional_power() if with_power else None
        if self._samples is not None:
            try:
                self._samples.fetch()
            except SampleValueError as exc:
                raise SensorError(f"{self._doing} of {self._label} failed: {exc}") from exc
            return self._samples.energy_j, self._samples.power_w
        return None, float(self._nvml.nvmlDeviceGetPowerUsage(self._handle)) / 1000.0

    # -- optional figures ------------------------------------------------------------
    def _optional_power(self) -> float | None:
        if not self._power_ok:
            return None
        try:
            return float(self._nvml.nvmlDeviceGetPowerUsage(self._handle)) / 1000.0
        except self._nvml.NVMLError as exc:
            if exc.value not in self._unsupported:
                raise
            self._power_ok = False
            return None

    def _optional_utilization(self) -> float | None:
        if not self._utilization_ok:
            return None
        try:
            return float(self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu)
        except self._nvml.NVMLError as exc:
            if exc.value not in self._unsupported:
                raise
            self._utilization_ok = False
            return None

    def _optional_memory(self) -> int | None:
        if not self._memory_ok:
            return None
        try:
            return int(self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used)
        except self._nvml.NVMLError as exc:
            if exc.value not in self._unsupported:
                raise
            self._memory_ok = False
            return None

    # -- process share -------------------------------------------------------------
    def _process_samples(self) -> list[Any] | None:
        """Per-process samples newer than the last seen; [] when there are none, None if unknown."""
        if not self._share_ok:
            return None
        try:
            samples = list(
                self._nvml.nvmlDeviceGetProcessUtilization(self._handle, self._last_seen_us)
            )
        except self._nvml.NVMLError as exc:
            empty = (code(self._nvml, "NVML_ERROR_NOT_FOUND"), code(self._nvml, "NVML_SUCCESS"))
            if exc.value in empty:
                return []
            if exc.value in self._unsupported:
                self._share_ok = False
                return None
            raise
        if samples:
            self._last_seen_us = max(self._last_seen_us, *(int(s.timeStamp) for s in samples))
        return samples

    def _prime_process_samples(self) -> None:
        """Skip what NVML holds from before the sensor existed; learn whether it is offered."""
        try:
            self._process_samples()
        except self._nvml.NVMLError:
            self._share_ok = False

    def _process_share(self, utilization_pct: float | None) -> float | None:
        samples = self._process_samples()
        if samples is None:
            return None
        if not samples:
            # No process ran on the GPU; if it was idle too, nothing of it was ours.
            return 0.0 if utilization_pct == 0 else None
        if self._tree is None:
            self._tree = shared_tree()
        ours = self._tree.pids()
        ours_sm = sum(int(s.smUtil) for s in samples if int(s.pid) in ours)
        total_sm = sum(int(s.smUtil) for s in samples)
        if not any(int(s.pid) in ours for s in samples) and not any(
            psutil.pid_exists(int(s.pid)) for s in samples
        ):
            # Host PIDs seen from inside a container: which of them is us cannot be told.
            return None
        if total_sm <= 0:
            return 0.0
        return min(1.0, ours_sm / total_sm)


# -- building sensors ---------------------------------------------------------------


def _try(nvml: ModuleType, fn: str, *args: Any) -> tuple[Any, Any]:
    """Call ``nvml.<fn>(*args)``: (result, None), or (None, the NVMLError it raised)."""
    try:
        return getattr(nvml, fn)(*args), None
    except nvml.NVMLError as exc:
        return None, exc


def _sensor_for(
    nvml: ModuleType, session: _Session, gpu: Gpu
) -> tuple[NvmlSensor | None, str | None]:
    unsupported = unsupported_codes(nvml)
    label = f"GPU {gpu.index}"
    name_value, exc = _try(nvml, "nvmlDeviceGetName", gpu.handle)
    if exc is not None:
        return None, f"{label} could not be named: {reason(nvml, exc)}. It is not measured."
    name = nvml_text(name_value)
    label = f"GPU {gpu.index} ({name})"
    uuid = gpu.uuid
    detail = ""
    handle = gpu.handle
    if gpu.mig is not None:
        mig_uuid, mig_name, mig_handle = gpu.mig
        uuid = mig_uuid
        name = mig_name or name  # e.g. "NVIDIA A100-SXM4-40GB MIG 1g.5gb"
        detail = (
            f"MIG instance {mig_uuid}: NVML gives no energy or power per MIG instance, so the "
            f"figures are the whole of GPU {gpu.index}, shared with any other instances on it"
        )
        # Use the instance itself should a driver ever report it.
        _, exc = _try(nvml, "nvmlDeviceGetTotalEnergyConsumption", mig_handle)
        if exc is None:
            handle, detail = mig_handle, f"MIG instance {mig_uuid}"

    _, energy_exc = _try(nvml, "nvmlDeviceGetTotalEnergyConsumption", handle)
    method: Method
    samples: PowerSampleBuffer | None = None
    if energy_exc is None:
        method = "nvml-energy"
    else:
        if energy_exc.value not in unsupported:
            return None, f"{label}: {reason(nvml, energy_exc)}. It is not measured."
        _, power_exc = _try(nvml, "nvmlDeviceGetPowerUsage", handle)
        if power_exc is not None:
            return None, (
                f"{label} reports neither an energy counter nor its power draw "
                f"({power_exc}): its energy is not measured."
            )
        method = "nvml-power"
        samples = PowerSampleBuffer.open(nvml, handle)
        path = DETAIL_SAMPLES if samples is not None else DETAIL_POLLED
        detail = f"{detail}; {path}" if detail else path
    limit_mw, limit_exc = _try(nvml, "nvmlDeviceGetEnforcedPowerLimit", handle)
    power_limit_w = float(limit_mw) / 1000.0 if limit_exc is None and limit_mw else None
    info = DeviceInfo(
        device_id=f"gpu:{gpu.index}",
        kind="gpu",
        name=name,
        method=method,
        uuid=uuid,
        power_limit_w=power_limit_w,
        detail=detail,
    )
    try:
        sensor = NvmlSensor(session=session, info=info, handle=handle, label=label, samples=samples)
        return sensor, None
    except nvml.NVMLError as exc:  # pragma: no cover - priming swallows NVML errors
        return None, f"{label}: {reason(nvml, exc)}. It is not measured."


def _import_pynvml() -> ModuleType | None:
    try:
        import pynvml
    except ImportError:
        return None
    module: ModuleType = pynvml
    return module


def probe(
    gpus: str | Sequence[int | str] | None = None, *, nvml: ModuleType | None = None
) -> Probe:
    """Find the NVIDIA GPUs to measure and make one sensor for each.

    ``gpus``: ``None`` for the GPUs this process can see (``CUDA_VISIBLE_DEVICES``),
    ``"all"`` for every GPU, or NVML indices / UUIDs (``"0,1"``, ``[0, 1]``).
    ``nvml`` replaces the ``pynvml`` module (tests pass a fake one).

    Never raises for a missing driver or library: the probe then has no sensors
    and one problem sentence. Raises :class:`ConfigError` when ``gpus`` names a
    GPU that does not exist, naming those that do, or when it names any GPU on a
    machine where none can be read (no driver, no NVML). Closing every sensor
    shuts NVML down.
    """
    selection = selection_of(gpus)
    if selection.entries == []:
        if selection.origin == "CUDA_VISIBLE_DEVICES":
            return Probe(
                SOURCE,
                (),
                (
                    f"CUDA_VISIBLE_DEVICES={selection.raw!r} hides every GPU from this process, "
                    "so no GPU is measured; pass --gpus all (gpus='all') to measure them anyway.",
                ),
            )
        return Probe(SOURCE, ())
    if nvml is None:
        nvml = _import_pynvml()
        if nvml is None:
            refuse_named(
                selection, "GPUs cannot be read here, the nvidia-ml-py package is not "
                "installed (`pip install nvidia-ml-py`)",
            )  # fmt: skip
            return Probe(
                SOURCE,
                (),
                (
                    "the nvidia-ml-py package is not installed: GPU energy is not measured. "
                    "Install it with `pip install nvidia-ml-py`.",
                ),
            )
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        absent = (
            code(nvml, "NVML_ERROR_LIBRARY_NOT_FOUND"),
            code(nvml, "NVML_ERROR_DRIVER_NOT_LOADED"),
        )
        if exc.value in absent:
            refuse_named(selection, "there is no NVIDIA GPU here (no NVIDIA driver found)")
            return Probe(SOURCE, (), (NO_GPU_PROBLEM,), expected=True)
        refuse_named(selection, f"NVML could not start ({reason(nvml, exc)})")
        return Probe(
            SOURCE,
            (),
            (f"NVML could not start: {reason(nvml, exc)}. GPU energy is not measured.",),
        )
    except OSError as exc:  # a broken libnvidia-ml.so
        refuse_named(selection, f"there is no NVIDIA GPU here (a broken NVML library: {exc})")
        return Probe(SOURCE, (), (f"{NO_GPU_PROBLEM} ({exc})",), expected=True)

    session = _Session(nvml)
    session.acquire()  # held while probing, so a sensor closed early cannot shut NVML down
    sensors: list[NvmlSensor] = []
    problems: list[str] = []
    try:
        chosen, problems = choose(nvml, selection)
        if not chosen and not problems:
            problems.append("NVML found no NVIDIA GPU on this machine: GPU energy is not measured.")
        for gpu in chosen:
            sensor, problem = _sensor_for(nvml, session, gpu)
            if sensor is not None:
                sensors.append(sensor)
            if problem is not None:
                problems.append(problem)
    except nvml.NVMLError as exc:
        for sensor in sensors:
            sensor.close()
        sensors = []
        problems.append(
            f"NVML could not list the GPUs: {reason(nvml, exc)}. GPU energy is not measured."
        )
    except BaseException:
        for sensor in sensors:
            sensor.close()
        session.release()
        raise
    session.release()
    return Probe(SOURCE, tuple(sensors), tuple(problems))
