"""The JSON the sidebar's REST routes return, built from the store's records.

Numbers keep the store's units (joules, watts, seconds, grams, gCO2e/kWh); the
sidebar converts to Wh and kWh for display. A number that is not finite (NaN,
infinity) becomes ``null``, since JSON has no such values.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from carbon_jupyter.model import Intensity, Run, Sample, method_quality
from carbon_jupyter.serverext.machine import MachineReading

if TYPE_CHECKING:
    from carbon_jupyter.jobs.group import Job


def finite(value: float | None) -> float | None:
    """``value``, or None when it is missing or not a finite number."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def intensity_json(intensity: Intensity) -> dict[str, Any]:
    return {
        "intensity_g_per_kwh": finite(intensity.intensity_g_per_kwh),
        "source": intensity.source,
        "year": intensity.year,
        "key": intensity.key,
        "chosen_by": intensity.chosen_by,
        "pue": finite(intensity.pue),
        "pue_source": intensity.pue_source,
    }


def run_json(run: Run) -> dict[str, Any]:
    """A run with its devices; samples are served separately (see ``sample_json``)."""
    return {
        "id": run.id,
        "label": run.label,
        "phase": run.phase,
        "items": run.items,
        "status": run.status,
        "started_at": run.started_at,
        "ended_at": run.ended_at,
        "duration_s": finite(run.duration_s),
        "attribution": run.attribution,
        "energy_j": finite(run.energy_j),
        "cpu_energy_j": finite(run.cpu_energy_j),
        "gpu_energy_j": finite(run.gpu_energy_j),
        "ram_energy_j": finite(run.ram_energy_j),
        "co2_g": finite(run.co2_g),
        "estimated": run.estimated,
        "intensity": intensity_json(run.intensity),
        "notebook": run.notebook,
        "cell": run.cell,
        "kernel": run.kernel,
        "user": run.user,
        "host": run.host,
        "error": run.error,
        "warnings": list(run.warnings),
        "tags": dict(run.tags),
        "devices": [
            {
                "device_id": d.device.device_id,
                "kind": d.device.kind,
                "name": d.device.name,
                "method": d.method,
                "quality": method_quality(d.method),
                "energy_j": finite(d.energy_j),
                "process_energy_j": finite(d.process_energy_j),
                "mean_power_w": finite(d.mean_power_w),
                "error": d.error,
            }
            for d in run.devices
        ],
    }


def sample_json(sample: Sample) -> dict[str, Any]:
    row = asdict(sample)
    return {k: finite(v) if isinstance(v, float) else v for k, v in row.items()}


def machine_json(reading: MachineReading) -> dict[str, Any]:
    return {
        "running": reading.running,
        "interval_s": reading.interval_s,
        "power_w": finite(reading.power_w),
        "estimated": reading.estimated,
        "devices": [
            {
                "device_id": d.device_id,
                "kind": d.kind,
                "name": d.name,
                "method": d.method,
                "quality": method_quality(d.method),
                "power_w": finite(d.power_w),
            }
            for d in reading.devices
        ],
    }


def job_json(job: Job) -> dict[str, Any]:
    """A distributed job as the sidebar lists a run: its totals, its hosts' devices once each.

    ``id`` is the job's id and ``tags`` carry ``job``, ``hosts`` and ``parts``, so the
    sidebar shows a job as one run with its hosts.
    """
    return {
        "id": job.job_id,
        "label": f"job {job.job_id}" + (f": {job.label}" if job.label else ""),
        "phase": job.phase,
        "items": None,
        "status": job.status,
        "started_at": job.started_at,
        "ended_at": job.ended_at,
        "duration_s": finite(job.duration_s),
        "attribution": "device",
        "energy_j": finite(job.energy_j),
        "cpu_energy_j": finite(job.cpu_energy_j),
        "gpu_energy_j": finite(job.gpu_energy_j),
        "ram_energy_j": finite(job.ram_energy_j),
        "co2_g": finite(job.co2_g),
        "estimated": any(
            method_quality(str(d["method"])) == "estimated"
            for h in job.hosts.values()
            for d in h.devices.values()
        ),
        "intensity": None,
        "notebook": None,
        "cell": None,
        "kernel": None,
        "user": None,
        "host": ", ".join(sorted(job.hosts)),
        "error": next((p.error for p in job.parts if p.error), None),
        "warnings": [],
        "tags": {
            "job": job.job_id,
            "hosts": str(len(job.hosts)),
            "parts": str(len(job.parts)),
        },
        "devices": [
            {
                "device_id": f"{host}/{device_id}",
                "kind": d["kind"],
                "name": f"{d['kind']} on {host}",
                "method": d["method"],
                "quality": method_quality(str(d["method"])),
                "energy_j": finite(d["energy_j"]),
                "process_energy_j": None,
                "mean_power_w": None,
                "error": None,
            }
            for host, totals in sorted(job.hosts.items())
            for device_id, d in sorted(totals.devices.items())
        ],
    }
