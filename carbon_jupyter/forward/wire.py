"""What a run looks like on the way to a team server: the JSON bodies of ``/api/v1``.

Pure functions of :class:`~carbon_jupyter.model.Run` and
:class:`~carbon_jupyter.model.Sample`; the forwarder, ``carbon-jupyter push`` and
the tests build their requests with them, and the server validates the same
shapes (:mod:`carbon_jupyter.server.api.models`).

The three ingest requests, each safe to repeat:

``PUT /api/v1/runs/{run_id}`` with :func:`run_body`
    when a run starts (``status`` ``running``, energies zero, every device
    listed) and again when it ends (its final figures). Repeating it stores
    nothing twice; a run already ended is never put back to ``running``.
``POST /api/v1/runs/{run_id}/samples`` with :func:`samples_body`
    batches of live samples. ``seq`` is the sample's 1-based position in the
    run's sample stream, the same number the local store gives it
    (``samples.seq``), so a batch sent twice, or sent live and again by
    ``carbon-jupyter push``, is stored once.

Times are UTC ISO-8601 text; every figure carries its unit in its name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from carbon_jupyter.model import DeviceEnergy, Run, Sample

#: The version of these bodies; the server answers 400 to a version it does not know.
WIRE_VERSION = 1


def device_body(device: DeviceEnergy) -> dict[str, Any]:
    """One device of a run: what it is, how its figure was obtained, and the figure."""
    info = device.device
    return {
        "device_id": info.device_id,
        "kind": info.kind,
        "name": info.name,
        "method": info.method,
        "uuid": info.uuid,
        "power_limit_w": info.power_limit_w,
        "detail": info.detail,
        "energy_j": device.energy_j,
        "process_energy_j": device.process_energy_j,
        "mean_power_w": device.mean_power_w,
        "error": device.error,
    }


def run_body(
    run: Run,
    *,
    hardware: dict[str, Any] | None = None,
    versions: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The body of ``PUT /api/v1/runs/{run.id}``: the run as it stands now."""
    i = run.intensity
    return {
        "wire_version": WIRE_VERSION,
        "id": run.id,
        "label": run.label,
        "phase": run.phase,
        "items": run.items,
        "status": run.status,
        "started_at": run.started_at,
        "ended_at": run.ended_at,
        "duration_s": run.duration_s,
        "attribution": run.attribution,
        "energy_j": run.energy_j,
        "cpu_energy_j": run.cpu_energy_j,
        "gpu_energy_j": run.gpu_energy_j,
        "ram_energy_j": run.ram_energy_j,
        "co2_g": run.co2_g,
        "intensity": {
            "intensity_g_per_kwh": i.intensity_g_per_kwh,
            "source": i.source,
            "year": i.year,
            "pue": i.pue,
            "pue_source": i.pue_source,
            "chosen_by": i.chosen_by,
            "key": i.key,
        },
        "devices": [device_body(d) for d in run.devices],
        "tags": {str(k): str(v) for k, v in run.tags.items()},
        "notebook": run.notebook,
        "cell": run.cell,
        "kernel": run.kernel,
        "client_user": run.user,
        "host": run.host,
        "error": run.error,
        "warnings": list(run.warnings),
        "metrics": dict(run.metrics),
        "hardware": hardware or {},
        "versions": versions or {},
    }


def sample_body(seq: int, sample: Sample) -> dict[str, Any]:
    """One live sample with its position ``seq`` (from 1) in the run's sample stream."""
    return {
        "seq": seq,
        "t_s": sample.t_s,
        "device_id": sample.device_id,
        "power_w": sample.power_w,
        "energy_j": sample.energy_j,
        "utilization_pct": sample.utilization_pct,
        "memory_used_b": sample.memory_used_b,
        "process_energy_j": sample.process_energy_j,
    }


def samples_body(first_seq: int, samples: Sequence[Sample]) -> dict[str, Any]:
    """The body of ``POST /api/v1/runs/{run_id}/samples``: ``samples`` numbered from
    ``first_seq``."""
    return {"samples": [sample_body(first_seq + n, s) for n, s in enumerate(samples)]}


#: The most samples one ``POST .../samples`` carries; the server accepts at least this many.
MAX_SAMPLES_PER_REQUEST = 500
