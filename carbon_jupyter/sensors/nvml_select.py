"""Which NVIDIA GPUs a probe measures: ``CUDA_VISIBLE_DEVICES``, ``--gpus``, UUIDs and MIG.

The rules are those of :mod:`carbon_jupyter.sensors.nvml` ("Which GPUs are
measured"): entries are indices or (prefixes of) UUIDs, the list ends at its
first entry that names no GPU as CUDA's does, and a MIG instance is measured
through its parent GPU. Nothing here reads power; it only names GPUs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from carbon_jupyter.errors import ConfigError


def nvml_text(value: object) -> str:
    """NVML strings come back as ``str`` in recent bindings and ``bytes`` in old ones."""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value)


@dataclass
class Gpu:
    index: int
    handle: Any
    uuid: str
    #: The MIG instance this GPU was asked for through, if any: (uuid, name, handle).
    mig: tuple[str, str, Any] | None = None


class Selection:
    """What the user asked for: every GPU, or a list of index / UUID entries."""

    def __init__(self, entries: list[str] | None, origin: str, raw: str) -> None:
        self.entries = entries  # None: every GPU
        self.origin = origin  # "argument" or "CUDA_VISIBLE_DEVICES"
        self.raw = raw


def parse_cuda_visible(value: str) -> list[str]:
    """Entries of ``CUDA_VISIBLE_DEVICES`` up to the first that hides the rest, as CUDA does."""
    entries: list[str] = []
    for part in value.split(","):
        entry = part.strip()
        if not entry or entry.startswith("-") or entry.lower() == "nodevfiles":
            break
        entries.append(entry)
    return entries


def selection_of(gpus: str | Sequence[int | str] | None) -> Selection:
    if gpus is None:
        env = os.environ.get("CUDA_VISIBLE_DEVICES")
        if env is None:
            return Selection(None, "argument", "all")
        return Selection(parse_cuda_visible(env), "CUDA_VISIBLE_DEVICES", env)
    if isinstance(gpus, str):
        if gpus.strip().lower() == "all":
            return Selection(None, "argument", gpus)
        parts = [p.strip() for p in gpus.split(",")]
        return Selection([p for p in parts if p], "argument", gpus)
    entries: list[str] = []
    for item in gpus:
        if isinstance(item, bool) or not isinstance(item, (int, str)):
            raise ConfigError(
                f"gpus entries must be GPU indices or UUIDs, got {item!r}; "
                "pass e.g. gpus=[0, 1] or gpus='all'"
            )
        entries.append(str(item).strip())
    return Selection(entries, "argument", ",".join(entries))


def refuse_named(selection: Selection, why: str) -> None:
    """Raise ConfigError when the user named GPUs (``--gpus 0``) and ``why`` none can be read.

    A selection from ``CUDA_VISIBLE_DEVICES``, of every GPU, or of none passes: on a
    machine without GPUs that is not a mistake.
    """
    if selection.origin == "argument" and selection.entries:
        raise ConfigError(
            f"gpus={selection.raw!r}: {why}; leave --gpus out to measure without GPUs"
        ) from None


def _resolve(nvml: ModuleType, entry: str, devices: list[Gpu]) -> tuple[Gpu | None, str | None]:
    """The GPU an index or UUID (prefix) names, or None and why not."""
    valid = ", ".join(str(d.index) for d in devices) or "none"
    if entry.lstrip("-").isdigit():
        index = int(entry)
        for device in devices:
            if device.index == index:
                return device, None
        return None, f"there is no GPU {index} (GPUs here: {valid}; see `nvidia-smi -L`)"
    wanted = entry.lower()
    exact = [d for d in devices if d.uuid.lower() == wanted]
    if exact:
        return exact[0], None
    prefixes = (wanted,) if wanted.startswith(("gpu-", "mig-")) else (wanted, "gpu-" + wanted)
    matches = [d for d in devices if d.uuid.lower().startswith(prefixes)]
    if len(matches) == 1:
        return matches[0], None
    if len(matches) > 1:
        names = ", ".join(d.uuid for d in matches)
        return None, f"{entry!r} is the start of several GPU UUIDs ({names}); give more of it"
    if wanted.startswith("mig-"):
        return _resolve_mig(nvml, entry, devices)
    return None, f"no GPU has a UUID starting with {entry!r} (see `nvidia-smi -L`)"


def _resolve_mig(nvml: ModuleType, entry: str, devices: list[Gpu]) -> tuple[Gpu | None, str | None]:
    try:
        mig_handle = nvml.nvmlDeviceGetHandleByUUID(entry)
        parent = nvml.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(mig_handle)
        parent_uuid = nvml_text(nvml.nvmlDeviceGetUUID(parent))
        mig_name = nvml_text(nvml.nvmlDeviceGetName(mig_handle))
    except nvml.NVMLError as exc:
        return None, f"no MIG instance has the UUID {entry!r} ({exc}; see `nvidia-smi -L`)"
    for device in devices:
        if device.uuid == parent_uuid:
            return Gpu(
                device.index, device.handle, device.uuid, (entry, mig_name, mig_handle)
            ), None
    return None, f"the parent GPU of MIG instance {entry!r} was not found"


def choose(nvml: ModuleType, selection: Selection) -> tuple[list[Gpu], list[str]]:
    """The GPUs to measure, and sentences about entries that named none (CUDA_VISIBLE_DEVICES)."""
    count = int(nvml.nvmlDeviceGetCount())
    devices: list[Gpu] = []
    for index in range(count):
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        devices.append(Gpu(index, handle, nvml_text(nvml.nvmlDeviceGetUUID(handle))))
    if selection.entries is None:
        return devices, []
    chosen: list[Gpu] = []
    problems: list[str] = []
    for entry in selection.entries:
        device, why = _resolve(nvml, entry, devices)
        if device is None:
            if selection.origin == "argument":
                raise ConfigError(
                    f"gpus={selection.raw!r}: {why}. Pass indices or UUIDs from that list, "
                    "or 'all'."
                )
            problems.append(
                f"CUDA_VISIBLE_DEVICES={selection.raw!r}: {why}. CUDA ignores that entry and "
                "every one after it, and so does carbon-jupyter; fix the variable or pass "
                "--gpus all."
            )
            break
        if all(c.index != device.index for c in chosen):
            chosen.append(device)
    return chosen, problems
