"""CodeCarbon's ``emissions.csv``: write runs in its layout, and bring its history in.

CodeCarbon writes one row per tracked run with energies in kWh *including*
the data centre's PUE, emissions in kg and power in W. carbon-jupyter keeps
IT energy in joules and applies the PUE when computing CO2, so:

=====================  ============================================================
emissions.csv          carbon-jupyter
=====================  ============================================================
``project_name``       ``label``
``timestamp``          ``ended_at`` (CodeCarbon writes it at stop, in local time)
``duration``           ``duration_s``
``emissions``          ``co2_g / 1000``
``energy_consumed``    ``energy_j * pue / 3.6e6`` (likewise ``cpu_energy``, ...)
``cpu_power``          mean CPU power over the run, W (likewise GPU and RAM)
``tracking_mode``      ``attribution``: ``machine`` <-> ``device``, ``process``
``country_iso_code``   ``intensity_key`` when it is a country; ``cloud_*`` for regions
=====================  ============================================================

An imported run gets ``origin = "codecarbon"``, status ``ok``, its carbon
factor is the file's own (emissions over energy) and its devices are marked
with method ``codecarbon``. A CodeCarbon run that wrote several rows (one
per flush, each cumulative) is one run: the row covering the longest time is
kept. Importing is idempotent: the id of an imported run is derived from the
CodeCarbon ``run_id``, so a file imported twice (or a newer version of it)
stores each run once, and rows that carbon-jupyter itself exported are skipped.
"""

from __future__ import annotations

import csv
import json
import os
import uuid
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from carbon_jupyter.errors import StoreError
from carbon_jupyter.model import J_PER_KWH, DeviceEnergy, DeviceInfo, Intensity, Run
from carbon_jupyter.store.query import RunFilter, select_run_rows
from carbon_jupyter.store.rows import (
    EXPORT_COLUMNS,
    UPSERT_DEVICE,
    decode_json_columns,
    device_rows,
    parse_time,
    run_row,
    upsert_sql,
    utc_iso,
)

if TYPE_CHECKING:
    from carbon_jupyter.store.sqlite import Store

#: The columns of CodeCarbon 2.x ``emissions.csv``, in its order.
COLUMNS = (
    "timestamp", "project_name", "run_id", "experiment_id", "duration", "emissions",
    "emissions_rate", "cpu_power", "gpu_power", "ram_power", "cpu_energy", "gpu_energy",
    "ram_energy", "energy_consumed", "country_name", "country_iso_code", "region",
    "cloud_provider", "cloud_region", "os", "python_version", "codecarbon_version",
    "cpu_count", "cpu_model", "gpu_count", "gpu_model", "longitude", "latitude",
    "ram_total_size", "tracking_mode", "on_cloud", "pue",
)  # fmt: skip
_NAMESPACE = uuid.UUID("5f0c6d8e-6b7a-4c1e-9a54-2a7e1f0c9b31")
_KINDS = ("cpu", "gpu", "ram")


def _row_for(run: dict[str, Any]) -> dict[str, Any]:
    pue = run["pue"] or 1.0
    duration_s = run["duration_s"] or 0.0
    hardware = run["hardware"] or {}
    versions = run["versions"] or {}
    key = run["intensity_key"] or ""
    provider, _, region = key.partition(":") if ":" in key else ("", "", "")
    emissions_kg = (run["co2_g"] or 0.0) / 1000.0
    ended_at = run["ended_at"] or utc_iso(
        parse_time(run["started_at"]) + timedelta(seconds=duration_s)
    )
    row: dict[str, Any] = {
        "timestamp": utc_iso(parse_time(ended_at)),
        "project_name": run["label"] or "carbon-jupyter",
        "run_id": run["id"],
        "experiment_id": (run["tags"] or {}).get("codecarbon_experiment_id", ""),
        "duration": duration_s,
        "emissions": emissions_kg,
        "emissions_rate": emissions_kg / duration_s if duration_s > 0 else 0.0,
        "energy_consumed": (run["energy_j"] or 0.0) * pue / J_PER_KWH,
        "country_iso_code": key if len(key) == 3 and key.isalpha() and key.isupper() else "",
        "cloud_provider": provider,
        "cloud_region": region,
        "os": hardware.get("os", ""),
        "python_version": versions.get("python", ""),
        "cpu_count": hardware.get("cpu_threads", ""),
        "cpu_model": hardware.get("cpu_model", ""),
        "gpu_count": hardware.get("gpu_count", ""),
        "gpu_model": ", ".join(hardware.get("gpus") or []),
        "ram_total_size": hardware.get("ram_gb", ""),
        "tracking_mode": "process" if run["attribution"] == "process" else "machine",
        "on_cloud": "Y" if provider else "N",
        "pue": pue,
    }
    for kind in _KINDS:
        energy_j = run[f"{kind}_energy_j"] or 0.0
        row[f"{kind}_energy"] = energy_j * pue / J_PER_KWH
        row[f"{kind}_power"] = energy_j / duration_s if duration_s > 0 else 0.0
    return row


def export_codecarbon(
    store: Store, path: str | os.PathLike[str], flt: RunFilter, limit: int | None
) -> Path:
    """Write the runs matching ``flt`` to ``path`` in CodeCarbon's emissions.csv layout."""
    target = Path(path)
    with store._read("exporting runs from") as conn:
        rows = select_run_rows(conn, flt, limit, EXPORT_COLUMNS)
    with open(target, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, restval="")
        writer.writeheader()
        writer.writerows(_row_for(decode_json_columns(r)) for r in reversed(rows))
    return target


def _number(row: dict[str, str], name: str, default: float = 0.0) -> float:
    text = (row.get(name) or "").strip()
    if not text or text.lower() == "nan":
        return default
    return float(text)


