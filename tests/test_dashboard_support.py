"""Helpers for the dashboard tests: a real server with tokens, runs as a notebook sends them.

* :func:`run_dashboard` - ``carbon-jupyter serve`` on 127.0.0.1 for a fresh
  database, with the tokens of :data:`TOKENS` (or none: an open server);
  :class:`Dashboard` gives clients sending a token as the dashboard cookie
  or as a Bearer header.
* :func:`make_run`, :func:`make_samples`, :func:`send_run`,
  :func:`send_samples` - runs and samples sent through ``/api/v1`` with
  :mod:`carbon_jupyter.forward.wire` bodies.
* :func:`parse` / :func:`rows` - what a page shows: the run ids of a table's
  rows, script sources, links, form values and text.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx

from carbon_jupyter.forward.wire import run_body, samples_body
from carbon_jupyter.model import DeviceEnergy, DeviceInfo, Intensity, Run, Sample
from tests.server_fixtures import ServerHandle, make_token, start_server

GPU = DeviceInfo("gpu:0", "gpu", "NVIDIA A100-SXM4-40GB", "nvml-energy")
CPU = DeviceInfo("cpu:0", "cpu", "AMD EPYC 7B13", "cpu-model")
RAM = DeviceInfo("ram", "ram", "memory 64 GB", "ram-model")
DEVICES = (GPU, CPU, RAM)
GERMANY = Intensity(380.0, "ember", 2024, 1.2, "argument", chosen_by="argument", key="DEU")
SCRIPT_LABEL = "<script>alert(1)</script>"


# -- a real server ------------------------------------------------------------------------
@dataclass
class Dashboard:
    """A ``carbon-jupyter serve`` process on 127.0.0.1 and the tokens made for it."""

    url: str
    db: str
    tokens: dict[str, str]
    handle: ServerHandle = field(repr=False)

    def client(self, who: str | None = "admin") -> httpx.Client:
        """A client sending ``who``'s token as the dashboard cookie (no token for None)."""
        cookies = {"carbon_jupyter_token": self.tokens[who]} if who else {}
        return httpx.Client(base_url=self.url, cookies=cookies, timeout=30.0)

    def api(self, who: str) -> httpx.Client:
        """A client sending ``who``'s token as a Bearer header, as the forwarder does."""
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who in self.tokens else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30.0)


#: Tokens made for every dashboard server: name -> (user, project, scope).
TOKENS = {
    "alice": ("alice", "vision", "ingest"),
    "carol": ("carol", "vision", "ingest"),
    "bob": ("bob", "audio", "ingest"),
    "reader": ("rita", "vision", "read"),
    "admin": ("root", "ops", "admin"),
}


@contextlib.contextmanager
def run_dashboard(base: Path, *, tokens: bool = True, db: str | None = None) -> Iterator[Dashboard]:
    """A server for ``db`` (a fresh SQLite file under ``base`` by default; open without tokens)."""
    db = db or str(base / "server.db")
    made = {name: make_token(db, *spec) for name, spec in TOKENS.items()} if tokens else {}
    with start_server(base, db=db) as handle:
        yield Dashboard(handle.url, db, made, handle)


# -- runs as a notebook sends them --------------------------------------------------------
_ids = iter(range(1, 10**6))


def new_id() -> str:
    return f"0f1e2d3c-0000-4000-8000-{next(_ids):012d}"


def make_samples(ticks: int, *, first_tick: int = 1, dt_s: float = 0.5) -> list[Sample]:
    """Samples as the sampler takes them: every device on every tick, energies running totals."""
    samples = []
    for k in range(first_tick, first_tick + ticks):
        t_s = k * dt_s
        for i, device in enumerate(DEVICES):
            power_w = (250.0 if device is GPU else 40.0) + 10.0 * math.sin(k + i)
            samples.append(Sample(t_s, device.device_id, power_w, power_w * t_s))
    return samples


def recent(hours: float = 1.0) -> str:
    """A start time ``hours`` ago, as the client sends it."""
    moment = datetime.now(timezone.utc) - timedelta(hours=hours)
    return moment.isoformat(timespec="milliseconds")


def make_run(
    label: str | None,
    *,
    status: str = "ok",
    started_at: str | None = None,
    duration_s: float = 60.0,
    energy_j: float = 36_000.0,
    **fields: Any,
) -> Run:
    """A finished (or, with ``status="running"``, just started) run of the three devices."""
    running = status == "running"
    started_at = started_at or recent()
    share = (0.0, 0.0, 0.0) if running else (0.7, 0.2, 0.1)
    devices = tuple(
        DeviceEnergy(d, energy_j * part, mean_power_w=None if running else 100.0)
        for d, part in zip(DEVICES, share, strict=True)
    )
    total_j = 0.0 if running else energy_j
    run = Run(
        id=new_id(),
        label=label,
        phase="train",
        items=None,
        status=status,  # type: ignore[arg-type]
        started_at=started_at,
        ended_at=None if running else started_at,
        duration_s=0.0 if running else duration_s,
        attribution="device",
        devices=devices,
        intensity=GERMANY,
        energy_j=total_j,
        cpu_energy_j=total_j * share[1],
        gpu_energy_j=total_j * share[0],
        ram_energy_j=total_j * share[2],
        co2_g=total_j * 1.2 * 380.0 / 3.6e6,
        host="gpu-1",
        user="alice-laptop",
    )
    return replace(run, **fields)


def send_run(server: Dashboard, who: str, run: Run) -> None:
    """``PUT /api/v1/runs/{id}`` with the run's wire body."""
    with server.api(who) as api:
        answer = api.put(f"/api/v1/runs/{run.id}", json=run_body(run))
    assert answer.status_code in (200, 201), answer.text


def send_samples(server: Dashboard, who: str, run_id: str, first_seq: int, samples: list[Sample]):
    """``POST /api/v1/runs/{run_id}/samples`` with samples numbered from ``first_seq``."""
    with server.api(who) as api:
        answer = api.post(f"/api/v1/runs/{run_id}/samples", json=samples_body(first_seq, samples))
    assert answer.status_code in (200, 201), answer.text


# -- reading pages ------------------------------------------------------------------------
class _Page(HTMLParser):
    """The parts of a dashboard page the tests read: table rows, script sources, links."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, list[str]] = {}  # table id -> data-run-id of each row
        self.scripts: list[str] = []
        self.styles: list[str] = []
        self.links: list[str] = []
        self.inputs: dict[str, str] = {}
        self.texts: list[str] = []
        self._table: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table":
            self._table = a.get("id") or ""
            self.tables.setdefault(self._table, [])
        elif tag == "tr" and self._table is not None and a.get("data-run-id"):
            self.tables[self._table].append(str(a["data-run-id"]))
        elif tag == "script" and a.get("src"):
            self.scripts.append(str(a["src"]))
        elif tag == "link" and a.get("href"):
            self.styles.append(str(a["href"]))
        elif tag == "a" and a.get("href"):
            self.links.append(str(a["href"]))
        elif tag == "input" and a.get("name") and a.get("type") != "checkbox":
            self.inputs[str(a["name"])] = str(a.get("value") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if data.strip():
            self.texts.append(data.strip())


def parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    return page


def rows(text: str, table: str = "runs-table") -> list[str]:
    """The run ids of the rows of ``table`` in a page."""
    return parse(text).tables.get(table, [])
