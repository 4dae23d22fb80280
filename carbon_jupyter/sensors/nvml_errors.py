"""NVML's error codes, and what each means for a person measuring a GPU.

:func:`reason` turns an ``NVMLError`` into a sentence naming what happened and
the fix; :func:`unsupported_codes` tells "this GPU does not offer that figure"
apart from "something broke". The codes are read from the NVML module where it
defines them, with the values of ``nvml.h`` as a fallback.
"""

from __future__ import annotations

from types import ModuleType

from carbon_jupyter.errors import SensorError

# NVML return codes (nvml.h); read from the module where it defines them.
_CODES = {
    "NVML_SUCCESS": 0,
    "NVML_ERROR_UNINITIALIZED": 1,
    "NVML_ERROR_INVALID_ARGUMENT": 2,
    "NVML_ERROR_NOT_SUPPORTED": 3,
    "NVML_ERROR_NO_PERMISSION": 4,
    "NVML_ERROR_NOT_FOUND": 6,
    "NVML_ERROR_DRIVER_NOT_LOADED": 9,
    "NVML_ERROR_TIMEOUT": 10,
    "NVML_ERROR_LIBRARY_NOT_FOUND": 12,
    "NVML_ERROR_FUNCTION_NOT_FOUND": 13,
    "NVML_ERROR_GPU_IS_LOST": 15,
    "NVML_ERROR_RESET_REQUIRED": 16,
    "NVML_ERROR_LIB_RM_VERSION_MISMATCH": 18,
    "NVML_ERROR_NO_DATA": 21,
}

NO_GPU_PROBLEM = (
    "no NVIDIA driver / NVML library found: GPU energy is not measured. "
    "On a machine with an NVIDIA GPU, install the NVIDIA driver (it provides libnvidia-ml.so) "
    "and check that `nvidia-smi` works."
)


def code(nvml: ModuleType, name: str) -> int:
    return int(getattr(nvml, name, _CODES[name]))


def unsupported_codes(nvml: ModuleType) -> frozenset[int]:
    """Codes that mean "this GPU does not offer that figure", not "something broke"."""
    names = (
        "NVML_ERROR_NOT_SUPPORTED",
        "NVML_ERROR_FUNCTION_NOT_FOUND",
        "NVML_ERROR_NO_PERMISSION",
        "NVML_ERROR_NO_DATA",
    )
    return frozenset(code(nvml, n) for n in names)


def reason(nvml: ModuleType, exc: BaseException) -> str:
    """What an NVML error means for the user, and what to do about it."""
    value = getattr(exc, "value", None)
    if value == code(nvml, "NVML_ERROR_GPU_IS_LOST"):
        return (
            "the GPU stopped answering (NVML: GPU is lost); check `nvidia-smi` and the kernel "
            "log, the GPU usually needs a reset or a reboot"
        )
    if value == code(nvml, "NVML_ERROR_RESET_REQUIRED"):
        return "the GPU needs a reset (NVML: reset required); reset it with `nvidia-smi -r`"
    if value == code(nvml, "NVML_ERROR_NO_PERMISSION"):
        return (
            "NVML refused access (insufficient permissions); run as a user allowed to query "
            "the GPU (membership of the video group, or the container's --gpus option)"
        )
    if value == code(nvml, "NVML_ERROR_UNINITIALIZED"):
        return (
            "NVML was shut down while it was in use (something in this process called "
            "nvmlShutdown); restart the kernel to measure the GPU again"
        )
    if value in (
        code(nvml, "NVML_ERROR_DRIVER_NOT_LOADED"),
        code(nvml, "NVML_ERROR_LIB_RM_VERSION_MISMATCH"),
    ):
        return (
            f"the NVIDIA driver is not loaded or was changed underneath ({exc}); "
            "reboot after a driver update, or load the driver"
        )
    if value == code(nvml, "NVML_ERROR_TIMEOUT"):
        return "NVML timed out (the GPU or its driver is overloaded or hung); check `nvidia-smi`"
    return f"NVML error {value}: {exc}"


def nvml_error(nvml: ModuleType, exc: BaseException, *, doing: str, device: str) -> SensorError:
    """Translate an ``NVMLError`` into a :class:`SensorError` a person can act on."""
    return SensorError(f"{doing} of {device} failed: {reason(nvml, exc)}")
