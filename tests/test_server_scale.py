"""More than one server process: two servers on one PostgreSQL, and ``--workers 2``.

Eight clients ingest at once through two ``carbon-jupyter serve`` processes
sharing a PostgreSQL database, each run's requests spread over both, some
sent twice; afterwards both servers answer the same totals, and they are the
sums of what was sent. With ``--workers 2``, ``/metrics`` gives the same
counts whichever worker answers.
"""

from __future__ import annotations

import re
import threading
import uuid
from pathlib import Path

import httpx
import pytest

from tests.server_fixtures import (
    bearer,
    make_run,
    make_token,
    run_body,
    samples_body,
    start_server,
)

pytestmark = pytest.mark.slow

CLIENTS = 8
RUNS_PER_CLIENT = 3
BATCHES = 4
BATCH = 50


def test_two_servers_on_one_postgresql_answer_the_same_totals(
    postgres_url: str, tmp_path: Path
) -> None:
    users = [("alice", "vision"), ("bob", "vision"), ("carol", "audio"), ("dan", "audio")]
    tokens = {u: make_token(postgres_url, u, p, "ingest") for u, p in users}
    admin = bearer(make_token(postgres_url, "root", "ops", "admin"))
    first = start_server(
        tmp_path / "a" if (tmp_path / "a").mkdir() is None else tmp_path, db=postgres_url
    )
    second = start_server(
        tmp_path / "b" if (tmp_path / "b").mkdir() is None else tmp_path, db=postgres_url
    )
    servers = [first.url, second.url]
    errors: list[str] = []
    sent: dict[str, list[str]] = {u: [] for u, _ in users}

    def client(n: int) -> None:
        user = users[n % len(users)][0]
        headers = bearer(tokens[user])
        with httpx.Client(headers=headers, timeout=60) as http:
            for r in range(RUNS_PER_CLIENT):
                run_id = str(uuid.uuid4())
                here, there = servers[(n + r) % 2], servers[(n + r + 1) % 2]
                start = run_body(make_run(run_id, status="running", label=f"client-{n}"))
                final = run_body(
                    make_run(run_id, label=f"client-{n}", energy_j=(10.0 * n, 1.0, 0.5))
                )
                steps = [
                    http.put(f"{here}/api/v1/runs/{run_id}", json=start),
                    *(
                        http.post(
                            f"{servers[b % 2]}/api/v1/runs/{run_id}/samples",
                            json=samples_body(1 + b * BATCH, BATCH),
                        )
                        for b in range(BATCHES)
                    ),
                    # the last batch again, through the other server: stored once
                    http.post(
                        f"{there}/api/v1/runs/{run_id}/samples",
                        json=samples_body(1 + (BATCHES - 1) * BATCH, BATCH),
                    ),
                    http.put(f"{there}/api/v1/runs/{run_id}", json=final),
                    http.put(f"{here}/api/v1/runs/{run_id}", json=start),  # a late start
                ]
                errors.extend(
                    f"{s.request.url}: {s.status_code} {s.text}"
                    for s in steps
                    if s.status_code != 200
                )
                sent[user].append(run_id)

    try:
        threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []

        answers = [
            httpx.get(f"{url}/api/v1/totals", params={"by": "user"}, headers=admin).json()
            for url in servers
        ]
        assert answers[0] == answers[1]
        got = {row["user"]: row for row in answers[0]["totals"]}
        for n in range(CLIENTS):
            user = users[n % len(users)][0]
            assert got[user]["runs"] == len(sent[user])
        expected_j = sum(RUNS_PER_CLIENT * (10.0 * n + 1.5) for n in range(CLIENTS))
        assert sum(row["energy_j"] for row in got.values()) == pytest.approx(expected_j)
        statuses = httpx.get(f"{first.url}/api/v1/totals", params={"by": "status"}, headers=admin)
        assert [(r["status"], r["runs"]) for r in statuses.json()["totals"]] == [
            ("ok", CLIENTS * RUNS_PER_CLIENT)
        ]
        for run_id in sent["alice"]:
            for url in servers:
                samples = httpx.get(f"{url}/api/v1/runs/{run_id}/samples", headers=admin).json()
                assert [s["seq"] for s in samples["samples"]] == list(range(1, BATCHES * BATCH + 1))
    finally:
        first.stop()
        second.stop()


def _metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line))
        if line.split("{")[0].split(" ")[0] == name and all(
            found.get(k) == v for k, v in labels.items()
        ):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} {labels} not in /metrics")


def test_metrics_add_up_over_workers_and_count_refusals(tmp_path: Path) -> None:
    requests = 40
    with start_server(tmp_path, workers=2) as server:
        run_id = str(uuid.uuid4())
        assert httpx.put(
            f"{server.url}/api/v1/runs/{run_id}", json=run_body(make_run(run_id))
        ).is_success
        for n in range(requests):  # a new connection each: the workers share them out
            answer = httpx.post(
                f"{server.url}/api/v1/runs/{run_id}/samples", json=samples_body(1 + 10 * n, 10)
            )
            assert answer.json()["stored"] == 10
        unknown = str(uuid.uuid4())
        for _ in range(3):
            httpx.post(f"{server.url}/api/v1/runs/{unknown}/samples", json=samples_body(1, 1))
        httpx.put(f"{server.url}/api/v1/runs/{unknown}", json={"wire_version": 1})
        scrapes = [httpx.get(f"{server.url}/metrics").text for _ in range(8)]

    route = "/api/v1/runs/{run_id}/samples"
    for text in scrapes:
        assert _metric(text, "carbon_jupyter_samples_ingested_total") == requests * 10
        assert (
            _metric(text, "carbon_jupyter_requests_total", route=route, method="POST", status="200")
            == requests
        )
        assert _metric(
            text, "carbon_jupyter_energy_joules", user="local", label="train-model", kind="gpu"
        ) == pytest.approx(200.0)
        assert _metric(text, "carbon_jupyter_runs", project="default", status="ok") == 1
        refused = "carbon_jupyter_rejected_requests_total"
        assert _metric(text, refused, route=route, reason="not_found") == 3
        assert _metric(text, refused, route="/api/v1/runs/{run_id}", reason="validation") == 1


def test_a_lost_database_is_503_never_500(postgres_url: str, tmp_path: Path) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(postgres_url)
    maintenance = url.set(database="postgres").render_as_string(hide_password=False)

    def allow_connections(allowed: bool) -> None:
        with psycopg.connect(maintenance, autocommit=True) as c:
            c.execute(f'ALTER DATABASE "{url.database}" WITH ALLOW_CONNECTIONS {allowed}')
            if not allowed:
                c.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                    (url.database,),
                )

    with start_server(tmp_path, db=postgres_url) as server:
        run_id = str(uuid.uuid4())
        assert httpx.put(
            f"{server.url}/api/v1/runs/{run_id}", json=run_body(make_run(run_id))
        ).is_success
        allow_connections(False)
        try:
            health = httpx.get(f"{server.url}/healthz")
            assert health.status_code == 503 and health.json() == {"status": "unavailable"}
            for answer in (
                httpx.get(f"{server.url}/api/v1/runs"),
                httpx.post(f"{server.url}/api/v1/runs/{run_id}/samples", json=samples_body(1, 5)),
                httpx.put(f"{server.url}/api/v1/runs/{run_id}", json=run_body(make_run(run_id))),
                httpx.get(f"{server.url}/metrics"),
            ):
                assert answer.status_code == 503, answer.text
                assert answer.json()["detail"][0]["type"] == "database_unavailable"
        finally:
            allow_connections(True)
        assert httpx.get(f"{server.url}/healthz").status_code == 200
