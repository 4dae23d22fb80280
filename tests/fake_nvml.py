"""A fake ``pynvml`` module: the real function names and signatures over GPUs you describe.

Pass it wherever code takes an NVML module (``nvml.probe(nvml=fake)``)::

    fake = FakeNvml([FakeGpu(name="NVIDIA A100-SXM4-80GB", power_w=300.0)])
    probe = nvml.probe("all", nvml=fake)
    fake.advance(2.0)            # 2 s pass: the energy counter grows by 600 J
    fake.break_gpu(0)            # every later call on GPU 0 raises GPU_IS_LOST

Time is the fake's own (``fake.t_s``), moved by :meth:`FakeNvml.advance`; the
energy counter is the integral of ``power_w`` (a number or a function of
``t_s``) over that time. ``FakeNvml(gpus, clock=time.monotonic)`` makes the
fake's time follow a real clock instead (seconds since the fake was made), for
tests that run a real sampler thread against a power trace.

Like the driver, every GPU keeps a buffer of its recent power samples
(``nvmlDeviceGetSamples`` with ``NVML_TOTAL_POWER_SAMPLES``): one every
``sample_period_s`` of the fake's time, the power at that instant in mW, the
newest ``sample_buffer_len`` kept. ``power_samples=False`` makes the call raise
NOT_SUPPORTED, as on GPUs whose driver keeps no such buffer.

NVML timestamps are microseconds of the CPU clock since the epoch: the fake's
are ``EPOCH_US`` plus its time in microseconds. Every function checks that
``nvmlInit`` was called, as the real library does.
``tests/test_sensors_nvml.py`` checks that each function's parameters match
the installed ``pynvml``.
"""

from __future__ import annotations

import ctypes
import math
import threading
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_ALREADY_INITIALIZED = 5
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_INSUFFICIENT_SIZE = 7
NVML_ERROR_INSUFFICIENT_POWER = 8
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_IRQ_ISSUE = 11
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_CORRUPTED_INFOROM = 14
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_RESET_REQUIRED = 16
NVML_ERROR_OPERATING_SYSTEM = 17
NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18
NVML_ERROR_IN_USE = 19
NVML_ERROR_MEMORY = 20
NVML_ERROR_NO_DATA = 21
NVML_ERROR_UNKNOWN = 999

NVML_TOTAL_POWER_SAMPLES = 0
NVML_GPU_UTILIZATION_SAMPLES = 1

NVML_VALUE_TYPE_DOUBLE = 0
NVML_VALUE_TYPE_UNSIGNED_INT = 1
NVML_VALUE_TYPE_UNSIGNED_LONG = 2
NVML_VALUE_TYPE_UNSIGNED_LONG_LONG = 3
NVML_VALUE_TYPE_SIGNED_LONG_LONG = 4
NVML_VALUE_TYPE_SIGNED_INT = 5
NVML_VALUE_TYPE_UNSIGNED_SHORT = 6

CONSTANTS = {name: value for name, value in globals().items() if name.startswith("NVML_")}

_MESSAGES = {
    NVML_ERROR_UNINITIALIZED: "Uninitialized",
    NVML_ERROR_INVALID_ARGUMENT: "Invalid Argument",
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_NO_PERMISSION: "Insufficient Permissions",
    NVML_ERROR_NOT_FOUND: "Not Found",
    NVML_ERROR_INSUFFICIENT_SIZE: "Insufficient Size",
    NVML_ERROR_DRIVER_NOT_LOADED: "Driver Not Loaded",
    NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
    NVML_ERROR_GPU_IS_LOST: "GPU is lost",
    NVML_ERROR_UNKNOWN: "Unknown Error",
}


class NVMLError(Exception):
    """Like ``pynvml.NVMLError``: built from an NVML return code, kept in ``value``."""

    value: int

    def __new__(cls, value: int) -> NVMLError:
        obj = Exception.__new__(cls)
        obj.value = value
        return obj

    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return _MESSAGES.get(self.value, f"NVML Error with code {self.value}")


#: The fake's time zero as an NVML timestamp (microseconds since the epoch; 2023-11-14).
EPOCH_US = 1_700_000_000_000_000


class c_nvmlValue_t(ctypes.Union):
    """The value union of an NVML sample, laid out as in pynvml."""

    _fields_ = [
        ("dVal", ctypes.c_double),
        ("uiVal", ctypes.c_uint),
        ("ulVal", ctypes.c_ulong),
        ("ullVal", ctypes.c_ulonglong),
        ("sllVal", ctypes.c_longlong),
        ("siVal", ctypes.c_int),
        ("usVal", ctypes.c_ushort),
    ]


