"""Shared parts of the forwarding tests (no tests here): reading a team server and a store file."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from carbon_jupyter.forward import config, registry
from tests.server_fixtures import bearer


@pytest.fixture(autouse=True)
def _forwarding_ends_with_the_test() -> Iterator[None]:
    """Every sender a test started is stopped; ``%carbon server`` choices are forgotten."""
    yield
    registry.stop_all(timeout_s=3.0)
    config.follow_environment()


def server_runs(url: str, token: str | None = None, **params: Any) -> list[dict[str, Any]]:
    """Every run the server lists (to the token's eyes), newest first."""
    headers = bearer(token) if token else {}
    answer = httpx.get(f"{url}/api/v1/runs", params={"limit": 1000, **params}, headers=headers)
    answer.raise_for_status()
    runs: list[dict[str, Any]] = answer.json()["runs"]
    return runs


def server_run(url: str, run_id: str, token: str | None = None) -> dict[str, Any] | None:
    headers = bearer(token) if token else {}
    answer = httpx.get(f"{url}/api/v1/runs/{run_id}", headers=headers)
    if answer.status_code == 404:
        return None
    answer.raise_for_status()
    found: dict[str, Any] = answer.json()
    return found


def server_samples(url: str, run_id: str, token: str | None = None) -> list[dict[str, Any]]:
    headers = bearer(token) if token else {}
    answer = httpx.get(f"{url}/api/v1/runs/{run_id}/samples", headers=headers)
    if answer.status_code == 404:
        return []
    answer.raise_for_status()
    samples: list[dict[str, Any]] = answer.json()["samples"]
    return samples


def local_samples(db: Path, run_id: str) -> list[tuple[Any, ...]]:
    """``(seq, t_s, device_id, power_w, energy_j)`` of a run in the local store, by seq."""
    conn = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT seq, t_s, device_id, power_w, energy_j FROM samples WHERE run_id = ? "
            "ORDER BY seq",
            (run_id,),
        ).fetchall()
    finally:
        conn.close()
    return [tuple(r) for r in rows]


def as_rows(samples: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Server samples in the shape of :func:`local_samples`."""
    return [(s["seq"], s["t_s"], s["device_id"], s["power_w"], s["energy_j"]) for s in samples]


def outbox_rows(db: Path) -> list[dict[str, Any]]:
    """The outbox of the store file at ``db``, oldest first."""
    conn = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM outbox ORDER BY id")]
    finally:
        conn.close()


def wait_for(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """``check()`` once it is truthy; fails naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout_s} s")
        time.sleep(0.05)
