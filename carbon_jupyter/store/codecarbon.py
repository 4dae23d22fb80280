"""CodeCarbon's ``emissions.csv``: write runs in its layout, and bring its history in.

The layout is the one CodeCarbon 3.3.2 writes: the fields of its
``EmissionsData``, in their order, each cell as pandas writes it (floats in
their shortest exact form, an empty cell for a missing value, the local
time of the end of the run as ``2024-05-01T12:00:10``). Every exported row
loads into CodeCarbon's own ``EmissionsData``. CodeCarbon writes energies in
kWh *including* the data centre's PUE, powers in W (also including PUE),
emissions in kg; carbon-jupyter keeps IT energy in joules and applies the PUE
when computing CO2, so:

===========================  ======================================================
emissions.csv                carbon-jupyter
===========================  ======================================================
``project_name``             ``label``
``run_id``                   ``id``
``timestamp``                ``ended_at``, local time, to the second
``duration``                 ``duration_s``
``emissions``                ``co2_g / 1000``; ``emissions_rate`` per second
``energy_consumed``          ``energy_j * pue / 3.6e6`` (likewise ``cpu_energy``, ...)
``cpu_power``                mean CPU power over the run times PUE, W (GPU, RAM alike)
``country_*``, ``region``    from ``intensity_key``: a country, or a cloud region's country
``cloud_*``, ``on_cloud``    ``intensity_key`` when it is a cloud region (``aws:eu-west-1``)
``tracking_mode``            ``attribution``: ``machine`` <-> ``device``, ``process``
``*_utilization_percent``    mean utilisation in the run's samples; 0 where not sampled
``ram_used_gb``              mean memory in use in the RAM samples; 0 where not sampled
``codecarbon_version``       ``3.3.2+carbon-jupyter.<version>`` (layout, and writer)
``experiment_id``            CodeCarbon's default experiment id, unless imported
``water_consumed``, ``wue``  0 (carbon-jupyter does not count water)
===========================  ======================================================

``longitude`` and ``latitude`` are left empty, as CodeCarbon leaves them when
it does not know them; so are ``cloud_provider`` and ``cloud_region`` off the
cloud, ``gpu_model`` on a machine without GPUs and ``region`` for a country.

Importing keeps CodeCarbon's own row: the cells of the file are stored with
the run (the ``codecarbon_row`` tag, JSON text), and an export of an imported
run writes them back unchanged, so ids, project, experiment, powers, energies
and emissions survive a round trip exactly. A row of an older CodeCarbon that
lacks a column gets the value carbon-jupyter computes for it.

An imported run gets ``origin = "codecarbon"``, status ``ok``, its carbon
factor is the file's own (emissions over energy) and its devices are marked
with method ``codecarbon``. A CodeCarbon run that wrote several rows (one per
flush, each cumulative) is one run: the row covering the longest time is
kept. Importing is idempotent: the id of an imported run is derived from the
CodeCarbon ``run_id``, so a file imported twice (or a newer version of it)
stores each run once, and rows that carbon-jupyter itself exported are
skipped. A file with no rows is refused, and nothing is stored unless every
row can be read.
"""

from __future__ import annotations

import csv
import json
import os
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

from carbon_jupyter._version import __version__
from carbon_jupyter.errors import CarbonError, StoreError
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
    import sqlite3

    from carbon_jupyter.store.sqlite import Store

#: The CodeCarbon release whose ``emissions.csv`` layout is written.
LAYOUT_VERSION = "3.3.2"
#: The fields of CodeCarbon's ``EmissionsData``, in its order: the columns of emissions.csv.
COLUMNS = (
    "timestamp", "project_name", "run_id", "experiment_id", "duration", "emissions",
    "emissions_rate", "cpu_power", "gpu_power", "ram_power", "cpu_energy", "gpu_energy",
    "ram_energy", "energy_consumed", "water_consumed", "country_name", "country_iso_code",
    "region", "cloud_provider", "cloud_region", "os", "python_version", "codecarbon_version",
    "cpu_count", "cpu_model", "gpu_count", "gpu_model", "longitude", "latitude",
    "ram_total_size", "tracking_mode", "cpu_utilization_percent", "gpu_utilization_percent",
    "ram_utilization_percent", "ram_used_gb", "on_cloud", "pue", "wue",
)  # fmt: skip
#: The experiment CodeCarbon files a run under when none is configured.
DEFAULT_EXPERIMENT_ID = "5b0fa12a-3dd7-45bb-9766-cc326314d9f1"
#: The tag holding an imported run's own CodeCarbon cells (JSON text).
ROW_TAG = "codecarbon_row"
#: What ``codecarbon_version`` says for runs carbon-jupyter measured: the layout, and the writer.
WRITER_VERSION = f"{LAYOUT_VERSION}+carbon-jupyter.{__version__}"
#: How CodeCarbon writes ``timestamp``: local time, to the second.
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S"

