"""The server's run and sample rows as the records the plot functions draw.

:mod:`carbon_jupyter.server.queries` answers dicts (the ``runs`` columns with
``user``, ``project`` and ``devices``); :mod:`carbon_jupyter.show.plots` draws
:class:`~carbon_jupyter.model.Run` and :class:`~carbon_jupyter.model.Sample`
records. These functions turn one into the other, so the dashboard and the
notebook draw the same figures from the same code.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

from carbon_jupyter.model import (
    Attribution,
    DeviceEnergy,
    DeviceInfo,
    Intensity,
    Kind,
    Method,
    Run,
    Sample,
    Status,
)


def _float(value: Any, default: float = 0.0) -> float:
    return float(value) if value is not None else default


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def device_info(row: Mapping[str, Any]) -> DeviceInfo:
    """A ``devices`` row as the device it describes."""
    return DeviceInfo(
        device_id=_text(row.get("device_id")),
        kind=cast(Kind, _text(row.get("kind"))),
        name=_text(row.get("name")),
        method=cast(Method, _text(row.get("method"))),
        uuid=row.get("uuid"),
        power_limit_w=row.get("power_limit_w"),
        detail=_text(row.get("detail")),
    )


def intensity(row: Mapping[str, Any]) -> Intensity:
    """The carbon-intensity factor and PUE a run was computed with (zero when unknown)."""
    return Intensity(
        intensity_g_per_kwh=_float(row.get("intensity_g_per_kwh")),
        source=_text(row.get("intensity_source")) or "unknown",
        year=row.get("intensity_year"),
        pue=_float(row.get("pue"), 1.0),
        pue_source=_text(row.get("pue_source")) or "unknown",
        chosen_by=_text(row.get("intensity_chosen_by")) or "unknown",
        key=_text(row.get("intensity_key")) or "unknown",
    )


def run_record(row: Mapping[str, Any], samples: Sequence[Sample] = ()) -> Run:
    """A run dict from :mod:`carbon_jupyter.server.queries` as a :class:`Run`.

    ``devices`` are read when the dict has them (:func:`queries.get_run`).
    ``user`` is the account on the measuring machine (``client_user``); the
    server's user and project stay in the dict.
    """
    devices = tuple(
        DeviceEnergy(
            device=device_info(d),
            energy_j=_float(d.get("energy_j")),
            process_energy_j=d.get("process_energy_j"),
            mean_power_w=d.get("mean_power_w"),
            error=d.get("error"),
        )
        for d in row.get("devices") or ()
    )
    tags = row.get("tags") or {}
    return Run(
        id=_text(row.get("id")),
        label=row.get("label"),
        phase=row.get("phase"),
        items=row.get("items"),
        status=cast(Status, _text(row.get("status"))),
        started_at=_text(row.get("started_at")),
        ended_at=row.get("ended_at"),
        duration_s=_float(row.get("duration_s")),
        attribution=cast(Attribution, _text(row.get("attribution")) or "device"),
        devices=devices,
        intensity=intensity(row),
        energy_j=_float(row.get("energy_j")),
        cpu_energy_j=_float(row.get("cpu_energy_j")),
        gpu_energy_j=_float(row.get("gpu_energy_j")),
        ram_energy_j=_float(row.get("ram_energy_j")),
        co2_g=_float(row.get("co2_g")),
        tags={str(k): str(v) for k, v in tags.items()} if isinstance(tags, dict) else {},
        notebook=row.get("notebook"),
        cell=row.get("cell"),
        kernel=row.get("kernel"),
        user=row.get("client_user"),
        host=row.get("host"),
        error=row.get("error"),
        warnings=tuple(str(w) for w in row.get("warnings") or ()),
        metrics={str(k): float(v) for k, v in (row.get("metrics") or {}).items()},
        samples=tuple(samples),
    )


def sample_record(row: Mapping[str, Any]) -> Sample:
    """A ``samples`` row as a :class:`Sample` (its ``seq`` is dropped)."""
    return Sample(
        t_s=float(row["t_s"]),
        device_id=_text(row.get("device_id")),
        power_w=row.get("power_w"),
        energy_j=_float(row.get("energy_j")),
        utilization_pct=row.get("utilization_pct"),
        memory_used_b=row.get("memory_used_b"),
        process_energy_j=row.get("process_energy_j"),
    )


def complete_ticks(
    rows: Sequence[Mapping[str, Any]], devices: int, *, finished: bool
) -> tuple[list[Sample], int | None]:
    """The samples of every complete tick in ``rows`` (ordered by ``seq``), and the last seq.

    A tick is the samples sharing one ``t_s``. The last tick may still be
    arriving while a run is live; it counts as complete once it has a sample
    of each of the run's ``devices``, or when the run has ``finished``. The
    seq returned is where the next read should start after (None when no
    tick is complete yet).
    """
    if not rows:
        return [], None
    last_t_s = rows[-1]["t_s"]
    tail = 0
    for row in reversed(rows):
        if row["t_s"] != last_t_s:
            break
        tail += 1
    keep = len(rows) if finished or tail >= max(1, devices) else len(rows) - tail
    if keep == 0:
        return [], None
    return [sample_record(r) for r in rows[:keep]], int(rows[keep - 1]["seq"])


def run_records(rows: Iterable[Mapping[str, Any]]) -> list[Run]:
    """Several run dicts as runs, in the same order."""
    return [run_record(r) for r in rows]