def _run_from(row: dict[str, str]) -> tuple[Run, dict[str, Any], dict[str, Any]]:
    """A Run, its hardware and its versions from one emissions.csv row."""
    pue = _number(row, "pue", 1.0) or 1.0
    duration_s = _number(row, "duration")
    kinds = {k: _number(row, f"{k}_energy") * J_PER_KWH / pue for k in _KINDS}
    facility_kwh = _number(row, "energy_consumed", sum(kinds.values()) * pue / J_PER_KWH)
    co2_g = _number(row, "emissions") * 1000.0
    on_cloud = (row.get("on_cloud") or "").strip().upper() == "Y"
    cloud = f"{row.get('cloud_provider', '')}:{row.get('cloud_region', '')}"
    key = cloud if on_cloud else (row.get("country_iso_code") or row.get("region") or "unknown")
    version = row.get("codecarbon_version") or ""
    run_key = row.get("run_id") or json.dumps(row, sort_keys=True)
    ended = parse_time(row["timestamp"]) if row.get("timestamp") else None
    names = {"cpu": row.get("cpu_model"), "gpu": row.get("gpu_model"), "ram": "RAM"}
    devices = tuple(
        DeviceEnergy(
            DeviceInfo(
                device_id=kind,
                kind=cast(Any, kind),
                name=names[kind] or kind.upper(),
                method=cast(Any, "codecarbon"),
                detail=f"imported from CodeCarbon {version}".strip(),
            ),
            kinds[kind],
            mean_power_w=kinds[kind] / duration_s if duration_s > 0 else None,
        )
        for kind in _KINDS
        if kinds[kind] > 0 or (kind == "gpu" and _number(row, "gpu_count") > 0)
    )
    tags = {"codecarbon_run_id": row.get("run_id") or ""}
    if row.get("experiment_id"):
        tags["codecarbon_experiment_id"] = row["experiment_id"]
    run = Run(
        id=str(uuid.uuid5(_NAMESPACE, f"codecarbon:{run_key}")),
        label=row.get("project_name") or None,
        phase=None,
        items=None,
        status="ok",
        started_at=utc_iso(ended - timedelta(seconds=duration_s)) if ended else "",
        ended_at=utc_iso(ended) if ended else None,
        duration_s=duration_s,
        attribution="process" if row.get("tracking_mode") == "process" else "device",
        devices=devices,
        intensity=Intensity(
            intensity_g_per_kwh=co2_g / facility_kwh if facility_kwh > 0 else 0.0,
            source="codecarbon",
            year=None,
            pue=pue,
            pue_source="codecarbon",
            chosen_by="imported",
            key=key,
        ),
        energy_j=facility_kwh * J_PER_KWH / pue,
        cpu_energy_j=kinds["cpu"],
        gpu_energy_j=kinds["gpu"],
        ram_energy_j=kinds["ram"],
        co2_g=co2_g,
        tags=tags,
    )
    hardware = {
        "cpu_model": row.get("cpu_model") or "",
        "cpu_threads": int(_number(row, "cpu_count")) or None,
        "gpu_count": int(_number(row, "gpu_count")),
        "gpus": [row["gpu_model"]] if row.get("gpu_model") else [],
        "ram_gb": _number(row, "ram_total_size") or None,
        "os": row.get("os") or "",
    }
    versions = {"python": row.get("python_version") or "", "codecarbon": version}
    return run, hardware, versions


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of an emissions.csv; one per CodeCarbon run (the longest-covering row)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise StoreError(f"Cannot read {path} as a CodeCarbon emissions.csv ({exc}).") from exc
    if rows and not {"duration", "emissions"} <= set(rows[0]):
        raise StoreError(
            f"{path} does not look like a CodeCarbon emissions.csv: it has no duration and "
            "emissions columns. Give the emissions.csv that CodeCarbon wrote in its output_dir."
        )
    best: dict[str, dict[str, str]] = {}
    for number, row in enumerate(rows, start=2):
        try:
            duration_s = _number(row, "duration")
        except ValueError as exc:
            raise StoreError(f"{path}, line {number}: {exc}; nothing was imported.") from exc
        key = row.get("run_id") or f"line-{number}"
        if key not in best or duration_s >= _number(best[key], "duration"):
            best[key] = row
    return list(best.values())


def import_codecarbon(store: Store, path: str | os.PathLike[str]) -> int:
    """Add the runs of a CodeCarbon emissions.csv to ``store``; returns how many were new."""
    source = Path(path)
    added = 0
    runs = []
    for number, row in enumerate(read_rows(source), start=1):
        try:
            runs.append(_run_from(row))
        except (ValueError, KeyError) as exc:
            raise StoreError(
                f"{source}, run {number} ({row.get('run_id', '?')}): {exc}; nothing was imported."
            ) from exc
    with store._write(f"importing {source.name} into") as conn:
        for run, hardware, versions in runs:
            own = run.tags.get("codecarbon_run_id")
            if own and conn.execute("SELECT 1 FROM runs WHERE id = ?", (own,)).fetchone():
                continue  # a run this store exported itself
            stored = conn.execute("SELECT duration_s FROM runs WHERE id = ?", (run.id,)).fetchone()
            if stored is not None and stored[0] >= run.duration_s:
                continue
            row = run_row(run, origin="codecarbon")
            row.update(hardware=json.dumps(hardware, sort_keys=True),
                       versions=json.dumps(versions, sort_keys=True))  # fmt: skip
            conn.execute(upsert_sql("runs", tuple(row), ("id",)), row)
            conn.execute("DELETE FROM devices WHERE run_id = ?", (run.id,))
            conn.executemany(UPSERT_DEVICE, device_rows(run))
            added += 1
    return added