_NAMESPACE = uuid.UUID("5f0c6d8e-6b7a-4c1e-9a54-2a7e1f0c9b31")
_KINDS = ("cpu", "gpu", "ram")
_USAGE_SQL = (
    "SELECT d.kind, AVG(s.utilization_pct), AVG(s.memory_used_b) FROM samples s "
    "JOIN devices d ON d.run_id = s.run_id AND d.device_id = s.device_id "
    "WHERE s.run_id = ? GROUP BY d.kind"
)

Usage = dict[str, tuple[float | None, float | None]]


# -- writing -------------------------------------------------------------------------------


def _location(key: str) -> dict[str, str]:
    """CodeCarbon's location columns for an intensity key (a country, region or group)."""
    from carbon_jupyter.intensity import lookup_country, lookup_region

    empty = {"country_name": "", "country_iso_code": "", "region": "",
             "cloud_provider": "", "cloud_region": ""}  # fmt: skip
    if ":" in key:
        provider, _, name = key.partition(":")
        found = {**empty, "cloud_provider": provider, "cloud_region": name}
        try:
            cloud = lookup_region(key)
            country = lookup_country(cloud.iso3)
        except CarbonError:
            return found
        return {**found, "country_name": country.name, "country_iso_code": cloud.iso3,
                "region": cloud.location}  # fmt: skip
    try:
        place = lookup_country(key)
    except CarbonError:
        return {**empty, "country_name": "Unknown"}
    iso3 = getattr(place, "iso3", "")
    return {**empty, "country_name": place.name, "country_iso_code": iso3}


def _gpu_model(names: list[str]) -> str:
    """``1 x NVIDIA H100 80GB HBM3``, CodeCarbon's way of naming a machine's GPUs."""
    return ", ".join(f"{count} x {name}" for name, count in Counter(names).items())


def _local_timestamp(text: str) -> str:
    return parse_time(text).astimezone().strftime(TIMESTAMP_FORMAT)


def computed_row(run: dict[str, Any], usage: Usage) -> dict[str, Any]:
    """The emissions.csv row of a stored run (its columns decoded), from its own figures.

    ``usage`` maps a device kind to its mean utilisation (%) and memory in use (bytes)
    over the run's samples.
    """
    pue = run["pue"] or 1.0
    duration_s = run["duration_s"] or 0.0
    hardware = run["hardware"] or {}
    versions = run["versions"] or {}
    tags = run["tags"] or {}
    emissions_kg = (run["co2_g"] or 0.0) / 1000.0
    ended_at = run["ended_at"] or utc_iso(
        parse_time(run["started_at"]) + timedelta(seconds=duration_s)
    )
    location = _location(run["intensity_key"] or "")
    ram_total_gb = hardware.get("ram_gb")
    ram_used_b = usage.get("ram", (None, None))[1]
    ram_used_gb = ram_used_b / 1024**3 if ram_used_b is not None else 0.0
    row: dict[str, Any] = {
        "timestamp": _local_timestamp(ended_at),
        "project_name": run["label"] or "carbon-jupyter",
        "run_id": run["id"],
        "experiment_id": tags.get("codecarbon_experiment_id") or DEFAULT_EXPERIMENT_ID,
        "duration": float(duration_s),
        "emissions": emissions_kg,
        "emissions_rate": emissions_kg / duration_s if duration_s > 0 else 0.0,
        "energy_consumed": (run["energy_j"] or 0.0) * pue / J_PER_KWH,
        "water_consumed": 0.0,
        **location,
        "os": hardware.get("os") or "",
        "python_version": versions.get("python") or "",
        "codecarbon_version": WRITER_VERSION,
        "cpu_count": hardware.get("cpu_threads"),
        "cpu_model": hardware.get("cpu_model") or "",
        "gpu_count": int(hardware.get("gpu_count") or 0),
        "gpu_model": _gpu_model(list(hardware.get("gpus") or [])),
        "longitude": None,
        "latitude": None,
        "ram_total_size": float(ram_total_gb) if ram_total_gb else None,
        "tracking_mode": "process" if run["attribution"] == "process" else "machine",
        "ram_used_gb": ram_used_gb,
        "ram_utilization_percent": (
            100.0 * ram_used_gb / ram_total_gb if ram_used_b is not None and ram_total_gb else 0.0
        ),
        "on_cloud": "Y" if location["cloud_provider"] else "N",
        "pue": float(pue),
        "wue": 0.0,
    }
    for kind in _KINDS:
        energy_j = run[f"{kind}_energy_j"] or 0.0
        row[f"{kind}_energy"] = energy_j * pue / J_PER_KWH
        row[f"{kind}_power"] = energy_j * pue / duration_s if duration_s > 0 else 0.0
        if kind != "ram":
            utilization = usage.get(kind, (None, None))[0]
            row[f"{kind}_utilization_percent"] = float(utilization or 0.0)
    return row


