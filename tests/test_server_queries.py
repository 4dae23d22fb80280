"""Reading a team's runs back: filters, pages, totals by every dimension, live runs, facets.

Runs from three users in two projects are sent to a real server; what the
query routes answer is checked against sums worked out here from the same
runs. The kept totals (``day_totals``) are checked against the runs after
random writes (starts, progress, ends, late starts, status and day changes),
on SQLite and PostgreSQL, also with several writers at once.
"""

from __future__ import annotations

import contextlib
import random
import threading
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import HTTPException
from sqlalchemy import func, select

from carbon_jupyter.server import queries, times
from carbon_jupyter.server.api.models import RunBody
from carbon_jupyter.server.db.accounts import ensure_project, ensure_user
from carbon_jupyter.server.db.engine import migrate, open_database, writing
from carbon_jupyter.server.db.schema import day_totals, projects, runs, users
from carbon_jupyter.server.ingest import Ingest
from carbon_jupyter.server.queries import Principal, RunQuery
from tests.server_fixtures import (
    ServerHandle,
    bearer,
    make_run,
    make_token,
    run_body,
    samples_body,
    start_server,
)

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Sent:
    id: str
    user: str
    project: str
    label: str
    phase: str
    host: str
    status: str
    started_at: str
    energy_j: tuple[float, float, float]

    @property
    def day(self) -> str:
        return self.started_at[:10]


def _at(day: int, hour: int) -> str:
    return f"2024-05-{day:02d}T{hour:02d}:00:00.000+00:00"


SENT = [
    Sent("r1", "alice", "vision", "resnet-train", "train", "h1", "ok", _at(1, 10), (100, 200, 10)),
    Sent("r2", "alice", "vision", "resnet-eval", "inference", "h1", "ok", _at(2, 10), (50, 0, 5)),
    Sent("r3", "bob", "vision", "bert-train", "train", "h2", "error", _at(2, 12), (300, 600, 20)),
    Sent("r4", "carol", "audio", "whisper", "inference", "h3", "ok", _at(3, 8), (10, 20, 1)),
    Sent("r5", "carol", "audio", "resnet-train", "train", "h3", "interrupted", _at(3, 9),
         (5, 5, 1)),
    Sent("r6", "bob", "vision", "a_b", "other", "h2", "ok", _at(3, 10), (1, 0, 0)),
    Sent("r7", "bob", "vision", "axb", "other", "h2", "ok", _at(3, 11), (2, 0, 0)),
    Sent("live", "alice", "vision", "live-one", "train", "h1", "running", _at(4, 9), (0, 0, 0)),
]  # fmt: skip
PUE, INTENSITY = 1.2, 400.0


@dataclass
class Data:
    server: ServerHandle
    admin: dict[str, str]

    def get(self, path: str, **params: Any) -> Any:
        answer = httpx.get(f"{self.server.url}{path}", params=params, headers=self.admin)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def ids(self, **params: Any) -> list[str]:
        return [r["id"] for r in self.get("/api/v1/runs", **params)["runs"]]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Data]:
    folder = tmp_path_factory.mktemp("queries")
    db = str(folder / "server.db")
    admin = make_token(db, "root", "ops", "admin")
    tokens = {(s.user, s.project): "" for s in SENT}
    for user, project in tokens:
        tokens[user, project] = make_token(db, user, project, "ingest")
    with start_server(folder, db=db) as server, httpx.Client(base_url=server.url) as c:
        for s in SENT:
            run = make_run(
                s.id, label=s.label, phase=s.phase, host=s.host, status=s.status,
                started_at=s.started_at, energy_j=s.energy_j,
            )  # fmt: skip
            body = run_body(run)
            if s.status not in ("running", "ok"):
                body["status"] = s.status
            headers = bearer(tokens[s.user, s.project])
            assert c.put(f"/api/v1/runs/{s.id}", json=body, headers=headers).is_success
        live = bearer(tokens["alice", "vision"])
        c.post("/api/v1/runs/live/samples", json=samples_body(1, 8, "cpu:0"), headers=live)
        c.post("/api/v1/runs/live/samples", json=samples_body(9, 2, "gpu:0"), headers=live)
        yield Data(server, bearer(admin))


def _newest_first(runs: list[Sent]) -> list[str]:
    return [s.id for s in sorted(runs, key=lambda s: s.started_at, reverse=True)]


