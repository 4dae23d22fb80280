"""``/metrics``: what the team server holds and what it has received, for Prometheus.

Two kinds of figures:

Totals from the database, computed when Prometheus scrapes (so every worker
and every server process on one database answers the same):

``carbon_jupyter_energy_joules{user, project, label, kind}``
    energy of the stored runs by device kind (``cpu``, ``gpu``, ``ram``);
``carbon_jupyter_co2_grams{user, project, label, kind}``
    their CO2, shared among the kinds in proportion to their energy;
``carbon_jupyter_runs{project, status}``
    how many runs are in each status.

Counters of this server's requests, kept in prometheus_client's
multiprocess mode when ``PROMETHEUS_MULTIPROC_DIR`` is set (``carbon-jupyter
serve`` sets it to a fresh folder), so they add up over ``--workers``:

``carbon_jupyter_requests_total{route, method, status}``
    API requests answered;
``carbon_jupyter_samples_ingested_total``
    samples stored (a resent sample is not counted twice);
``carbon_jupyter_rejected_requests_total{route, reason}``
    requests refused: ``auth`` (401/403), ``validation`` (400/422),
    ``too_large`` (413), ``conflict`` (409), ``not_found`` (404).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import Engine, case, func, select

from carbon_jupyter.server.db.schema import projects, runs, users

#: Whether the counters live in files shared by the workers (decided when prometheus_client
#: was first imported, which is when its value class was chosen).
MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

# The ``*_created`` series would only tell when each worker started counting.
disable_created_metrics()  # type: ignore[no-untyped-call]
_COUNTERS = CollectorRegistry(auto_describe=True)
REQUESTS = Counter(
    "carbon_jupyter_requests",
    "API requests answered, by route, method and status code.",
    ["route", "method", "status"],
    registry=_COUNTERS,
)
SAMPLES = Counter(
    "carbon_jupyter_samples_ingested",
    "Samples stored (resent samples are not counted again).",
    registry=_COUNTERS,
)
REJECTED = Counter(
    "carbon_jupyter_rejected_requests",
    "Requests refused, by route and reason (auth, validation, too_large, conflict, not_found).",
    ["route", "reason"],
    registry=_COUNTERS,
)

_REASONS = {
    400: "validation",
    401: "auth",
    403: "auth",
    404: "not_found",
    409: "conflict",
    413: "too_large",
    422: "validation",
}


def count_request(route: str, method: str, status: int) -> None:
    """Count one answered request, and its refusal if it was refused."""
    REQUESTS.labels(route, method, str(status)).inc()
    reason = _REASONS.get(status)
    if reason is not None:
        REJECTED.labels(route, reason).inc()


class DatabaseCollector(Collector):
    """Energy, CO2 and run counts read from the database at each scrape."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        energy = GaugeMetricFamily(
            "carbon_jupyter_energy_joules",
            "Energy of the stored runs, by user, project, label and device kind.",
            labels=["user", "project", "label", "kind"],
        )
        co2 = GaugeMetricFamily(
            "carbon_jupyter_co2_grams",
            "CO2 of the stored runs, by user, project, label and device kind.",
            labels=["user", "project", "label", "kind"],
        )
        count = GaugeMetricFamily(
            "carbon_jupyter_runs",
            "Stored runs, by project and status.",
            labels=["project", "status"],
        )
        kinds = {"cpu": runs.c.cpu_energy_j, "gpu": runs.c.gpu_energy_j, "ram": runs.c.ram_energy_j}
        total = runs.c.cpu_energy_j + runs.c.gpu_energy_j + runs.c.ram_energy_j
        sums: list[Any] = []
        for kind, column in kinds.items():
            sums.append(func.sum(column).label(f"{kind}_j"))
            share = case((total > 0, runs.c.co2_g * column / total), else_=0.0)
            sums.append(func.sum(share).label(f"{kind}_g"))
        by_label = (
            select(
                users.c.name.label("user"), projects.c.name.label("project"), runs.c.label, *sums
            )
            .select_from(
                runs.join(users, users.c.id == runs.c.user_id).join(
                    projects, projects.c.id == runs.c.project_id
                )
            )
            .group_by(users.c.name, projects.c.name, runs.c.label)
        )
        by_status = (
            select(projects.c.name.label("project"), runs.c.status, func.count().label("n"))
            .select_from(runs.join(projects, projects.c.id == runs.c.project_id))
            .group_by(projects.c.name, runs.c.status)
        )
        with self.engine.connect() as conn:
            for row in conn.execute(by_label):
                m = row._mapping
                for kind in kinds:
                    names = [row.user, row.project, row.label or "", kind]
                    energy.add_metric(names, float(m[f"{kind}_j"] or 0.0))
                    co2.add_metric(names, float(m[f"{kind}_g"] or 0.0))
            for row in conn.execute(by_status):
                count.add_metric([row.project, row.status], float(row.n))
        yield energy
        yield co2
        yield count


class _Counters(Collector):
    """This process's counters (when not in multiprocess mode)."""

    def collect(self) -> Iterator[Metric]:
        yield from _COUNTERS.collect()


def exposition(engine: Engine) -> bytes:
    """The Prometheus text of every figure above (may raise SQLAlchemy's errors)."""
    registry = CollectorRegistry(auto_describe=False)
    if MULTIPROCESS:
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_Counters())
    registry.register(DatabaseCollector(engine))
    return generate_latest(registry)