def kept_cells(tags: dict[str, Any] | None) -> dict[str, str]:
    """The CodeCarbon cells an imported run brought with it (empty for measured runs)."""
    text = (tags or {}).get(ROW_TAG)
    if not isinstance(text, str):
        return {}
    try:
        cells = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(cells, dict):
        return {}
    return {k: v for k, v in cells.items() if k in COLUMNS and isinstance(v, str)}


def _usage(conn: sqlite3.Connection, run_id: str) -> Usage:
    return {kind: (u, m) for kind, u, m in conn.execute(_USAGE_SQL, (run_id,))}


def _cell(value: Any) -> Any:
    return "" if value is None else value


def codecarbon_rows(conn: sqlite3.Connection, flt: RunFilter, limit: int | None) -> list[list[Any]]:
    """The emissions.csv cells of the runs matching ``flt``, in the order CodeCarbon appends."""
    out = []
    for stored in reversed(select_run_rows(conn, flt, limit, EXPORT_COLUMNS)):
        run = decode_json_columns(stored)
        row = {**computed_row(run, _usage(conn, run["id"])), **kept_cells(run["tags"])}
        order = run["ended_at"] or run["started_at"]
        out.append((order, [_cell(row[c]) for c in COLUMNS]))
    out.sort(key=lambda item: item[0])
    return [cells for _, cells in out]


def write_codecarbon(
    store: Store, path: str | os.PathLike[str], flt: RunFilter, limit: int | None
) -> int:
    """Write the runs matching ``flt`` to ``path`` in CodeCarbon's layout; how many runs.

    A missing folder is refused before the store is read (see
    :func:`carbon_jupyter.store.export.output_path`).
    """
    from carbon_jupyter.store.export import output_path, write_file

    target = output_path(path)
    with store._read("exporting runs from") as conn:
        rows = codecarbon_rows(conn, flt, limit)

    def write(f: IO[str]) -> None:
        writer = csv.writer(f, lineterminator=os.linesep)
        writer.writerow(COLUMNS)
        writer.writerows(rows)

    write_file(target, write)
    return len(rows)


def export_codecarbon(
    store: Store, path: str | os.PathLike[str], flt: RunFilter, limit: int | None
) -> Path:
    """Write the runs matching ``flt`` to ``path`` in CodeCarbon's emissions.csv layout."""
    write_codecarbon(store, path, flt, limit)
    return Path(path).expanduser()


# -- reading -------------------------------------------------------------------------------


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
    cells = {c: row[c] for c in COLUMNS if isinstance(row.get(c), str)}
    tags = {"codecarbon_run_id": row.get("run_id") or "",
            ROW_TAG: json.dumps(cells, separators=(",", ":"))}  # fmt: skip
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
    """The rows of an emissions.csv; one per CodeCarbon run (the longest-covering row).

    A missing or empty file, a CSV without CodeCarbon's columns and a header without
    rows are refused with a :class:`~carbon_jupyter.errors.StoreError` saying so.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames
            rows = [r for r in reader if any((v or "").strip() for v in r.values())]
    except FileNotFoundError:
        raise StoreError(f"{path} does not exist; nothing was imported.") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise StoreError(f"Cannot read {path} as a CodeCarbon emissions.csv ({exc}).") from exc
    if not header:
        raise StoreError(
            f"{path} is empty: it has no header and no runs; nothing was imported. Give the "
            "emissions.csv that CodeCarbon wrote in its output_dir."
        )
    if not {"duration", "emissions"} <= set(header):
        raise StoreError(
            f"{path} does not look like a CodeCarbon emissions.csv: it has no duration and "
            "emissions columns. Give the emissions.csv that CodeCarbon wrote in its output_dir."
        )
    if not rows:
        raise StoreError(
            f"{path} has CodeCarbon's header but no rows: it holds no runs; nothing was imported."
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
    source = Path(path).expanduser()
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