def test_runs_are_listed_newest_first_with_their_owners(data: Data) -> None:
    answer = data.get("/api/v1/runs")
    assert [r["id"] for r in answer["runs"]] == _newest_first(SENT)
    assert answer["total"] == len(SENT)
    first = answer["runs"][-1]
    assert (first["user"], first["project"], first["client_user"]) == ("alice", "vision", "someone")


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"user": "alice"}, ["live", "r2", "r1"]),
        ({"project": "audio"}, ["r5", "r4"]),
        ({"label": "resnet-train"}, ["r5", "r1"]),
        ({"label": "resnet*"}, ["r5", "r2", "r1"]),
        ({"label": "*TRAIN"}, ["r5", "r3", "r1"]),
        ({"label": "a_*"}, ["r6"]),
        ({"phase": "inference"}, ["r4", "r2"]),
        ({"host": "h2"}, ["r7", "r6", "r3"]),
        ({"status": "error"}, ["r3"]),
        ({"status": "running"}, ["live"]),
        ({"since": "2024-05-03"}, ["live", "r7", "r6", "r5", "r4"]),
        ({"until": "2024-05-02T11:00Z"}, ["r2", "r1"]),
        ({"since": "2024-05-02T00:00:00+02:00", "until": "2024-05-03"}, ["r3", "r2"]),
        ({"user": "bob", "label": "*b"}, ["r7", "r6"]),
        ({"user": "nobody"}, []),
    ],
)
def test_each_filter_narrows_the_runs(
    data: Data, params: dict[str, str], expected: list[str]
) -> None:
    assert data.ids(**params) == expected
    assert data.get("/api/v1/runs", **params)["total"] == len(expected)


def test_pages_follow_each_other_without_gaps(data: Data) -> None:
    pages = [data.ids(limit=3, offset=offset) for offset in (0, 3, 6)]
    assert [i for page in pages for i in page] == _newest_first(SENT)
    assert data.get("/api/v1/runs", limit=3, offset=6)["total"] == len(SENT)


def _expected_totals(
    dims: tuple[str, ...], runs: list[Sent]
) -> dict[tuple[str, ...], dict[str, float]]:
    sums: dict[tuple[str, ...], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for s in runs:
        key = tuple(getattr(s, d) for d in dims)
        total = sum(s.energy_j)
        sums[key]["runs"] += 1
        sums[key]["energy_j"] += total
        sums[key]["cpu_energy_j"] += s.energy_j[0]
        sums[key]["gpu_energy_j"] += s.energy_j[1]
        sums[key]["co2_g"] += total * PUE * INTENSITY / 3.6e6
        sums[key]["duration_s"] += 0.0 if s.status == "running" else 60.0
    return {k: dict(v) for k, v in sums.items()}


@pytest.mark.parametrize(
    "by",
    ["user", "project", "label", "phase", "host", "day", "status", "user,day", "project,label"],
)
def test_totals_add_up_by_every_dimension(data: Data, by: str) -> None:
    dims = tuple(by.split(","))
    answer = data.get("/api/v1/totals", by=by)
    assert answer["by"] == list(dims)
    got = {tuple(row[d] for d in dims): row for row in answer["totals"]}
    expected = _expected_totals(dims, SENT)
    assert set(got) == set(expected)
    for key, sums in expected.items():
        for name, value in sums.items():
            assert got[key][name] == pytest.approx(value), (key, name)


def test_totals_take_the_same_filters(data: Data) -> None:
    answer = data.get("/api/v1/totals", by="user", project="vision", since="2024-05-02")
    got = {row["user"]: row["runs"] for row in answer["totals"]}
    assert got == {"alice": 2, "bob": 3}
    by_day = data.get("/api/v1/totals", by="day")["totals"]
    assert [row["day"] for row in by_day] == sorted({s.day for s in SENT})


@pytest.mark.parametrize("by", ["", "colour", "user,user", "label;drop table runs"])
def test_an_unknown_dimension_is_422_naming_by(data: Data, by: str) -> None:
    answer = httpx.get(f"{data.server.url}/api/v1/totals", params={"by": by}, headers=data.admin)
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["query", "by"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "last tuesday"}, "since"),
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"offset": "-1"}, "offset"),
        ({"status": "done"}, "status"),
        ({"phase": "eval"}, "phase"),
        ({"user": "x" * 201}, "user"),
    ],
)
def test_a_bad_filter_is_422_naming_it(data: Data, params: dict[str, str], field: str) -> None:
    answer = httpx.get(f"{data.server.url}/api/v1/runs", params=params, headers=data.admin)
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["query", field]


