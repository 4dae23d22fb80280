"""Devices this process has seen stop answering, so later runs that lack them say so.

A device that fails mid-run is dropped from that run (and recorded in its
warnings). The same sensor is reused by the next run in the process, which
may then lack the device without anything failing loudly; this registry lets
every later run name the device it misses until the device answers again.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from carbon_jupyter.model import DeviceInfo

_lost: dict[str, tuple[DeviceInfo, str]] = {}
_lock = threading.Lock()


def note_lost(info: DeviceInfo, error: str) -> None:
    """Remember that ``info`` stopped answering with ``error``."""
    with _lock:
        _lost[info.device_id] = (info, error)


def note_alive(device_id: str) -> None:
    """The device answered again: later runs no longer mention it."""
    with _lock:
        _lost.pop(device_id, None)


def missing(present: Iterable[str]) -> list[str]:
    """Warnings for devices lost earlier in this process that are not in ``present``."""
    here = set(present)
    with _lock:
        gone = [
            (info, error) for device_id, (info, error) in _lost.items() if device_id not in here
        ]
    return [
        f"{info.device_id} ({info.name}) stopped answering in an earlier run ({error}) and is "
        "not measured in this one, so its figures are low by that device's share; "
        "`carbon-jupyter doctor` shows what it reads now"
        for info, error in gone
    ]


def forget() -> None:
    """Forget every lost device (tests, or after the hardware was probed again)."""
    with _lock:
        _lost.clear()
