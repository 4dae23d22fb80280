"""A sweep handed to a team server: submitted, followed while it runs, compared when done.

``carbon-jupyter sweep train.py -p ... --server URL`` (and
``carbon_jupyter.sweep(..., server=URL)``) sends the sweep's document
(:class:`~carbon_jupyter.sweeps.spec.SweepSpec`) to ``POST /api/v1/sweeps``;
the server runs it on its executor. Here, :func:`follow` shows its progress
from ``GET /api/v1/sweeps/{id}`` until it ends (Ctrl-C asks the server to
cancel it: the configurations running finish, nothing more starts), and
:func:`fetch` returns its :class:`~carbon_jupyter.sweeps.results.SweepResults`
built from the runs the server holds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from carbon_jupyter.errors import CarbonError, ConfigError
from carbon_jupyter.forward.config import Destination
from carbon_jupyter.sweeps.results import SweepResults
from carbon_jupyter.sweeps.runner import Progress
from carbon_jupyter.sweeps.spec import SweepSpec

FINISHED = ("done", "cancelled", "failed")
POLL_S = 1.0
TIMEOUT_S = 30.0


class SweepServerError(CarbonError):
    """The server refused or could not take the request; the message names the fix."""


def _client(destination: Destination) -> Any:
    import httpx

    headers = {"Authorization": f"Bearer {destination.token}"} if destination.token else {}
    return httpx.Client(base_url=destination.url, headers=headers, timeout=TIMEOUT_S)


def _detail(response: Any) -> str:
    try:
        items = response.json().get("detail")
    except ValueError:
        return str(response.text[:200])
    if isinstance(items, list) and items and isinstance(items[0], dict):
        first = items[0]
        where = ".".join(str(p) for p in first.get("loc", []) if p != "body")
        return f"{where}: {first.get('msg')}" if where else str(first.get("msg"))
    return str(items)[:200]


def _call(destination: Destination, method: str, path: str, **kwargs: Any) -> Any:
    import httpx

    try:
        with _client(destination) as http:
            response = http.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise SweepServerError(
            f"{destination.url} did not answer ({type(exc).__name__}): is `carbon-jupyter serve` "
            "running there?"
        ) from None
    if response.status_code == 401:
        raise SweepServerError(
            f"{destination.url} needs a token: give --token or set CARBON_JUPYTER_TOKEN"
        )
    if response.status_code == 403:
        raise SweepServerError(
            f"{destination.url}: this token may not run sweeps; ask for an ingest token"
        )
    if response.status_code >= 400:
        raise SweepServerError(
            f"{destination.url} refused ({response.status_code}): {_detail(response)}"
        )
    return response.json()


def submit(
    destination: Destination, spec: SweepSpec, executor: str | None = None
) -> dict[str, Any]:
    """Queue the sweep on the server; its answer (``id``, ``total``, ``executor``, ``url``)."""
    body = spec.to_json()
    if executor is not None:
        body["executor"] = executor
    return dict(_call(destination, "POST", "/api/v1/sweeps", json=body))


def status(destination: Destination, sweep_id: str, metric: str | None = None) -> dict[str, Any]:
    """Where sweep ``sweep_id`` stands on the server, with its runs and comparison."""
    params = {"metric": metric} if metric else {}
    return dict(_call(destination, "GET", f"/api/v1/sweeps/{sweep_id}", params=params))


def cancel(destination: Destination, sweep_id: str) -> dict[str, Any]:
    """Ask the server to stop the sweep after the configurations running now."""
    return dict(_call(destination, "POST", f"/api/v1/sweeps/{sweep_id}/cancel"))


def resume(destination: Destination, sweep_id: str) -> dict[str, Any]:
    """Queue a finished sweep again; the server runs only what it is missing."""
    return dict(_call(destination, "POST", f"/api/v1/sweeps/{sweep_id}/resume"))


def _progress(detail: dict[str, Any], elapsed_s: float) -> Progress:
    current = (detail.get("current") or [{}])[0]
    done = detail["status"] in FINISHED
    return Progress(
        index=min(int(detail.get("finished", 0)) + (0 if done else 1), int(detail["total"])),
        total=int(detail["total"]),
        repeat=int(current.get("repeat") or 1),
        config=str(current.get("config") or detail["status"]),
        elapsed_s=float(current.get("elapsed_s") or elapsed_s),
        energy_j=float(current.get("energy_j") or 0.0),
        co2_g=float(current.get("co2_g") or 0.0),
        done=done,
        status=detail["status"],
    )


def follow(
    destination: Destination,
    sweep_id: str,
    *,
    on_progress: Callable[[Progress], None] | None = None,
    poll_s: float = POLL_S,
    timeout_s: float | None = None,
) -> dict[str, Any]:
    """Wait for the sweep to end, reporting its progress; the final answer of the server.

    The first Ctrl-C asks the server to cancel the sweep and waits for it to stop;
    a second stops waiting (the sweep goes on stopping on the server).
    """
    started = time.monotonic()
    cancelled = False
    while True:
        try:
            detail = status(destination, sweep_id)
            if on_progress is not None:
                on_progress(_progress(detail, time.monotonic() - started))
            if detail["status"] in FINISHED:
                return detail
            if timeout_s is not None and time.monotonic() - started > timeout_s:
                raise SweepServerError(
                    f"sweep {sweep_id} still {detail['status']} after {timeout_s:g} s"
                )
            time.sleep(poll_s)
        except KeyboardInterrupt:
            if cancelled:
                raise
            cancelled = True
            cancel(destination, sweep_id)


def fetch(destination: Destination, sweep_id: str, metric: str | None = None) -> SweepResults:
    """The sweep's comparison, from the runs the server holds."""
    from carbon_jupyter.forward.records import run_record

    detail = status(destination, sweep_id, metric)
    if detail["status"] == "failed" and detail.get("error"):
        raise SweepServerError(f"sweep {sweep_id} failed on the server: {detail['error']}")
    finished = [run_record(r) for r in detail.get("runs", []) if r["status"] in ("ok", "error")]
    if not finished and detail["status"] in FINISHED:
        raise ConfigError(f"sweep {sweep_id} has no finished run on {destination.url}")
    results = SweepResults(sweep_id, finished, metric or detail.get("metric"))
    results.stopped = detail["status"] == "cancelled"
    return results
