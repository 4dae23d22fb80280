"""What each sidebar route reads from the run store, as plain JSON-ready dicts.

These functions are blocking (SQLite); the handlers run them on a worker
thread. They take the :class:`~carbon_jupyter.store.Store` to read, so they
can be used and tested without a server.

A kernel's *current run* is its newest run still ``running``, else its newest
run of any status (the cell that ran last). A kernel's *session* is every run
recorded with its kernel id; the id survives a kernel restart, so the session
totals do too.

Before the first tracked run there is no store file, and the server does not
create one: each function then gets a :class:`NoStore` and answers as for an
empty store (no runs, zero totals), so a fresh JupyterLab shows no error. A
filter that cannot be used is refused all the same, and asking for one run
says that there is no store yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from carbon_jupyter.errors import CarbonError
from carbon_jupyter.model import Run
from carbon_jupyter.serverext.payload import (
    finite,
    intensity_json,
    job_json,
    run_json,
    sample_json,
)
from carbon_jupyter.store import RunFilter, RunNotFoundError, Store

TOTAL_FIELDS = (
    "count",
    "duration_s",
    "energy_j",
    "cpu_energy_j",
    "gpu_energy_j",
    "ram_energy_j",
    "co2_g",
)


@dataclass(frozen=True)
class NoStore:
    """Stands for the store at ``path`` before it exists: every read finds nothing."""

    path: Path


def list_runs(store: Store | NoStore, limit: int, **filters: Any) -> dict[str, Any]:
    """Runs matching ``filters`` (see :meth:`Store.runs`), newest first."""
    if isinstance(store, NoStore):
        RunFilter(**filters).where()  # a filter that cannot be used is still refused
        return {"runs": []}
    runs = store.runs(limit=limit, **filters)
    return {"runs": _jobs_as_one(store, runs)}


def _jobs_as_one(store: Store, runs: list[Run]) -> list[dict[str, Any]]:
    """The runs as the sidebar lists them: the parts of a distributed job as one entry."""
    from carbon_jupyter.jobs.group import group

    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for run in runs:
        job_id = run.tags.get("job")
        if job_id is None:
            out.append(run_json(run))
        elif job_id not in seen:
            seen.add(job_id)
            out.append(job_json(group(job_id, store.iter_runs(tag={"job": job_id}))))
    return out


def one_run(store: Store | NoStore, run_id: str, with_samples: bool) -> dict[str, Any]:
    """One run by id or unique id prefix, with its samples when asked."""
    if isinstance(store, NoStore):
        raise RunNotFoundError(
            f"No run with id {run_id!r}: there is no run store at {store.path} yet (any "
            "tracked run creates it)."
        )
    try:
        run = store.get_run(run_id)
    except RunNotFoundError:
        job = _job(store, run_id)
        if job is None:
            raise
        return {"run": job, "samples": [], "cursor": 0} if with_samples else {"run": job}
    payload: dict[str, Any] = {"run": run_json(run)}
    if with_samples:
        found = store.samples(run.id)
        payload["samples"] = [sample_json(s) for s in found]
        payload["cursor"] = len(found)
    return payload


def _job(store: Store, job_id: str) -> dict[str, Any] | None:
    """Job ``job_id`` as one entry, when the store has parts of it."""
    from carbon_jupyter.jobs.group import group

    parts = list(store.iter_runs(tag={"job": job_id}))
    return job_json(group(job_id, parts)) if parts else None


def current_run(store: Store, kernel_id: str) -> Run | None:
    running = store.runs(kernel=kernel_id, status="running", limit=1)
    if running:
        return running[0]
    latest = store.runs(kernel=kernel_id, limit=1)
    return latest[0] if latest else None


def live(
    store: Store | NoStore, kernel_id: str, run_id: str | None, since: int, max_samples: int
) -> dict[str, Any]:
    """The kernel's current run and its samples after the cursor ``since``.

    A client sends back the ``run`` id and ``cursor`` it last received. When the
    current run is another one (a new cell started), or more than ``max_samples``
    samples arrived since, the answer starts over (``reset: true``) with at most
    the latest ``max_samples`` samples.
    """
    if isinstance(store, NoStore) or (run := current_run(store, kernel_id)) is None:
        return {"kernel": kernel_id, "run": None, "live": False, "reset": True,
                "samples": [], "cursor": 0}  # fmt: skip
    start = since if run.id == run_id else 0
    start = max(start, store.last_seq(run.id) - max_samples, 0)
    found = store.samples(run.id, since_seq=start)
    return {
        "kernel": kernel_id,
        "run": run_json(run),
        "live": run.status == "running",
        "reset": run.id != run_id or start != since,
        "samples": [sample_json(s) for s in found],
        "cursor": start + len(found),
    }


def kernel_totals(store: Store | NoStore, kernel_id: str) -> dict[str, Any]:
    """Count, duration, energy and CO2 of every run of the kernel, and the intensity in use.

    The intensity is the latest run's; before the first run it is what the
    server's own settings resolve to (the kernel usually inherits them).
    """
    sums = dict.fromkeys(TOTAL_FIELDS, 0.0)
    latest: list[Run] = []
    running: list[Run] = []
    if not isinstance(store, NoStore):
        for group in store.totals(by="phase", kernel=kernel_id):
            for name in TOTAL_FIELDS:
                sums[name] += group[name] or 0.0
        latest = store.runs(kernel=kernel_id, limit=1)
        running = store.runs(kernel=kernel_id, status="running", limit=1)
    intensity: dict[str, Any] | None
    if latest:
        intensity, intensity_from = intensity_json(latest[0].intensity), "latest run"
    else:
        intensity, intensity_from = _default_intensity(), "server settings"
    return {
        "kernel": kernel_id,
        **{name: finite(value) for name, value in sums.items()},
        "count": int(sums["count"]),
        "running": bool(running),
        "notebook": latest[0].notebook if latest else None,
        "estimated": any(r.estimated for r in latest),
        "intensity": intensity,
        "intensity_from": intensity_from if intensity else None,
    }


def _default_intensity() -> dict[str, Any] | None:
    from carbon_jupyter.intensity import resolve

    try:
        return intensity_json(resolve())
    except CarbonError:
        return None


def forwarding(store: Store | NoStore) -> dict[str, Any]:
    """Forwarding from the store file to team servers: the server configured for this
    Jupyter server (``CARBON_JUPYTER_SERVER``, which its kernels inherit) and, per server
    the file's outbox knows, the requests waiting and set aside, the last delivery and
    the last error (see :mod:`carbon_jupyter.forward.status`).
    """
    from carbon_jupyter.forward.status import report

    return report(store.path).to_json()