class c_nvmlSample_t(ctypes.Structure):
    """One entry of ``nvmlDeviceGetSamples``: a timestamp (microseconds) and a value."""

    _fields_ = [
        ("timeStamp", ctypes.c_ulonglong),
        ("sampleValue", c_nvmlValue_t),
    ]


@dataclass
class ProcessSample:
    """One entry of ``nvmlDeviceGetProcessUtilization`` (field names as in NVML)."""

    pid: int
    timeStamp: int  # microseconds
    smUtil: int
    memUtil: int = 0
    encUtil: int = 0
    decUtil: int = 0


@dataclass
class Utilization:
    gpu: int
    memory: int


@dataclass
class Memory:
    total: int
    free: int
    used: int


@dataclass
class ProcessInfo:
    pid: int
    usedGpuMemory: int
    gpuInstanceId: int = 0xFFFFFFFF
    computeInstanceId: int = 0xFFFFFFFF


@dataclass
class FakeGpu:
    """One GPU as the fake reports it. Change the fields at any time."""

    name: str = "NVIDIA A100-SXM4-80GB"
    uuid: str = "GPU-8f3a1c52-0000-4000-8000-000000000000"
    #: Volta and newer have the total-energy counter; older GPUs raise NOT_SUPPORTED.
    energy_counter: bool = True
    #: Whether nvmlDeviceGetPowerUsage works.
    power_reading: bool = True
    #: Watts now: a number, or a function of the fake's time in seconds.
    power_w: float | Callable[[float], float] = 100.0
    power_limit_w: float | None = 400.0
    utilization_pct: int = 0
    memory_used_b: int = 0
    memory_total_b: int = 80 * 2**30
    #: Per-process samples; None makes nvmlDeviceGetProcessUtilization raise NOT_SUPPORTED.
    process_samples: list[ProcessSample] | None = field(default_factory=list)
    #: PIDs with a compute context on the GPU.
    compute_pids: list[int] = field(default_factory=list)
    #: UUIDs of MIG instances on this GPU (reachable with nvmlDeviceGetHandleByUUID).
    mig_uuids: tuple[str, ...] = ()
    #: Energy counter in millijoules.
    energy_mj: float = 0.0
    #: Function name (or "*" for every per-GPU call) -> NVML code it now raises.
    failures: dict[str, int] = field(default_factory=dict)
    #: Whether the driver keeps a power sample buffer (nvmlDeviceGetSamples).
    power_samples: bool = True
    #: Seconds between the driver's power samples.
    sample_period_s: float = 0.02
    #: How many of the newest samples the buffer holds (about 2.4 s, as nvidia-smi shows).
    sample_buffer_len: int = 120
    #: The buffer: (timestamp in µs, power in mW), oldest first.
    sample_buffer: list[tuple[int, int]] = field(default_factory=list, repr=False)
    #: Index of the next sample the driver takes (its time is index * sample_period_s).
    next_sample: int = field(default=0, repr=False)

    def power_at(self, t_s: float) -> float:
        return float(self.power_w(t_s)) if callable(self.power_w) else float(self.power_w)

    def take_samples(self, t_s: float) -> None:
        """Take the power samples the driver has taken by ``t_s``, into the bounded buffer."""
        if not self.power_samples or self.sample_period_s <= 0:
            return
        last = math.floor(t_s / self.sample_period_s + 1e-9)
        # Samples that would fall out of the buffer at once need not be taken.
        first = max(self.next_sample, last - self.sample_buffer_len + 1)
        for index in range(first, last + 1):
            at_s = index * self.sample_period_s
            self.sample_buffer.append(
                (EPOCH_US + round(at_s * 1e6), max(0, round(self.power_at(at_s) * 1000.0)))
            )
        self.next_sample = max(self.next_sample, last + 1)
        del self.sample_buffer[: -self.sample_buffer_len or None]


@dataclass(frozen=True)
class _Handle:
    index: int
    mig_uuid: str | None = None


