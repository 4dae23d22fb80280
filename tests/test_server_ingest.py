"""Ingest into a real ``carbon-jupyter serve``, on SQLite and on PostgreSQL.

A run arrives when it starts, its samples in batches while it runs and its
final figures when it ends; every request may be repeated (a client retrying
after a lost answer) and nothing is stored twice. Bad input is a 4xx naming
the field, and nothing of it is stored.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server_fixtures import (
    ServerHandle,
    make_run,
    postgres_database,
    run_body,
    samples_body,
    start_server,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerHandle]:
    if request.param == "sqlite":
        yield request.getfixturevalue("open_server")
        return
    folder = tmp_path_factory.mktemp(f"ingest-{request.param}")
    with postgres_database() as url, start_server(folder, db=url) as handle:
        yield handle


@pytest.fixture
def client(server: ServerHandle) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def _counts(client: httpx.Client, run_id: str) -> tuple[int, int]:
    """How many runs the server holds, and how many samples of ``run_id``."""
    total = client.get("/api/v1/runs", params={"limit": 1}).json()["total"]
    found = client.get(f"/api/v1/runs/{run_id}/samples")
    return total, len(found.json()["samples"]) if found.status_code == 200 else -1


def test_a_run_start_samples_and_end_each_stored_once_however_often_sent(
    client: httpx.Client,
) -> None:
    run_id = str(uuid.uuid4())
    start = run_body(make_run(run_id, status="running"))
    final = run_body(make_run(run_id, status="ok"))

    assert client.put(f"/api/v1/runs/{run_id}", json=start).json()["result"] == "created"
    assert client.put(f"/api/v1/runs/{run_id}", json=start).status_code == 200  # a retry
    live = client.get(f"/api/v1/runs/{run_id}").json()
    assert live["status"] == "running" and [d["device_id"] for d in live["devices"]] == [
        "cpu:0",
        "gpu:0",
        "ram",
    ]

    first = client.post(f"/api/v1/runs/{run_id}/samples", json=samples_body(1, 100))
    assert first.json() == {"received": 100, "stored": 100}
    again = client.post(f"/api/v1/runs/{run_id}/samples", json=samples_body(1, 100))
    assert again.json() == {"received": 100, "stored": 0}
    overlap = client.post(f"/api/v1/runs/{run_id}/samples", json=samples_body(51, 100))
    assert overlap.json() == {"received": 100, "stored": 50}

    assert client.put(f"/api/v1/runs/{run_id}", json=final).json()["result"] == "updated"
    assert client.put(f"/api/v1/runs/{run_id}", json=final).json()["result"] == "updated"
    late_start = client.put(f"/api/v1/runs/{run_id}", json=start)
    assert late_start.status_code == 200 and late_start.json()["result"] == "unchanged"

    run = client.get(f"/api/v1/runs/{run_id}").json()
    assert run["status"] == "ok"
    assert run["energy_j"] == pytest.approx(310.0)
    assert run["gpu_energy_j"] == pytest.approx(200.0)
    assert run["co2_g"] == pytest.approx(310.0 * 1.2 * 400 / 3.6e6)
    assert run["user"] == "local" and run["project"] == "default"
    assert run["client_user"] == "someone" and run["tags"] == {"team": "ml"}
    assert run["day"] == "2024-05-01"
    assert [d["energy_j"] for d in run["devices"]] == [100.0, 200.0, 10.0]
    assert [d["method"] for d in run["devices"]] == ["rapl", "nvml-energy", "ram-model"]

    stored = client.get(f"/api/v1/runs/{run_id}/samples").json()["samples"]
    assert [s["seq"] for s in stored] == list(range(1, 151))
    later = client.get(f"/api/v1/runs/{run_id}/samples", params={"since_seq": 140}).json()
    assert [s["seq"] for s in later["samples"]] == list(range(141, 151))
    assert later["samples"][0]["power_w"] == 50.0

    listed = client.get("/api/v1/runs", params={"limit": 1000}).json()["runs"]
    assert [r["id"] for r in listed].count(run_id) == 1


def test_a_run_ends_with_the_metrics_its_user_logged(client: httpx.Client) -> None:
    from dataclasses import replace

    run_id = str(uuid.uuid4())
    assert client.put(f"/api/v1/runs/{run_id}", json=run_body(make_run(run_id, status="running")))
    final = replace(make_run(run_id, status="ok"), metrics={"accuracy": 0.912, "loss": 0.3})
    assert client.put(f"/api/v1/runs/{run_id}", json=run_body(final)).status_code == 200
    stored = client.get(f"/api/v1/runs/{run_id}").json()
    assert stored["metrics"] == {"accuracy": 0.912, "loss": 0.3}
    listed = client.get("/api/v1/runs", params={"label": final.label}).json()["runs"]
    assert any(r["id"] == run_id and r["metrics"]["accuracy"] == 0.912 for r in listed)
    page = client.get(f"/runs/{run_id}").text  # the dashboard's run page lists them
    assert "metric accuracy</dt><dd>0.912</dd>" in page


def test_a_live_run_shows_its_energy_so_far_from_its_samples(client: httpx.Client) -> None:
    run_id = str(uuid.uuid4())
    client.put(f"/api/v1/runs/{run_id}", json=run_body(make_run(run_id, status="running")))
    client.post(f"/api/v1/runs/{run_id}/samples", json=samples_body(1, 10, "cpu:0"))
    client.post(f"/api/v1/runs/{run_id}/samples", json=samples_body(11, 4, "gpu:0"))

    live = {r["id"]: r for r in client.get("/api/v1/live").json()["runs"]}
    assert live[run_id]["energy_j"] == pytest.approx(25.0 * 10 + 25.0 * 14)
    assert live[run_id]["power_w"] == pytest.approx(100.0)
    assert live[run_id]["last_seq"] == 14


def test_samples_for_a_run_the_server_does_not_know_are_404_naming_run_id(
    client: httpx.Client,
) -> None:
    run_id = str(uuid.uuid4())
    answer = client.post(f"/api/v1/runs/{run_id}/samples", json=samples_body(1, 5))
    assert answer.status_code == 404
    assert answer.json()["detail"][0]["loc"] == ["path", "run_id"]
    assert client.get(f"/api/v1/runs/{run_id}").status_code == 404


def _mutated(body: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    copy = json.loads(json.dumps(body))
    target = copy
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return copy


_DELETE = object()

BAD_RUNS = [
    (("energy_j",), -1.0, "energy_j"),
    (("energy_j",), math.inf, "energy_j"),
    (("co2_g",), math.nan, "co2_g"),
    (("status",), "finished", "status"),
    (("phase",), "evaluation", "phase"),
    (("attribution",), "guess", "attribution"),
    (("started_at",), "yesterday", "started_at"),
    (("label",), "x" * 1001, "label"),
    (("label",), "a\x00b", "label"),
    (("host",), 42, "host"),
    (("items",), -3, "items"),
    (("devices", 0, "kind"), "tpu", "kind"),
    (("devices", 0, "method"), "magic", "method"),
    (("devices", 1, "device_id"), "cpu:0", "devices"),
    (("intensity", "pue"), 0.5, "pue"),
    (("tags",), {"k": 1}, "k"),
    (("hardware",), {"cores": math.nan}, "hardware"),
    (("id",), "another-id", "id"),
    (("surprise",), 1, "surprise"),
    (("duration_s",), _DELETE, "duration_s"),
    (("metrics",), {"accuracy": "high"}, "accuracy"),
    (("metrics",), {"accuracy": math.inf}, "accuracy"),
]


@pytest.mark.parametrize(("path", "value", "field"), BAD_RUNS)
def test_an_invalid_run_is_422_naming_the_field_and_stores_nothing(
    client: httpx.Client, path: tuple[Any, ...], value: Any, field: str
) -> None:
    run_id = str(uuid.uuid4())
    body = _mutated(run_body(make_run(run_id)), path, value)
    before = _counts(client, run_id)

    answer = client.put(
        f"/api/v1/runs/{run_id}",
        content=json.dumps(body),  # NaN and Infinity as Python writes them
        headers={"content-type": "application/json"},
    )

    assert answer.status_code == 422, answer.text
    locs = [e["loc"] for e in answer.json()["detail"]]
    assert any(field in loc for loc in locs), locs
    assert _counts(client, run_id) == before


def test_an_unknown_wire_version_is_400_naming_it(client: httpx.Client) -> None:
    run_id = str(uuid.uuid4())
    body = dict(run_body(make_run(run_id)), wire_version=2, new_field="x")
    answer = client.put(f"/api/v1/runs/{run_id}", json=body)
    assert answer.status_code == 400
    assert answer.json()["detail"][0]["loc"] == ["body", "wire_version"]
    assert client.get(f"/api/v1/runs/{run_id}").status_code == 404


BAD_SAMPLES = [
    ((0, "seq"), 0, "seq"),
    ((0, "energy_j"), -5.0, "energy_j"),
    ((1, "power_w"), math.inf, "power_w"),
    ((1, "utilization_pct"), 101, "utilization_pct"),
    ((2, "device_id"), "", "device_id"),
    ((2, "seq"), 1, "samples"),  # the same seq twice in one batch
    ((0, "t_s"), "soon", "t_s"),
]


@pytest.mark.parametrize(("path", "value", "field"), BAD_SAMPLES)
def test_an_invalid_batch_is_422_naming_the_field_and_stores_none_of_it(
    client: httpx.Client, path: tuple[Any, ...], value: Any, field: str
) -> None:
    run_id = str(uuid.uuid4())
    client.put(f"/api/v1/runs/{run_id}", json=run_body(make_run(run_id, status="running")))
    body = _mutated(samples_body(1, 10), ("samples", *path), value)

    answer = client.post(
        f"/api/v1/runs/{run_id}/samples",
        content=json.dumps(body),
        headers={"content-type": "application/json"},
    )

    assert answer.status_code == 422, answer.text
    locs = [e["loc"] for e in answer.json()["detail"]]
    assert any(field in loc for loc in locs), locs
    assert _counts(client, run_id)[1] == 0


def test_a_batch_longer_than_the_limit_is_refused_naming_samples(client: httpx.Client) -> None:
    run_id = str(uuid.uuid4())
    client.put(f"/api/v1/runs/{run_id}", json=run_body(make_run(run_id, status="running")))
    answer = client.post(f"/api/v1/runs/{run_id}/samples", json=samples_body(1, 1001))
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "samples"]
    assert "1000" in answer.json()["detail"][0]["msg"]
    assert _counts(client, run_id)[1] == 0
    assert client.post(f"/api/v1/runs/{run_id}/samples", json=samples_body(1, 1000)).json() == {
        "received": 1000,
        "stored": 1000,
    }


def test_a_body_over_the_size_limit_is_413_naming_the_limit(client: httpx.Client) -> None:
    run_id = str(uuid.uuid4())
    client.put(f"/api/v1/runs/{run_id}", json=run_body(make_run(run_id, status="running")))
    padding = {"samples": [], "pad": "x" * (5 * 1024 * 1024)}
    answer = client.post(f"/api/v1/runs/{run_id}/samples", json=padding)
    assert answer.status_code == 413
    assert "4194304 bytes" in answer.json()["detail"][0]["msg"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked
        yield b'{"samples": [], "pad": "'
        for _ in range(5):
            yield b"x" * (1024 * 1024)
        yield b'"}'

    chunked = client.post(
        f"/api/v1/runs/{run_id}/samples",
        content=chunks(),
        headers={"content-type": "application/json"},
    )
    assert chunked.status_code == 413
    assert _counts(client, run_id)[1] == 0


def test_limits_follow_the_serve_options(tmp_path: Path) -> None:
    limits = ["--max-body", "4096", "--max-batch", "10"]
    with start_server(tmp_path, args=limits) as handle, httpx.Client(base_url=handle.url) as c:
        run_id = str(uuid.uuid4())
        c.put(f"/api/v1/runs/{run_id}", json=run_body(make_run(run_id, status="running")))
        too_long = c.post(f"/api/v1/runs/{run_id}/samples", json=samples_body(1, 11))
        assert too_long.status_code == 422 and "--max-batch" in too_long.text
        assert c.post(f"/api/v1/runs/{run_id}/samples", json=samples_body(1, 10)).is_success
        too_big = c.put(f"/api/v1/runs/{run_id}", json=run_body(make_run(run_id, label="x" * 5000)))
        assert too_big.status_code == 413 and "4096 bytes" in too_big.text
