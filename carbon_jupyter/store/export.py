"""Runs out of the store and back in: CSV for spreadsheets, JSON for a lossless copy.

* :func:`export_runs` writes the runs in one of three layouts and says which:
  ``codecarbon`` (CodeCarbon's ``emissions.csv``, see
  :mod:`carbon_jupyter.store.codecarbon`), ``csv`` or ``json``. Without a
  ``format`` the file name decides: a name ending in ``emissions.csv``
  (``emissions.csv``, ``out_emissions.csv``) gets CodeCarbon's layout, other
  ``.csv`` names this project's CSV, ``.json`` the JSON document.
* :func:`export_csv` writes one row per run (every stored column; tags,
  hardware and versions as JSON text) and, if asked, the samples to a second
  file beside it (``runs.csv`` -> ``runs-samples.csv``).
* :func:`export_json` writes one document holding the runs with their devices
  and, if asked, their samples. :func:`import_json` reads such a document into
  a store; runs already there (same id) are left as they are, so importing a
  file twice stores nothing twice. A file holding no runs is refused.

A file is written only into a folder that exists: a missing folder is a
:class:`~carbon_jupyter.errors.ConfigError` naming it, raised before the store
is read. The writer's process id stays behind: it only means something on the
machine that measured the run.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from carbon_jupyter.errors import ConfigError, StoreError
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
#: The layouts :func:`export_runs` writes, and how each is named to people.
FORMATS = {
    "codecarbon": "CodeCarbon's emissions.csv layout",
    "csv": "carbon-jupyter's CSV layout",
    "json": "carbon-jupyter's JSON layout",
}


@dataclass(frozen=True)
class Exported:
    """What :func:`export_runs` wrote: the layout, the files and how many runs."""

    format: str
    files: tuple[Path, ...]
    runs: int

    @property
    def layout(self) -> str:
        """The layout in words: ``CodeCarbon's emissions.csv layout``."""
        return FORMATS[self.format]

    def __str__(self) -> str:
        noun = "run" if self.runs == 1 else "runs"
        return f"{self.runs} {noun} to {self.files[0]} in {self.layout}"


def choose_format(path: str | os.PathLike[str], format: str | None = None) -> str:
    """The layout for ``path``: ``format`` when given, else the one its name suggests."""
    if format is not None:
        if format not in FORMATS:
            raise ConfigError(f"unknown export format {format!r}; use {', '.join(FORMATS)}")
        return format
    name = Path(path).name.lower()
    if name.endswith("emissions.csv"):
        return "codecarbon"
    if name.endswith(".csv"):
        return "csv"
    if name.endswith(".json"):
        return "json"
    raise ConfigError(
        f"cannot tell the layout of {Path(path).name!r}: name a .csv or .json file "
        "(a name ending in emissions.csv gets CodeCarbon's layout), or give the format"
    )


def output_path(path: str | os.PathLike[str]) -> Path:
    """``path`` made ready to write: its folder must exist, and it must not be a folder."""
    target = Path(path).expanduser()
    folder = target.parent
    if not folder.exists():
        raise ConfigError(f"cannot write {target}: the folder {folder} does not exist")
    if not folder.is_dir():
        raise ConfigError(f"cannot write {target}: {folder} is a file, not a folder")
    if target.is_dir():
        raise ConfigError(f"cannot write {target}: it is a folder; name a file in it")
    return target


def write_file(target: Path, write: Callable[[IO[str]], None]) -> None:
    """Write a text file with ``write``; a failure names the file, not the store."""
    try:
        with open(target, "w", newline="", encoding="utf-8") as f:
            write(f)
    except OSError as exc:
        raise ConfigError(f"cannot write {target}: {exc.strerror or exc}") from exc


def samples_path(path: Path) -> Path:
    """Where :func:`export_csv` puts the samples that go with a runs file."""
    return path.with_name(f"{path.stem}-samples{path.suffix or '.csv'}")


def _cell(value: Any) -> Any:
    return "" if value is None else value


def _write_csv(
    store: Store, target: Path, flt: RunFilter, limit: int | None, samples: bool
) -> tuple[list[Path], int]:
    sample_target = samples_path(target)
    if samples:
        output_path(sample_target)
    sample_rows: list[tuple[Any, ...]] = []
    with store._read("exporting runs from") as conn:
        rows = select_run_rows(conn, flt, limit, EXPORT_COLUMNS)
        if samples:
            sql = f"SELECT {', '.join(SAMPLE_COLUMNS)} FROM samples WHERE run_id = ? ORDER BY seq"
            for row in rows:
                sample_rows.extend(conn.execute(sql, (row["id"],)))

    def write_runs(f: IO[str]) -> None:
        writer = csv.writer(f)
        writer.writerow(EXPORT_COLUMNS)
        writer.writerows([_cell(row[c]) for c in EXPORT_COLUMNS] for row in rows)

    def write_samples(f: IO[str]) -> None:
        writer = csv.writer(f)
        writer.writerow(SAMPLE_COLUMNS)
        writer.writerows([_cell(v) for v in r] for r in sample_rows)

    write_file(target, write_runs)
    if not samples:
        return [target], len(rows)
    write_file(sample_target, write_samples)
    return [target, sample_target], len(rows)