def test_a_live_run_shows_its_figures_so_far(data: Data) -> None:
    live = data.get("/api/v1/live")["runs"]
    assert [r["id"] for r in live] == ["live"]
    assert live[0]["energy_j"] == pytest.approx(25.0 * 8 + 25.0 * 10)
    assert live[0]["co2_g"] == pytest.approx((25.0 * 8 + 25.0 * 10) * PUE * INTENSITY / 3.6e6)
    assert live[0]["last_seq"] == 10
    assert live[0]["power_w"] == pytest.approx(100.0)


def test_facets_list_what_there_is_to_filter_by(data: Data) -> None:
    facets = data.get("/api/v1/facets")
    assert facets["users"] == ["alice", "bob", "carol"]
    assert facets["projects"] == ["audio", "vision"]
    assert facets["labels"] == sorted({s.label for s in SENT})
    assert facets["phases"] == ["inference", "other", "train"]
    assert facets["hosts"] == ["h1", "h2", "h3"]


def test_one_run_carries_its_devices_and_samples(data: Data) -> None:
    run = data.get("/api/v1/runs/r3")
    assert run["status"] == "error" and run["user"] == "bob"
    assert [(d["device_id"], d["kind"], d["energy_j"]) for d in run["devices"]] == [
        ("cpu:0", "cpu", 300.0),
        ("gpu:0", "gpu", 600.0),
        ("ram", "ram", 20.0),
    ]
    samples = data.get("/api/v1/runs/live/samples", since_seq=8, limit=1)["samples"]
    assert [(s["seq"], s["device_id"]) for s in samples] == [(9, "gpu:0")]


# -- the kept totals (day_totals) agree with the runs --------------------------------------
KEPT_BY = [
    "day", "user", "project", "status", "day,user", "day,project", "day,status",
    "project,user", "user,status", "day,project,user,status",
]  # fmt: skip
KEPT_FILTERS: list[dict[str, str]] = [
    {},
    {"user": "u1"},
    {"project": "p0"},
    {"user": "u2", "project": "p1"},
    {"status": "ok"},
    {"status": "running"},
    {"since": "2024-05-03"},
    {"until": "2024-05-03"},
    {"since": "2024-05-02T00:00:00Z", "until": "2024-05-04T00:00:00+00:00"},
    {"user": "nobody"},
]
SUM_NAMES = ("duration_s", "energy_j", "cpu_energy_j", "gpu_energy_j", "ram_energy_j", "co2_g")


def _principals(engine: Any) -> list[Principal]:
    """Ingest tokens of four users in two projects, and an admin."""
    out = []
    with writing(engine) as conn:
        for user, project, scope in (
            ("u0", "p0", "ingest"), ("u1", "p0", "ingest"), ("u2", "p1", "ingest"),
            ("u1", "p1", "ingest"), ("root", "ops", "admin"),
        ):  # fmt: skip
            uid, pid = ensure_user(conn, user), ensure_project(conn, project)
            out.append(Principal(user, project, scope, uid, pid))
    return out


def _put(ingest: Ingest, rng: random.Random, run_id: str, who: Principal, status: str) -> None:
    """A PUT of run ``run_id`` as ``who``: random figures, day, and ``status``."""
    figures = tuple(rng.uniform(0, 5000) for _ in range(3))
    started = _at(rng.randrange(1, 6), rng.randrange(24))
    body = run_body(make_run(run_id, started_at=started, energy_j=figures))  # type: ignore[arg-type]
    body.update(status=status, duration_s=rng.uniform(0, 3600))
    if status == "running":
        body["ended_at"] = None
    with contextlib.suppress(HTTPException):  # 409: another project's run
        ingest.put_run(run_id, RunBody.model_validate(body), who)


def _random_writes(engine: Any, seed: int, count: int, run_ids: list[str]) -> None:
    """``count`` PUTs of runs from ``run_ids``: starts, progress, ends, late starts, re-ends."""
    rng = random.Random(seed)
    ingest = Ingest(engine)
    principals = _principals(engine)
    for _ in range(count):
        status = rng.choice(("running", "running", "ok", "ok", "error", "interrupted"))
        _put(ingest, rng, rng.choice(run_ids), rng.choice(principals), status)


def _kept_rows(engine: Any) -> dict[tuple[Any, ...], dict[str, float]]:
    with engine.connect() as conn:
        rows = conn.execute(select(day_totals)).all()
    return {
        (r.day, r.project_id, r.user_id, r.status): {k: r._mapping[k] for k in ("runs", *SUM_NAMES)}
        for r in rows
    }


