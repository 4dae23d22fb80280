"""Who may do what on the team server: every API route against every kind of token.

No token, a wrong or revoked token, a malformed header: 401. A read token
ingesting, or a non-admin token on admin routes: 403. Another project's
token: 409 when it writes to a run that is not its project's, 404 when it
reads one, and that project's runs missing from its lists and totals. Nothing
is stored from any refused request.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.server_fixtures import (
    ServerHandle,
    bearer,
    make_run,
    make_token,
    row_counts,
    run_body,
    samples_body,
    start_server,
)

pytestmark = pytest.mark.slow

RUN = "vision-run-1"
#: The id of the sweep alice submitted (set by the ``team`` fixture), for ``{sweep}`` in paths.
SWEEP: dict[str, str] = {}
SWEEP_BODY = {
    "target": {"kind": "script", "name": "t.py", "content": "print('hello')"},
    "params": ["n=1"],
}


@dataclass
class Team:
    server: ServerHandle
    admin: str
    alice: str  # ingest, vision
    bob: str  # read, vision
    carol: str  # ingest, audio
    revoked: str


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    folder = tmp_path_factory.mktemp("auth")
    db = str(folder / "server.db")
    tokens = {
        "admin": make_token(db, "root", "ops", "admin"),
        "alice": make_token(db, "alice", "vision", "ingest"),
        "bob": make_token(db, "bob", "vision", "read"),
        "carol": make_token(db, "carol", "audio", "ingest"),
        "revoked": make_token(db, "dave", "vision", "ingest"),
    }
    with start_server(folder, db=db) as server, httpx.Client(base_url=server.url) as c:
        me = c.get("/api/v1/tokens", headers=bearer(tokens["admin"])).json()
        dave = next(t["id"] for t in me if t["user"] == "dave")
        assert c.delete(f"/api/v1/tokens/{dave}", headers=bearer(tokens["admin"])).is_success
        alice = bearer(tokens["alice"])
        part = run_body(make_run(RUN, tags={"job": "ddp-1", "part": "rank", "rank": "0"}))
        assert c.put(f"/api/v1/runs/{RUN}", json=part, headers=alice).is_success
        assert c.post(
            f"/api/v1/runs/{RUN}/samples", json=samples_body(1, 5), headers=alice
        ).is_success
        submitted = c.post("/api/v1/sweeps", json=SWEEP_BODY, headers=alice)
        assert submitted.status_code == 201, submitted.text
        SWEEP["id"] = submitted.json()["id"]
        deadline = time.monotonic() + 60
        while c.get(f"/api/v1/sweeps/{SWEEP['id']}", headers=alice).json()["status"] != "done":
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.2)
        yield Team(server=server, **tokens)


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    scope: str  # read, ingest or admin
    body: Any = None

    def call(self, client: httpx.Client, headers: dict[str, str]) -> httpx.Response:
        path = self.path.replace("{sweep}", SWEEP.get("id", "none"))
        return client.request(self.method, path, json=self.body, headers=headers)


def _new_run_body() -> dict[str, Any]:
    return run_body(make_run("fresh-" + uuid.uuid4().hex[:8]))


ROUTES = [
    Route(
        "PUT",
        f"/api/v1/runs/{RUN}",
        "ingest",
        run_body(make_run(RUN, label="renamed", tags={"job": "ddp-1", "part": "rank"})),
    ),
    Route("PUT", "/api/v1/runs/brand-new-run", "ingest", run_body(make_run("brand-new-run"))),
    Route("POST", f"/api/v1/runs/{RUN}/samples", "ingest", samples_body(100, 3)),
    Route("GET", "/api/v1/runs", "read"),
    Route("GET", f"/api/v1/runs/{RUN}", "read"),
    Route("GET", f"/api/v1/runs/{RUN}/samples", "read"),
    Route("GET", "/api/v1/totals?by=project", "read"),
    Route("GET", "/api/v1/live", "read"),
    Route("GET", "/api/v1/facets", "read"),
    Route("GET", "/api/v1/me", "read"),
    Route("POST", "/api/v1/sweeps", "ingest", SWEEP_BODY),
    Route("GET", "/api/v1/sweeps", "read"),
    Route("GET", "/api/v1/sweeps/{sweep}", "read"),
    Route("POST", "/api/v1/sweeps/{sweep}/cancel", "ingest"),
    Route("POST", "/api/v1/sweeps/{sweep}/resume", "ingest"),
    Route("GET", "/api/v1/jobs", "read"),
    Route("GET", "/api/v1/jobs/ddp-1", "read"),
    Route("GET", "/api/v1/tokens", "admin"),
    Route("POST", "/api/v1/tokens", "admin", {"user": "eve", "project": "vision"}),
    Route("DELETE", "/api/v1/tokens/2", "admin"),
    Route("GET", "/metrics", "admin"),
]


def _ids(route: Route) -> str:
    return f"{route.method} {route.path}"


def test_the_matrix_covers_every_route_in_the_openapi_description(team: Team) -> None:
    spec = httpx.get(f"{team.server.url}/openapi.json").json()
    documented = {
        (method.upper(), path)
        for path, operations in spec["paths"].items()
        if path.startswith("/api/") or path == "/metrics"
        for method in operations
    }
    templates = {
        ("PUT", "/api/v1/runs/{run_id}"),
        ("POST", "/api/v1/runs/{run_id}/samples"),
        ("GET", "/api/v1/runs"),
        ("GET", "/api/v1/runs/{run_id}"),
        ("GET", "/api/v1/runs/{run_id}/samples"),
        ("GET", "/api/v1/totals"),
        ("GET", "/api/v1/live"),
        ("GET", "/api/v1/facets"),
        ("GET", "/api/v1/me"),
        ("POST", "/api/v1/sweeps"),
        ("GET", "/api/v1/sweeps"),
        ("GET", "/api/v1/sweeps/{sweep_id}"),
        ("POST", "/api/v1/sweeps/{sweep_id}/cancel"),
        ("POST", "/api/v1/sweeps/{sweep_id}/resume"),
        ("GET", "/api/v1/jobs"),
        ("GET", "/api/v1/jobs/{job_id}"),
        ("GET", "/api/v1/tokens"),
        ("POST", "/api/v1/tokens"),
        ("DELETE", "/api/v1/tokens/{token_id}"),
        ("GET", "/metrics"),
    }
    assert documented == templates


def _refused(team: Team, route: Route, headers: dict[str, str], status: int) -> httpx.Response:
    before = row_counts(team.server.db)
    with httpx.Client(base_url=team.server.url) as c:
        answer = route.call(c, headers)
    assert answer.status_code == status, answer.text
    assert answer.json()["detail"][0]["loc"] == ["header", "authorization"] or status in (404, 409)
    assert row_counts(team.server.db) == before
    return answer


@pytest.mark.parametrize("route", ROUTES, ids=_ids)
def test_no_token_is_401_and_stores_nothing(team: Team, route: Route) -> None:
    answer = _refused(team, route, {}, 401)
    assert answer.headers["www-authenticate"] == "Bearer"
    assert "serve token create" in answer.text


@pytest.mark.parametrize("route", ROUTES, ids=_ids)
@pytest.mark.parametrize(
    "header",
    ["Bearer cj_not-a-token-this-server-made", "Bearer", "Basic YWxpY2U6c2VjcmV0", "revoked"],
)
def test_a_wrong_token_or_header_is_401_and_stores_nothing(
    team: Team, route: Route, header: str
) -> None:
    value = f"Bearer {team.revoked}" if header == "revoked" else header
    _refused(team, route, {"Authorization": value}, 401)


@pytest.mark.parametrize("route", [r for r in ROUTES if r.scope != "read"], ids=_ids)
def test_a_read_token_cannot_ingest_or_administer(team: Team, route: Route) -> None:
    answer = _refused(team, route, bearer(team.bob), 403)
    assert "'read'" in answer.json()["detail"][0]["msg"]


@pytest.mark.parametrize("route", [r for r in ROUTES if r.scope == "admin"], ids=_ids)
def test_an_ingest_token_cannot_administer(team: Team, route: Route) -> None:
    _refused(team, route, bearer(team.alice), 403)


def test_another_projects_token_cannot_touch_a_run(team: Team) -> None:
    carol = bearer(team.carol)
    rewrite = Route("PUT", f"/api/v1/runs/{RUN}", "ingest", run_body(make_run(RUN, label="x")))
    answer = _refused(team, rewrite, carol, 409)
    assert answer.json()["detail"][0]["loc"] == ["path", "run_id"]
    _refused(
        team,
        Route("POST", f"/api/v1/runs/{RUN}/samples", "ingest", samples_body(50, 2)),
        carol,
        409,
    )
    _refused(team, Route("GET", f"/api/v1/runs/{RUN}", "read"), carol, 404)
    _refused(team, Route("GET", f"/api/v1/runs/{RUN}/samples", "read"), carol, 404)
    _refused(team, Route("GET", "/api/v1/jobs/ddp-1", "read"), carol, 404)
    for method, path in (("GET", ""), ("POST", "/cancel"), ("POST", "/resume")):
        _refused(team, Route(method, "/api/v1/sweeps/{sweep}" + path, "read"), carol, 404)

    with httpx.Client(base_url=team.server.url, headers=carol) as c:
        assert RUN not in [r["id"] for r in c.get("/api/v1/runs").json()["runs"]]
        assert c.get("/api/v1/runs", params={"project": "vision"}).json()["total"] == 0
        projects = [t["project"] for t in c.get("/api/v1/totals?by=project").json()["totals"]]
        assert "vision" not in projects
        assert "vision" not in c.get("/api/v1/facets").json()["projects"]
    with httpx.Client(base_url=team.server.url, headers=bearer(team.alice)) as c:
        assert c.get(f"/api/v1/runs/{RUN}").json()["label"] == "train-model"


@pytest.mark.parametrize("who", ["alice", "bob", "admin"])
def test_tokens_that_may_read_a_run_see_it(team: Team, who: str) -> None:
    with httpx.Client(base_url=team.server.url, headers=bearer(getattr(team, who))) as c:
        assert c.get(f"/api/v1/runs/{RUN}").json()["project"] == "vision"
        assert len(c.get(f"/api/v1/runs/{RUN}/samples").json()["samples"]) == 5
        assert RUN in [r["id"] for r in c.get("/api/v1/runs").json()["runs"]]


def test_each_token_tells_who_it_is_by_header_or_cookie(team: Team) -> None:
    url = f"{team.server.url}/api/v1/me"
    assert httpx.get(url, headers=bearer(team.bob)).json() == {
        "user": "bob",
        "project": "vision",
        "scope": "read",
        "open": False,
    }
    by_cookie = httpx.get(url, cookies={"carbon_jupyter_token": team.carol}).json()
    assert (by_cookie["user"], by_cookie["scope"]) == ("carol", "ingest")


def test_an_admin_token_reaches_every_route(team: Team) -> None:
    admin = bearer(team.admin)
    with httpx.Client(base_url=team.server.url, headers=admin) as c:
        for route in ROUTES:
            if route.method == "DELETE":
                continue  # would revoke bob's token, which other tests use
            answer = route.call(c, admin)
            assert answer.is_success, (route, answer.text)
    assert (
        "carbon_jupyter_energy_joules"
        in httpx.get(f"{team.server.url}/metrics", headers=admin).text
    )


def test_health_and_the_api_description_need_no_token(team: Team) -> None:
    assert httpx.get(f"{team.server.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{team.server.url}/openapi.json").json()["info"]["title"]
    # the interactive docs come from this server alone: no CDN on the page
    page = httpx.get(f"{team.server.url}/docs")
    assert page.status_code == 200
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text) + re.findall(
        r"url: '([^']+)'", page.text
    )
    assert sources and all(s.startswith("/") for s in sources), sources
    assert "/openapi.json" in page.text
    for source in sources:
        answer = httpx.get(f"{team.server.url}{source}")
        assert answer.status_code == 200, source
    script = httpx.get(f"{team.server.url}/docs/static/swagger-ui-bundle.js")
    assert "javascript" in script.headers["content-type"] and len(script.content) > 100_000


def test_an_open_server_lets_everyone_in_as_the_local_admin(open_server: ServerHandle) -> None:
    me = httpx.get(f"{open_server.url}/api/v1/me").json()
    assert me == {"user": "local", "project": "default", "scope": "admin", "open": True}
    run_id = str(uuid.uuid4())
    put = httpx.put(f"{open_server.url}/api/v1/runs/{run_id}", json=run_body(make_run(run_id)))
    assert put.json()["result"] == "created"
    assert httpx.get(f"{open_server.url}/metrics").status_code == 200