class FakeNvml(types.ModuleType):
    """A module object with pynvml's functions, constants and ``NVMLError``."""

    NVMLError = NVMLError

    def __init__(
        self,
        gpus: Sequence[FakeGpu] = (),
        *,
        init_error: int | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__("pynvml")
        for name, value in CONSTANTS.items():
            setattr(self, name, value)
        self.gpus = list(gpus)
        #: nvmlInit raises NVMLError(init_error) when set (LIBRARY_NOT_FOUND: no driver).
        self.init_error = init_error
        self.t_s = 0.0
        self.init_count = 0
        self.shutdown_count = 0
        self.calls: list[str] = []
        #: The fake's time at each entry of ``calls``.
        self.call_times_s: list[float] = []
        #: When set, the fake's time follows this clock (seconds) from its value now.
        self._clock = clock
        self._clock_zero_s = clock() if clock is not None else 0.0
        self._time_lock = threading.RLock()

    # -- test controls -------------------------------------------------------------
    @property
    def initialized(self) -> bool:
        return self.init_count > self.shutdown_count

    def advance(self, dt_s: float, *, steps: int = 200) -> None:
        """Let ``dt_s`` seconds pass; each energy counter grows by the power's integral.

        The drivers' power samples taken meanwhile go into the sample buffers.
        """
        step_s = dt_s / steps
        with self._time_lock:
            for _ in range(steps):
                for gpu in self.gpus:
                    # Midpoint rule: exact for constant and linear power.
                    gpu.energy_mj += gpu.power_at(self.t_s + step_s / 2) * step_s * 1000.0
                self.t_s += step_s
                for gpu in self.gpus:
                    gpu.take_samples(self.t_s)

    def now_us(self) -> int:
        """The fake's time as an NVML timestamp (microseconds since the epoch)."""
        return EPOCH_US + round(self.t_s * 1e6)

    def follow_clock(self) -> None:
        """With a ``clock``, bring the fake's time up to it (in steps of 1 ms at most)."""
        if self._clock is None:
            return
        with self._time_lock:
            dt_s = self._clock() - self._clock_zero_s - self.t_s
            if dt_s > 0:
                self.advance(dt_s, steps=max(1, math.ceil(dt_s / 0.001)))

    def add_process_sample(self, index: int, pid: int, sm_util: int) -> None:
        """Record that ``pid`` used ``sm_util`` % of GPU ``index``'s SMs just now."""
        samples = self.gpus[index].process_samples
        assert samples is not None, "this GPU does not report per-process utilisation"
        samples.append(ProcessSample(pid=pid, timeStamp=self.now_us(), smUtil=sm_util))

    def break_gpu(
        self, index: int, code: int = NVML_ERROR_GPU_IS_LOST, function: str = "*"
    ) -> None:
        """From now on ``function`` (every per-GPU function by default) raises ``code``."""
        self.gpus[index].failures[function] = code

    # -- helpers -------------------------------------------------------------------
    def _note(self, function: str) -> None:
        self.follow_clock()
        self.calls.append(function)
        self.call_times_s.append(self.t_s)

    def _enter(self, function: str) -> None:
        self._note(function)
        if not self.initialized:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)

    def _gpu(self, handle: Any, function: str) -> FakeGpu:
        self._enter(function)
        if not isinstance(handle, _Handle) or handle.index >= len(self.gpus):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        gpu = self.gpus[handle.index]
        code = gpu.failures.get(function, gpu.failures.get("*"))
        if code is not None:
            raise NVMLError(code)
        return gpu

    # -- the pynvml API ----------------------------------------------------------------
    def nvmlInit(self) -> None:
        self._note("nvmlInit")
        if self.init_error is not None:
            raise NVMLError(self.init_error)
        self.init_count += 1

    def nvmlShutdown(self) -> None:
        self._enter("nvmlShutdown")
        self.shutdown_count += 1

    def nvmlDeviceGetCount(self) -> int:
        self._enter("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> _Handle:
        self._enter("nvmlDeviceGetHandleByIndex")
        if not 0 <= index < len(self.gpus):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return _Handle(index)

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> _Handle:
        self._enter("nvmlDeviceGetHandleByUUID")
        for index, gpu in enumerate(self.gpus):
            if gpu.uuid == uuid:
                return _Handle(index)
            if uuid in gpu.mig_uuids:
                return _Handle(index, uuid)
        raise NVMLError(NVML_ERROR_NOT_FOUND)

    def nvmlDeviceGetIndex(self, handle: _Handle) -> int:
        self._gpu(handle, "nvmlDeviceGetIndex")
        if handle.mig_uuid is not None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return handle.index

    def nvmlDeviceIsMigDeviceHandle(self, device: _Handle) -> bool:
        self._gpu(device, "nvmlDeviceIsMigDeviceHandle")
        return device.mig_uuid is not None

    def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(self, migDevice: _Handle) -> _Handle:
        self._gpu(migDevice, "nvmlDeviceGetDeviceHandleFromMigDeviceHandle")
        if migDevice.mig_uuid is None:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return _Handle(migDevice.index)

    def nvmlDeviceGetName(self, handle: _Handle) -> str:
        gpu = self._gpu(handle, "nvmlDeviceGetName")
        return f"{gpu.name} MIG 1g.10gb" if handle.mig_uuid is not None else gpu.name

    def nvmlDeviceGetUUID(self, handle: _Handle) -> str:
        gpu = self._gpu(handle, "nvmlDeviceGetUUID")
        return handle.mig_uuid if handle.mig_uuid is not None else gpu.uuid

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: _Handle) -> int:
        gpu = self._gpu(handle, "nvmlDeviceGetTotalEnergyConsumption")
        if not gpu.energy_counter or handle.mig_uuid is not None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return int(gpu.energy_mj)

    def nvmlDeviceGetPowerUsage(self, handle: _Handle) -> int:
        gpu = self._gpu(handle, "nvmlDeviceGetPowerUsage")
        if not gpu.power_reading or handle.mig_uuid is not None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return round(gpu.power_at(self.t_s) * 1000.0)

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: _Handle) -> int:
        gpu = self._gpu(handle, "nvmlDeviceGetEnforcedPowerLimit")
        if gpu.power_limit_w is None or handle.mig_uuid is not None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return round(gpu.power_limit_w * 1000.0)

    def nvmlDeviceGetPowerManagementLimit(self, handle: _Handle) -> int:
        return self.nvmlDeviceGetEnforcedPowerLimit(handle)

    def nvmlDeviceGetUtilizationRates(self, handle: _Handle) -> Utilization:
        gpu = self._gpu(handle, "nvmlDeviceGetUtilizationRates")
        if handle.mig_uuid is not None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return Utilization(gpu=gpu.utilization_pct, memory=gpu.utilization_pct // 2)

    def nvmlDeviceGetMemoryInfo(self, handle: _Handle, version: int | None = None) -> Memory:
        gpu = self._gpu(handle, "nvmlDeviceGetMemoryInfo")
        used = gpu.memory_used_b
        return Memory(total=gpu.memory_total_b, free=gpu.memory_total_b - used, used=used)

    def nvmlDeviceGetProcessUtilization(
        self, handle: _Handle, timeStamp: int
    ) -> list[ProcessSample]:
        gpu = self._gpu(handle, "nvmlDeviceGetProcessUtilization")
        if gpu.process_samples is None or handle.mig_uuid is not None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        newer = [s for s in gpu.process_samples if s.timeStamp > timeStamp]
        if not newer:
            raise NVMLError(NVML_ERROR_NOT_FOUND)
        return newer

    def nvmlDeviceGetSamples(
        self, device: _Handle, sampling_type: int, timeStamp: int
    ) -> tuple[int, list[c_nvmlSample_t]]:
        gpu = self._gpu(device, "nvmlDeviceGetSamples")
        if (
            sampling_type != NVML_TOTAL_POWER_SAMPLES
            or not gpu.power_samples
            or device.mig_uuid is not None
        ):
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        with self._time_lock:
            gpu.take_samples(self.t_s)
            newer = [(t_us, mw) for t_us, mw in gpu.sample_buffer if t_us > timeStamp]
        if not newer:
            raise NVMLError(NVML_ERROR_NOT_FOUND)
        samples = [c_nvmlSample_t(t_us, c_nvmlValue_t(uiVal=mw)) for t_us, mw in newer]
        return NVML_VALUE_TYPE_UNSIGNED_INT, samples

    def nvmlDeviceGetComputeRunningProcesses(self, handle: _Handle) -> list[ProcessInfo]:
        gpu = self._gpu(handle, "nvmlDeviceGetComputeRunningProcesses")
        return [ProcessInfo(pid=pid, usedGpuMemory=2**30) for pid in gpu.compute_pids]

    def nvmlErrorString(self, result: int) -> str:
        return _MESSAGES.get(result, "Unknown Error")


def api_functions(module: Any) -> list[str]:
    """The pynvml function names (``nvml*``) ``module`` offers, class attributes included."""
    names = set(dir(module)) | set(dir(type(module)))
    return sorted(n for n in names if n.startswith("nvml") and callable(getattr(module, n)))