def _rows_from_runs(engine: Any) -> dict[tuple[Any, ...], dict[str, float]]:
    key = [runs.c.day, runs.c.project_id, runs.c.user_id, runs.c.status]
    stmt = select(
        *key, func.count().label("runs"), *(func.sum(runs.c[s]).label(s) for s in SUM_NAMES)
    )
    with engine.connect() as conn:
        rows = conn.execute(stmt.group_by(*key)).all()
    return {
        (r.day, r.project_id, r.user_id, r.status): {k: r._mapping[k] for k in ("runs", *SUM_NAMES)}
        for r in rows
    }


def _assert_same_rows(
    got: dict[tuple[Any, ...], dict[str, float]], expected: dict[tuple[Any, ...], dict[str, float]]
) -> None:
    assert set(got) == set(expected)
    for key, sums in expected.items():
        assert got[key]["runs"] == sums["runs"], key
        for name in SUM_NAMES:
            assert got[key][name] == pytest.approx(sums[name], rel=1e-9, abs=1e-6), (key, name)


def _engine_for(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    db = (
        str(tmp_path / "server.db")
        if backend == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    engine = open_database(db)
    migrate(engine)
    return engine


def _expected_from_runs(
    engine: Any, dims: tuple[str, ...], q: RunQuery, who: Principal
) -> dict[tuple[Any, ...], dict[str, float]]:
    """Totals worked out here, in Python, from every stored run."""
    columns = [runs.c.day, runs.c.status, runs.c.started_at, *(runs.c[s] for s in SUM_NAMES)]
    stmt = select(
        *columns, users.c.name.label("user"), projects.c.name.label("project")
    ).select_from(
        runs.join(users, users.c.id == runs.c.user_id).join(
            projects, projects.c.id == runs.c.project_id
        )
    )
    since = q.since and times.canonical(q.since)[:10]
    until = q.until and times.canonical(q.until)[:10]
    sums: dict[tuple[Any, ...], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    with engine.connect() as conn:
        for r in conn.execute(stmt):
            if not who.is_admin and r.project != who.project:
                continue
            if any(
                getattr(q, f) not in (None, getattr(r, f)) for f in ("user", "project", "status")
            ):
                continue
            if (since and r.day < since) or (until and r.day >= until):
                continue
            group = sums[tuple(getattr(r, d) for d in dims)]
            group["runs"] += 1
            for s in SUM_NAMES:
                group[s] += getattr(r, s)
    return {k: dict(v) for k, v in sums.items()}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_kept_totals_answer_as_the_runs_do_for_every_grouping_and_filter(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    engine = _engine_for(backend, tmp_path, request)
    try:
        _random_writes(engine, seed=11, count=400, run_ids=[f"run-{n}" for n in range(120)])
        _assert_same_rows(_kept_rows(engine), _rows_from_runs(engine))
        admin, reader = Principal("root", "ops", "admin"), Principal("u1", "p1", "read")
        with engine.connect() as conn:
            for by in KEPT_BY:
                dims = tuple(by.split(","))
                for who in (admin, reader):
                    for filters in KEPT_FILTERS:
                        q = RunQuery(**filters)
                        assert queries.kept_totals_serve(dims, q)
                        rows = queries.totals(conn, dims, q, who)
                        got = {tuple(r[d] for d in dims): r for r in rows}
                        expected = _expected_from_runs(engine, dims, q, who)
                        _assert_same_rows(got, expected)
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_kept_totals_stay_exact_with_several_writers_at_once(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    first = _engine_for(backend, tmp_path, request)
    url = first.url.render_as_string(hide_password=False)
    run_ids = [f"shared-{n}" for n in range(30)]  # every writer writes the same runs
    errors: list[BaseException] = []

    def writer(seed: int) -> None:
        engine = open_database(url)  # its own connections, as another server process has
        try:
            _random_writes(engine, seed=seed, count=60, run_ids=run_ids)
        except BaseException as exc:
            errors.append(exc)
        finally:
            engine.dispose()

    try:
        threads = [threading.Thread(target=writer, args=(seed,)) for seed in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        kept = _kept_rows(first)
        assert sum(int(row["runs"]) for row in kept.values()) == len(run_ids)
        _assert_same_rows(kept, _rows_from_runs(first))
    finally:
        first.dispose()


def test_totals_that_kept_totals_cannot_answer_are_summed_from_the_runs() -> None:
    assert not queries.kept_totals_serve(("label",), RunQuery())
    assert not queries.kept_totals_serve(("day",), RunQuery(host="h1"))
    assert not queries.kept_totals_serve(("user",), RunQuery(since="2024-05-02T11:00Z"))
    assert queries.kept_totals_serve(("user",), RunQuery(since="2024-05-02T02:00+02:00"))
