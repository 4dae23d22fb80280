"""How a :class:`~carbon_jupyter.model.Run` maps onto rows of the store, and back.

Times are stored as UTC ISO-8601 text ending in ``+00:00`` (so that text order
is time order); a timestamp given with another offset or a ``Z`` is converted.
``tags``, ``hardware`` and ``versions`` are JSON text. Well-known tags are
also copied into their own column (``execution_count``) so they can be
filtered and indexed.

The hardware summary (CPU model, cores, memory, GPU names) and the package
versions (Python, carbon-jupyter and, when the user's code has imported them,
torch, tensorflow, jax, ...) are filled in by the store when a run begins and
again when it finishes. Nothing is imported to find a version: only modules
already in ``sys.modules`` are looked at.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any, cast

from carbon_jupyter._version import __version__
from carbon_jupyter.measure.integrate import co2_g
from carbon_jupyter.model import DeviceEnergy, DeviceInfo, Intensity, Run, Sample

#: The run columns a Run is built from, in the order ``run_from_row`` expects.
RUN_COLUMNS = (
    "id", "label", "phase", "items", "status", "started_at", "ended_at", "duration_s",
    "attribution", "energy_j", "cpu_energy_j", "gpu_energy_j", "ram_energy_j", "co2_g",
    "intensity_g_per_kwh", "intensity_source", "intensity_year", "intensity_key",
    "intensity_chosen_by", "pue", "pue_source", "notebook", "cell", "kernel", "user", "host",
    "error", "tags", "warnings", "metrics",
)  # fmt: skip
#: Further run columns: context filled by the store, and the writer for lost-run detection.
EXTRA_COLUMNS = (
    "execution_count", "hardware", "versions", "origin",
    "pid", "pid_host", "pid_started", "updated_at",
)  # fmt: skip
ALL_RUN_COLUMNS = RUN_COLUMNS + EXTRA_COLUMNS
#: Run columns an export carries (the writer's pid is local knowledge and stays behind).
EXPORT_COLUMNS = (*RUN_COLUMNS, "execution_count", "hardware", "versions", "origin", "updated_at")
JSON_COLUMNS = frozenset({"tags", "hardware", "versions", "warnings", "metrics"})

DEVICE_COLUMNS = (
    "run_id", "device_id", "position", "kind", "name", "method", "uuid", "power_limit_w",
    "detail", "energy_j", "process_energy_j", "mean_power_w", "error",
)  # fmt: skip
#: Sample columns in the order of :class:`~carbon_jupyter.model.Sample`'s fields.
SAMPLE_FIELDS = (
    "t_s", "device_id", "power_w", "energy_j", "utilization_pct", "memory_used_b",
    "process_energy_j",
)  # fmt: skip
SAMPLE_COLUMNS = ("run_id", "seq", *SAMPLE_FIELDS)


def upsert_sql(table: str, columns: Sequence[str], key: Sequence[str]) -> str:
    """``INSERT ... ON CONFLICT (key) DO UPDATE`` for named parameters ``:column``."""
    names = ", ".join(columns)
    marks = ", ".join(f":{c}" for c in columns)
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key)
    return (
        f"INSERT INTO {table} ({names}) VALUES ({marks}) "
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
    )


UPSERT_DEVICE = upsert_sql("devices", DEVICE_COLUMNS, ("run_id", "device_id"))

#: Modules whose version is recorded when the user's code has imported them.
WATCHED_MODULES = (
    "torch", "tensorflow", "jax", "transformers", "sklearn", "xgboost", "lightgbm",
    "numpy", "pandas", "codecarbon",
)  # fmt: skip


def utc_iso(moment: datetime) -> str:
    """``moment`` as UTC ISO-8601 text; naive datetimes are taken as local time."""
    if moment.tzinfo is None:
        moment = moment.astimezone()
    moment = moment.astimezone(timezone.utc)
    spec = "milliseconds" if moment.microsecond % 1000 == 0 else "microseconds"
    return moment.isoformat(timespec=spec)


def parse_time(text: str) -> datetime:
    """Parse ISO-8601 text (``Z`` accepted); naive times are taken as local time."""
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return moment.astimezone() if moment.tzinfo is None else moment


def canonical_time(text: str | None) -> str | None:
    """Stored form of a timestamp: kept as given when already UTC ``+00:00``, else converted."""
    if text is None:
        return None
    try:
        moment = parse_time(text)
    except ValueError:
        return text
    if text.endswith("+00:00"):
        return text
    return utc_iso(moment)


def add_seconds(text: str, seconds: float) -> str:
    return utc_iso(parse_time(text) + timedelta(seconds=seconds))


def now_iso() -> str:
    return utc_iso(datetime.now(timezone.utc))


@lru_cache(maxsize=1)
def machine_summary() -> dict[str, Any]:
    """CPU model, cores, memory and OS of this machine (read once per process)."""
    import psutil

    cpu_model = platform.processor() or ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu_model": cpu_model or platform.machine(),
        "cpu_cores": psutil.cpu_count(logical=False),
        "cpu_threads": os.cpu_count(),
        "ram_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "os": platform.platform(),
    }


def hardware_summary(run: Run) -> dict[str, Any]:
    gpus = [d.device.name for d in run.devices if d.device.kind == "gpu"]
    return {**machine_summary(), "gpu_count": len(gpus), "gpus": gpus}


def versions_summary() -> dict[str, str]:
    found = {"python": platform.python_version(), "carbon_jupyter": __version__}
    for name in WATCHED_MODULES:
        module = sys.modules.get(name)
        version = getattr(module, "__version__", None) if module is not None else None
        if isinstance(version, str):
            found[name] = version
    return found


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True)


def _int_or_none(value: object) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


def run_row(run: Run, *, origin: str = "carbon-jupyter") -> dict[str, Any]:
    """The ``runs`` row of ``run`` (writer and context columns left to the caller)."""
    i = run.intensity
    return {
        "id": run.id,
        "label": run.label,
        "phase": run.phase,
        "items": run.items,
        "status": run.status,
        "started_at": canonical_time(run.started_at),
        "ended_at": canonical_time(run.ended_at),
        "duration_s": run.duration_s,
        "attribution": run.attribution,
        "energy_j": run.energy_j,
        "cpu_energy_j": run.cpu_energy_j,
        "gpu_energy_j": run.gpu_energy_j,
        "ram_energy_j": run.ram_energy_j,
        "co2_g": run.co2_g,
        "intensity_g_per_kwh": i.intensity_g_per_kwh,
        "intensity_source": i.source,
        "intensity_year": i.year,
        "intensity_key": i.key,
        "intensity_chosen_by": i.chosen_by,
        "pue": i.pue,
        "pue_source": i.pue_source,
        "notebook": run.notebook,
        "cell": run.cell,
        "kernel": run.kernel,
        "user": run.user,
        "host": run.host,
        "error": run.error,
        "tags": _json(dict(run.tags)),
        "warnings": _json(list(run.warnings)),
        "metrics": _json(dict(run.metrics)) if run.metrics else None,
        "execution_count": _int_or_none(run.tags.get("execution_count")),
        "origin": origin,
        "updated_at": now_iso(),
    }


def device_rows(run: Run) -> list[dict[str, Any]]:
    return [
        {
            "run_id": run.id,
            "device_id": d.device.device_id,
            "position": position,
            "kind": d.device.kind,
            "name": d.device.name,
            "method": d.device.method,
            "uuid": d.device.uuid,
            "power_limit_w": d.device.power_limit_w,
            "detail": d.device.detail,
            "energy_j": d.energy_j,
            "process_energy_j": d.process_energy_j,
            "mean_power_w": d.mean_power_w,
            "error": d.error,
        }
        for position, d in enumerate(run.devices)
    ]


def sample_tuple(run_id: str, seq: int, s: Sample) -> tuple[Any, ...]:
    return (
        run_id, seq, s.t_s, s.device_id, s.power_w, s.energy_j, s.utilization_pct,
        s.memory_used_b, s.process_energy_j,
    )  # fmt: skip


def device_from_row(row: Sequence[Any]) -> DeviceEnergy:
    """A DeviceEnergy from ``DEVICE_COLUMNS[1:]`` (``run_id`` left out)."""
    (device_id, _position, kind, name, method, uuid, limit_w, detail, energy_j, process_j,
     mean_w, error) = row  # fmt: skip
    info = _device_info(device_id, kind, name, method, uuid, limit_w, detail)
    return DeviceEnergy(info, energy_j, process_energy_j=process_j, mean_power_w=mean_w,
                        error=error)  # fmt: skip


@lru_cache(maxsize=1024, typed=True)
def _device_info(
    device_id: str,
    kind: Any,
    name: str | None,
    method: Any,
    uuid: str | None,
    limit_w: float | None,
    detail: str | None,
) -> DeviceInfo:
    """One shared record per distinct device: the runs of a machine share a few."""
    return DeviceInfo(device_id=device_id, kind=kind, name=name or device_id, method=method,
                      uuid=uuid, power_limit_w=limit_w, detail=detail or "")  # fmt: skip


@lru_cache(maxsize=256, typed=True)
def _intensity(
    intensity_g_per_kwh: float | None,
    source: str | None,
    year: int | None,
    pue: float | None,
    pue_source: str | None,
    chosen_by: str | None,
    key: str | None,
) -> Intensity:
    """One shared record per distinct carbon factor: most runs share a handful."""
    return Intensity(
        intensity_g_per_kwh=intensity_g_per_kwh or 0.0,
        source=source or "unknown",
        year=year,
        pue=pue if pue is not None else 1.0,
        pue_source=pue_source or "unknown",
        chosen_by=chosen_by or "default",
        key=key or "unknown",
    )


def _json_list(text: str | None) -> tuple[str, ...]:
    return tuple(str(w) for w in json.loads(text)) if text and text != "[]" else ()


def _json_metrics(text: str | None) -> dict[str, float]:
    if not text or text == "{}":
        return {}
    return {str(k): float(v) for k, v in json.loads(text).items()}


def run_from_row(
    row: Sequence[Any], devices: Sequence[DeviceEnergy], samples: Sequence[Sample] = ()
) -> Run:
    """A Run from a row of ``RUN_COLUMNS`` and its devices."""
    (run_id, label, phase, items, status, started_at, ended_at, duration_s, attribution,
     energy_j, cpu_energy_j, gpu_energy_j, ram_energy_j, co2, intensity_g_per_kwh,
     intensity_source, intensity_year, intensity_key, intensity_chosen_by, pue, pue_source,
     notebook, cell, kernel, user, host, error, tags, warnings, metrics) = row  # fmt: skip
    intensity = _intensity(intensity_g_per_kwh, intensity_source, intensity_year, pue,
                           pue_source, intensity_chosen_by, intensity_key)  # fmt: skip
    return Run(
        id=run_id,
        label=label,
        phase=phase,
        items=items,
        status=status,
        started_at=started_at,
        ended_at=ended_at,
        duration_s=duration_s,
        attribution=attribution,
        devices=tuple(devices),
        intensity=intensity,
        energy_j=energy_j,
        cpu_energy_j=cpu_energy_j,
        gpu_energy_j=gpu_energy_j,
        ram_energy_j=ram_energy_j,
        co2_g=co2,
        tags=cast(dict[str, str], json.loads(tags) if tags and tags != "{}" else {}),
        notebook=notebook,
        cell=cell,
        kernel=kernel,
        user=user,
        host=host,
        error=error,
        warnings=_json_list(warnings),
        metrics=_json_metrics(metrics),
        samples=tuple(samples),
    )


def totals_from_devices(
    devices: Sequence[tuple[str, float, float | None]],
    attribution: str,
    intensity_g_per_kwh: float,
    pue: float,
) -> dict[str, float]:
    """Run totals from ``(kind, energy_j, process_energy_j)`` rows, as the tracker sums them."""
    per_kind = {"cpu": 0.0, "gpu": 0.0, "ram": 0.0}
    for kind, energy_j, process_j in devices:
        use = process_j if attribution == "process" and process_j is not None else energy_j
        per_kind[kind] = per_kind.get(kind, 0.0) + (use or 0.0)
    energy_j = sum(per_kind.values())
    return {
        "energy_j": energy_j,
        "cpu_energy_j": per_kind["cpu"],
        "gpu_energy_j": per_kind["gpu"],
        "ram_energy_j": per_kind["ram"],
        "co2_g": co2_g(energy_j, intensity_g_per_kwh, pue),
    }


def decode_json_columns(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with its JSON text columns turned back into dicts."""
    for name in JSON_COLUMNS.intersection(row):
        value = row[name]
        row[name] = json.loads(value) if isinstance(value, str) and value else None
    return row
