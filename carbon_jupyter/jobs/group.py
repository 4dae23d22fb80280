"""A distributed job as one run: its parts grouped, summed once per device, by host.

The parts of a job are runs tagged ``job=ID``: one per rank (``part=rank``:
the GPUs that rank uses) and one per host and holder (``part=host``: the
host's CPU packages and RAM, measured by one rank at a time). :func:`group`
adds them up:

- ``cpu_energy_j`` and ``ram_energy_j`` come from the host parts only (each
  host's shared devices counted once, whichever rank measured them when);
- ``gpu_energy_j`` from the parts that measured GPUs (the rank parts; the host
  parts of a Dask cluster, which measure every device of their host), each GPU
  once per host (two parts that both measured one GPU count it once: the
  larger figure);
- ``co2_g`` from each part's own factor and PUE (hosts may sit in different
  grids);
- ``status``: ``running`` while any part runs; else ``error`` or
  ``interrupted`` if a rank part ended so, ``lost`` if a part was lost (its
  process died; its energy up to its last stored sample is kept), else ``ok``;
- each rank part's ``cpu_share``: its process tree's CPU seconds over its
  host's busy CPU seconds during its run (the tags that
  :mod:`carbon_jupyter.jobs.share` stores), and ``cpu_process_energy_j``: that
  share of the CPU energy its host's parts measured over the rank's span (a
  host part that overlaps it in part counts pro rata of time). The share of busy
  time over the whole run is applied to the whole energy, as process
  attribution does interval by interval: a rank busy at the start and idle
  later gets the run's average, not the energy of its busy moments. Should the
  ranks of a host (runs of different spans) add up to more than its CPU energy,
  their energies are scaled down to it. ``HostTotals.cpu_process_energy_j``
  adds up its ranks'; the rest is the host's other processes and idle time not
  spent by any rank.

It is a pure function of the runs, so the store (:func:`load`), the server
and every view group a job the same way.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from carbon_jupyter.errors import ConfigError
from carbon_jupyter.jobs.share import read_share
from carbon_jupyter.measure.integrate import co2_g as co2_of
from carbon_jupyter.model import Run

#: Worst first: the status a job takes from its parts.
_STATUS_ORDER = ("running", "error", "interrupted", "lost", "ok")


@dataclass(frozen=True)
class JobPart:
    """One part of a job: a rank's run or a host part."""

    run_id: str
    kind: str  # "rank" or "host"
    host: str
    rank: int | None
    status: str
    started_at: str
    ended_at: str | None
    duration_s: float
    energy_j: float
    cpu_energy_j: float
    gpu_energy_j: float
    ram_energy_j: float
    co2_g: float
    #: ``(device_id, kind, method, energy_j)`` of each device the part measured.
    devices: tuple[tuple[str, str, str, float], ...] = ()
    error: str | None = None
    #: A rank's CPU seconds over its host's busy CPU seconds during its run (0..1);
    #: None for a host part, or when unknown (a rank still running, or lost).
    cpu_share: float | None = None
    #: ``cpu_share`` of its host's CPU energy over the rank's span (None as above).
    cpu_process_energy_j: float | None = None


@dataclass
class HostTotals:
    """What one host of the job drew: its shared devices once, its GPUs once."""

    host: str
    energy_j: float = 0.0
    cpu_energy_j: float = 0.0
    gpu_energy_j: float = 0.0
    ram_energy_j: float = 0.0
    co2_g: float = 0.0
    ranks: list[int] = field(default_factory=list)
    #: ``{device_id: {"kind", "method", "energy_j"}}``, each device once.
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: The CPU energy its ranks used, by their CPU shares (those whose share is known).
    cpu_process_energy_j: float = 0.0