def export_csv(
    store: Store, path: str | os.PathLike[str], flt: RunFilter, limit: int | None, samples: bool
) -> list[Path]:
    """Write the runs matching ``flt`` (and their samples) as CSV; return the files written."""
    return _write_csv(store, output_path(path), flt, limit, samples)[0]


def _write_json(
    store: Store, target: Path, flt: RunFilter, limit: int | None, samples: bool
) -> int:
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
    write_file(target, lambda f: json.dump(document, f, indent=1))
    return len(out)


def export_json(
    store: Store, path: str | os.PathLike[str], flt: RunFilter, limit: int | None, samples: bool
) -> Path:
    """Write the runs matching ``flt`` with devices (and samples) as one JSON document."""
    target = output_path(path)
    _write_json(store, target, flt, limit, samples)
    return target


def export_runs(
    store: Store,
    path: str | os.PathLike[str],
    *,
    format: str | None = None,
    samples: bool = False,
    limit: int | None = None,
    **filters: Any,
) -> Exported:
    """Write the runs matching ``filters`` to ``path`` in ``format`` (default: by its name).

    ``samples`` adds the power samples (a second CSV file, or inside the JSON);
    CodeCarbon's layout has no place for them, so asking for both is refused.
    """
    chosen = choose_format(path, format)
    if samples and chosen == "codecarbon":
        raise ConfigError(
            "CodeCarbon's emissions.csv layout has no place for samples; "
            "export them to a .csv or .json file"
        )
    target = output_path(path)
    flt = RunFilter(**filters)
    if chosen == "codecarbon":
        from carbon_jupyter.store.codecarbon import write_codecarbon

        return Exported(chosen, (target,), write_codecarbon(store, target, flt, limit))
    if chosen == "csv":
        files, count = _write_csv(store, target, flt, limit, samples)
        return Exported(chosen, tuple(files), count)
    return Exported(chosen, (target,), _write_json(store, target, flt, limit, samples))


def _load(path: Path) -> list[dict[str, Any]]:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        document = json.loads(text) if text.strip() else None
    except FileNotFoundError:
        raise StoreError(f"{path} does not exist; nothing was imported.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StoreError(
            f"Cannot read {path} as a carbon-jupyter JSON export ({exc}). Give a file written "
            "by export_json() or `carbon-jupyter export runs.json`."
        ) from exc
    if document is None:
        raise StoreError(
            f"{path} is empty: it holds no runs; nothing was imported. Give a file written "
            "by export_json() or `carbon-jupyter export runs.json`."
        )
    if not isinstance(document, dict) or document.get("format") != JSON_FORMAT:
        raise StoreError(
            f'{path} is JSON but not a carbon-jupyter export (no "format": "{JSON_FORMAT}"). '
            "Give a file written by export_json() or `carbon-jupyter export runs.json`."
        )
    if int(document.get("version", 0)) > JSON_VERSION:
        raise StoreError(
            f"{path} was exported by a newer carbon-jupyter (layout version "
            f"{document.get('version')}). Upgrade with `pip install -U carbon-jupyter`."
        )
    runs = document.get("runs")
    if not isinstance(runs, list):
        raise StoreError(f"{path} has no list of runs; it is not a complete export.")
    if not runs:
        raise StoreError(f"{path} is a carbon-jupyter export with no runs; nothing was imported.")
    return runs


def _insert(conn: Any, table: str, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> int:
    if not rows:
        return 0
    sql = (
        f"INSERT OR IGNORE INTO {table} ({', '.join(columns)}) "
        f"VALUES ({', '.join(':' + c for c in columns)})"
    )
    # The cursor's count leaves out rows that triggers change (``run_totals``).
    cursor = conn.executemany(sql, [{c: r.get(c) for c in columns} for r in rows])
    return int(cursor.rowcount)


def import_json(store: Store, path: str | os.PathLike[str]) -> int:
    """Add the runs of a JSON export to ``store``; returns how many were new."""
    source = Path(path).expanduser()
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
