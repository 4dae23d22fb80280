"""Runs out of the store and back in: CSV for spreadsheets, JSON for a lossless copy.

* :func:`export_csv` writes one row per run (every stored column; tags,
  hardware and versions as JSON text) and, if asked, the samples to a second
  file beside it (``runs.csv`` -> ``runs-samples.csv``).
* :func:`export_json` writes one document holding the runs with their devices
  and, if asked, their samples. :func:`import_json` reads such a document into
  a store; runs already there (same id) are left as they are, so importing a
  file twice stores nothing twice.

The writer's process id stays behind: it only means something on the machine
that measured the run.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from carbon_jupyter.errors import StoreError
from carbon_jupyter.store.query import RunFilter, select_run_rows
from carbon_jupyter.store.rows import (
    DEVICE_COLUMNS,
    EXPORT_COLUMNS,
    JSON_COLUMNS,
    SAMPLE_COLUMNS,
    canonical_time,
    decode_json_columns,
    now_iso,
)

if TYPE_CHECKING:
    from carbon_jupyter.store.sqlite import Store

#: The ``format`` field of a JSON export, and the version of its layout.
JSON_FORMAT = "carbon-jupyter-runs"
JSON_VERSION = 1


def samples_path(path: Path) -> Path:
    """Where :func:`export_csv` puts the samples that go with a runs file."""
    return path.with_name(f"{path.stem}-samples{path.suffix or '.csv'}")


def _cell(value: Any) -> Any:
    return "" if value is None else value


def export_csv(
    store: Store, path: str | os.PathLike[str], flt: RunFilter, limit: int | None, samples: bool
) -> list[Path]:
    """Write the runs matching ``flt`` (and their samples) as CSV; return the files written."""
    target = Path(path)
    with store._read("exporting runs from") as conn:
        rows = select_run_rows(conn, flt, limit, EXPORT_COLUMNS)
        with open(target, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(EXPORT_COLUMNS)
            writer.writerows([_cell(row[c]) for c in EXPORT_COLUMNS] for row in rows)
        written = [target]
        if samples:
            sample_target = samples_path(target)
            sql = f"SELECT {', '.join(SAMPLE_COLUMNS)} FROM samples WHERE run_id = ? ORDER BY seq"
            with open(sample_target, "w", newline="", encoding="utf-8") as f:
                writer = csv.writer(f)
                writer.writerow(SAMPLE_COLUMNS)
                for row in rows:
                    writer.writerows([_cell(v) for v in r] for r in conn.execute(sql, (row["id"],)))
            written.append(sample_target)
    return written


def export_json(
    store: Store, path: str | os.PathLike[str], flt: RunFilter, limit: int | None, samples: bool
) -> Path:
    """Write the runs matching ``flt`` with devices (and samples) as one JSON document."""
    target = Path(path)
    device_sql = f"SELECT {', '.join(DEVICE_COLUMNS[1:])} FROM devices WHERE run_id = ? "
    sample_sql = f"SELECT {', '.join(SAMPLE_COLUMNS[1:])} FROM samples WHERE run_id = ? "
    out = []
    with store._read("exporting runs from") as conn:
        for row in select_run_rows(conn, flt, limit, EXPORT_COLUMNS):
            run = decode_json_columns(row)
            run["devices"] = [
                dict(zip(DEVICE_COLUMNS[1:], d, strict=True))
                for d in conn.execute(device_sql + "ORDER BY position", (row["id"],))
            ]
            if samples:
                run["samples"] = [
                    dict(zip(SAMPLE_COLUMNS[1:], s, strict=True))
                    for s in conn.execute(sample_sql + "ORDER BY seq", (row["id"],))
                ]
            out.append(run)
    document = {"format": JSON_FORMAT, "version": JSON_VERSION, "exported_at": now_iso(),
                "runs": out}  # fmt: skip
    with open(target, "w", encoding="utf-8") as f:
        json.dump(document, f, indent=1)
    return target


def _load(path: Path) -> list[dict[str, Any]]:
    try:
        with open(path, encoding="utf-8") as f:
            document = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StoreError(
            f"Cannot read {path} as a carbon-jupyter JSON export ({exc}). Give a file written "
            "by export_json() or `carbon-jupyter export --json`."
        ) from exc
    if not isinstance(document, dict) or document.get("format") != JSON_FORMAT:
        raise StoreError(
            f'{path} is JSON but not a carbon-jupyter export (no "format": "{JSON_FORMAT}"). '
            "Give a file written by export_json() or `carbon-jupyter export --json`."
        )
    if int(document.get("version", 0)) > JSON_VERSION:
        raise StoreError(
            f"{path} was exported by a newer carbon-jupyter (layout version "
            f"{document.get('version')}). Upgrade with `pip install -U carbon-jupyter`."
        )
    runs = document.get("runs")
    if not isinstance(runs, list):
        raise StoreError(f"{path} has no list of runs; it is not a complete export.")
    return runs


def _insert(conn: Any, table: str, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> int:
    if not rows:
        return 0
    sql = (
        f"INSERT OR IGNORE INTO {table} ({', '.join(columns)}) "
        f"VALUES ({', '.join(':' + c for c in columns)})"
    )
    before = conn.total_changes
    conn.executemany(sql, [{c: r.get(c) for c in columns} for r in rows])
    return int(conn.total_changes - before)


def import_json(store: Store, path: str | os.PathLike[str]) -> int:
    """Add the runs of a JSON export to ``store``; returns how many were new."""
    source = Path(path)
    runs = _load(source)
    added = 0
    with store._write(f"importing {source.name} into") as conn:
        for run in runs:
            if not isinstance(run, dict) or not run.get("id") or not run.get("started_at"):
                raise StoreError(
                    f"{source} holds a run without an id or start time; nothing was imported."
                )
            row = {c: run.get(c) for c in EXPORT_COLUMNS}
            for column in JSON_COLUMNS:
                if row[column] is not None:
                    row[column] = json.dumps(row[column], sort_keys=True)
            row["started_at"] = canonical_time(row["started_at"])
            row["ended_at"] = canonical_time(row["ended_at"])
            row["origin"] = row["origin"] or "carbon-jupyter"
            added += _insert(conn, "runs", EXPORT_COLUMNS, [row])
            devices = [{**d, "run_id": run["id"]} for d in run.get("devices") or []]
            _insert(conn, "devices", DEVICE_COLUMNS, devices)
            samples = [{**s, "run_id": run["id"]} for s in run.get("samples") or []]
            _insert(conn, "samples", SAMPLE_COLUMNS, samples)
    return added