@dataclass
class Job:
    """A distributed job as one run; see the module docstring."""

    job_id: str
    status: str
    label: str | None
    phase: str | None
    started_at: str
    ended_at: str | None
    duration_s: float
    energy_j: float
    cpu_energy_j: float
    gpu_energy_j: float
    ram_energy_j: float
    co2_g: float
    hosts: dict[str, HostTotals]
    parts: list[JobPart]
    world_size: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The job as plain data (the API's and ``carbon-jupyter show --json``'s)."""
        return {
            "job": self.job_id, "status": self.status, "label": self.label, "phase": self.phase,
            "started_at": self.started_at, "ended_at": self.ended_at,
            "duration_s": self.duration_s, "energy_j": self.energy_j,
            "cpu_energy_j": self.cpu_energy_j, "gpu_energy_j": self.gpu_energy_j,
            "ram_energy_j": self.ram_energy_j, "co2_g": self.co2_g,
            "world_size": self.world_size,
            "hosts": {name: vars(h) for name, h in self.hosts.items()},
            "parts": [vars(p) for p in self.parts],
        }  # fmt: skip

    def __repr__(self) -> str:
        from carbon_jupyter.jobs.show import job_text

        return job_text(self)


def _part(run: Run) -> JobPart:
    kind = run.tags.get("part", "rank")
    rank_text = run.tags.get("rank")
    counted = [d for d in run.devices if kind == "host" or d.device.kind == "gpu"]
    per_kind = {"cpu": 0.0, "gpu": 0.0, "ram": 0.0}
    for d in counted:
        per_kind[d.device.kind] += d.energy_j
    energy_j = sum(per_kind.values())
    return JobPart(
        run_id=run.id,
        kind=kind,
        host=run.host or "?",
        rank=int(rank_text) if rank_text and rank_text.lstrip("-").isdigit() else None,
        status=run.status,
        started_at=run.started_at,
        ended_at=run.ended_at,
        duration_s=run.duration_s,
        energy_j=energy_j,
        cpu_energy_j=per_kind["cpu"],
        gpu_energy_j=per_kind["gpu"],
        ram_energy_j=per_kind["ram"],
        co2_g=co2_of(energy_j, run.intensity.intensity_g_per_kwh, run.intensity.pue),
        devices=tuple(
            (d.device.device_id, d.device.kind, d.device.method, d.energy_j) for d in counted
        ),
        error=run.error,
    )


def _gpu_key(run: Run, device_id: str) -> str:
    for d in run.devices:
        if d.device.device_id == device_id and d.device.uuid:
            return d.device.uuid
    return device_id


def _status(parts: Sequence[JobPart]) -> str:
    seen = {p.status for p in parts if p.kind == "rank"} | {
        p.status for p in parts if p.kind == "host" and p.status in ("running", "lost")
    }
    for status in _STATUS_ORDER:
        if status in seen:
            return status
    return "ok"


def group(job_id: str, runs: Iterable[Run]) -> Job:
    """The job ``job_id`` from its parts (runs tagged ``job=job_id``)."""
    chosen = sorted((r for r in runs if r.tags.get("job") == job_id), key=lambda r: r.started_at)
    if not chosen:
        raise ConfigError(f"no runs of job {job_id!r}: check the job id (`carbon-jupyter runs`)")
    parts = _with_cpu_shares(chosen, [_part(r) for r in chosen])
    hosts: dict[str, HostTotals] = {}
    best_gpu: dict[tuple[str, str], tuple[float, JobPart, str, str, Run]] = {}
    for run, part in zip(chosen, parts, strict=True):
        totals = hosts.setdefault(part.host, HostTotals(part.host))
        if part.kind == "rank" and part.rank is not None:
            totals.ranks.append(part.rank)
        if part.cpu_process_energy_j is not None:
            totals.cpu_process_energy_j += part.cpu_process_energy_j
        for device_id, kind, method, energy_j in part.devices:
            if kind != "gpu":  # a host part's CPU or RAM (a rank part counts only GPUs)
                entry = totals.devices.setdefault(
                    device_id, {"kind": kind, "method": method, "energy_j": 0.0}
                )
                entry["energy_j"] += energy_j
                factor = co2_of(energy_j, run.intensity.intensity_g_per_kwh, run.intensity.pue)
                totals.co2_g += factor
                if kind == "cpu":
                    totals.cpu_energy_j += energy_j
                else:
                    totals.ram_energy_j += energy_j
                continue
            key = (part.host, _gpu_key(run, device_id))
            if key not in best_gpu or energy_j > best_gpu[key][0]:
                best_gpu[key] = (energy_j, part, device_id, method, run)
    shared_ids = Counter((host, found[2]) for (host, _), found in best_gpu.items())
    for (host, gpu), (energy_j, _, device_id, method, run) in best_gpu.items():
        totals = hosts[host]
        # Ranks that each see one GPU all call it gpu:0: the GPU's UUID tells them apart.
        name = device_id if shared_ids[(host, device_id)] == 1 else f"{device_id} {gpu}"
        totals.devices[name] = {"kind": "gpu", "method": method, "energy_j": energy_j}
        totals.gpu_energy_j += energy_j
        totals.co2_g += co2_of(energy_j, run.intensity.intensity_g_per_kwh, run.intensity.pue)
    for totals in hosts.values():
        totals.energy_j = totals.cpu_energy_j + totals.gpu_energy_j + totals.ram_energy_j
        totals.ranks.sort()
    ended = [p.ended_at for p in parts if p.ended_at]
    status = _status(parts)
    first = chosen[0]
    world = first.tags.get("world_size")
    return Job(
        job_id=job_id,
        status=status,
        label=first.label,
        phase=first.phase,
        started_at=first.started_at,
        ended_at=max(ended) if ended and status != "running" else None,
        duration_s=max(_end_s(r, chosen[0]) for r in chosen),
        energy_j=sum(h.energy_j for h in hosts.values()),
        cpu_energy_j=sum(h.cpu_energy_j for h in hosts.values()),
        gpu_energy_j=sum(h.gpu_energy_j for h in hosts.values()),
        ram_energy_j=sum(h.ram_energy_j for h in hosts.values()),
        co2_g=sum(h.co2_g for h in hosts.values()),
        hosts=hosts,
        parts=parts,
        world_size=int(world) if world and world.isdigit() else None,
    )


def _span_s(part: JobPart) -> tuple[float, float] | None:
    """(start, end) of ``part`` in seconds since the epoch; None if its start is unreadable."""
    from carbon_jupyter.store.rows import parse_time

    try:
        start_s = parse_time(part.started_at).timestamp()
    except ValueError:
        return None
    return start_s, start_s + max(0.0, part.duration_s)


#: A host part's span (start and end, in seconds since the epoch) and its CPU energy.
_Measured = tuple[tuple[float, float], float]


def _host_cpu_j(span: tuple[float, float], host_parts: Sequence[_Measured]) -> float:
    """The CPU energy ``host_parts`` measured over ``span``, pro rata of time."""
    total_j = 0.0
    for (start_s, end_s), cpu_j in host_parts:
        overlap_s = min(span[1], end_s) - max(span[0], start_s)
        if overlap_s > 0:
            total_j += cpu_j * min(1.0, overlap_s / (end_s - start_s))
    return total_j


def _with_cpu_shares(runs: Sequence[Run], parts: Sequence[JobPart]) -> list[JobPart]:
    """``parts`` with each rank's CPU share and the CPU energy it stands for (module docstring)."""
    measured: dict[str, list[_Measured]] = {}
    cap_j: dict[str, float] = {}
    for part in parts:
        if part.kind == "host":
            cap_j[part.host] = cap_j.get(part.host, 0.0) + part.cpu_energy_j
            span = _span_s(part)
            if span is not None and span[1] > span[0]:
                measured.setdefault(part.host, []).append((span, part.cpu_energy_j))
    out = list(parts)
    spent: dict[str, list[int]] = {}
    for n, (run, part) in enumerate(zip(runs, parts, strict=True)):
        share = read_share(run.tags) if part.kind == "rank" else None
        if share is None:
            continue
        energy_j = None
        if part.host in cap_j:
            span = _span_s(part)
            on_host = measured.get(part.host, [])
            energy_j = share * _host_cpu_j(span, on_host) if span is not None else 0.0
            spent.setdefault(part.host, []).append(n)
        out[n] = replace(part, cpu_share=share, cpu_process_energy_j=energy_j)
    for host, ranks in spent.items():
        spent_j = sum(out[n].cpu_process_energy_j or 0.0 for n in ranks)
        if spent_j > cap_j[host]:  # ranks of different spans: scaled down to the host's
            for n in ranks:
                energy_j = (out[n].cpu_process_energy_j or 0.0) * cap_j[host] / spent_j
                out[n] = replace(out[n], cpu_process_energy_j=energy_j)
    return out


def _end_s(run: Run, first: Run) -> float:
    """Seconds from the job's first start to the end of ``run`` (as far as it got)."""
    from carbon_jupyter.store.rows import parse_time

    try:
        offset = (parse_time(run.started_at) - parse_time(first.started_at)).total_seconds()
    except ValueError:
        offset = 0.0
    return max(0.0, offset) + run.duration_s


def load(job_id: str, store_path: str | None = None) -> Job:
    """Job ``job_id`` from the store (its parts from every process that shares the file)."""
    from carbon_jupyter.errors import StoreError
    from carbon_jupyter.store import open_store

    store = open_store(store_path, create=False)
    # Parts whose process died (a killed rank) are lost now, not at the next periodic check.
    with contextlib.suppress(StoreError):
        store.mark_lost_runs()
    return group(job_id, store.iter_runs(tag={"job": job_id}))
