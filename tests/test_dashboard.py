"""The team server's dashboard over HTTP: a real server process, runs sent through the API.

Runs go in as a notebook sends them (``carbon_jupyter.forward.wire`` bodies
with a project's token); the pages are then read as a browser reads them:
the table a filter leaves, what another project's token sees, a label made
of markup shown as text, a 4xx page naming a parameter that cannot be used,
and BokehJS coming from the server itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from carbon_jupyter.model import Run
from tests.test_dashboard_support import (
    SCRIPT_LABEL,
    Dashboard,
    make_run,
    make_samples,
    parse,
    recent,
    rows,
    run_dashboard,
    send_run,
    send_samples,
)

pytestmark = pytest.mark.slow
pytest_plugins = ["tests.server_fixtures"]


# -- the runs every test reads ------------------------------------------------------------
@dataclass
class Team:
    server: Dashboard
    runs: dict[str, Run]  # name -> run

    def ids(self, *names: str) -> set[str]:
        return {self.runs[n].id for n in names}


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    """A server holding two projects' runs: vision (alice, carol) and audio (bob)."""
    with run_dashboard(tmp_path_factory.mktemp("dashboard")) as server:
        runs = {
            "resnet-1": make_run("train-resnet", started_at="2025-03-01T09:00:00.000+00:00"),
            "resnet-2": make_run("train-resnet", started_at="2025-03-02T09:00:00.000+00:00"),
            "eval": make_run(
                "eval", phase="inference", host="gpu-2", started_at="2025-03-03T09:00:00.000+00:00"
            ),
            "script": make_run(
                SCRIPT_LABEL,
                status="error",
                error="<img src=x onerror=alert(2)>",
                warnings=("<b>gpu:0</b> read late",),
                tags={"<i>tag</i>": "<u>value</u>"},
                host="<b>host</b>",
                started_at="2025-03-04T09:00:00.000+00:00",
            ),
            "whisper": make_run("whisper", started_at="2025-03-02T12:00:00.000+00:00"),
            "carol": make_run("carol-job", started_at="2025-03-05T09:00:00.000+00:00"),
            "live": make_run("live-job", status="running"),
        }
        owners = {"whisper": "bob", "carol": "carol"}
        for name, run in runs.items():
            send_run(server, owners.get(name, "alice"), run)
        samples = make_samples(20)
        send_samples(server, "alice", runs["resnet-1"].id, 1, samples)
        send_samples(server, "alice", runs["script"].id, 1, samples)
        send_samples(server, "alice", runs["live"].id, 1, make_samples(4))
        yield Team(server, runs)


VISION = ("resnet-1", "resnet-2", "eval", "script", "carol", "live")


# -- the runs table -----------------------------------------------------------------------
def test_filters_narrow_the_table_and_the_url_is_shareable(team: Team) -> None:
    with team.server.client("alice") as browser:
        everything = browser.get("/")
        assert everything.status_code == 200, everything.text
        assert set(rows(everything.text)) == team.ids(*VISION)

        by_label = browser.get("/", params={"label": "train-resnet"})
        assert set(rows(by_label.text)) == team.ids("resnet-1", "resnet-2")
        assert parse(by_label.text).inputs["label"] == "train-resnet"  # the form keeps it

        pattern = browser.get("/", params={"label": "TRAIN*"})
        assert set(rows(pattern.text)) == team.ids("resnet-1", "resnet-2")

        by_user = browser.get("/?user=carol")
        assert rows(by_user.text) == [team.runs["carol"].id]

        by_phase_host = browser.get("/?phase=inference&host=gpu-2")
        assert rows(by_phase_host.text) == [team.runs["eval"].id]

        by_status = browser.get("/?status=error")
        assert rows(by_status.text) == [team.runs["script"].id]

        window = browser.get("/?since=2025-03-02&until=2025-03-04")
        assert set(rows(window.text)) == team.ids("resnet-2", "eval")

        live = browser.get("/?status=running")
        assert rows(live.text) == [team.runs["live"].id]

    # The same URL in another browser signed in to the same project shows the same table.
    with team.server.client("carol") as other:
        shared = other.get("/?since=2025-03-02&until=2025-03-04")
        assert set(rows(shared.text)) == team.ids("resnet-2", "eval")


def test_pages_of_the_table_keep_the_filters(team: Team) -> None:
    with team.server.client("alice") as browser:
        first = browser.get("/?label=train*&per_page=1")
        page = parse(first.text)
        assert len(rows(first.text)) == 1
        older = [link for link in page.links if "page=2" in link]
        assert older, page.links
        assert "label=train%2A" in older[0] and "per_page=1" in older[0]
        second = browser.get(older[0])
        assert len(rows(second.text)) == 1
        assert set(rows(first.text) + rows(second.text)) == team.ids("resnet-1", "resnet-2")
        assert not any("page=3" in link for link in parse(second.text).links)


def test_a_token_sees_its_own_project_only(team: Team) -> None:
    with team.server.client("bob") as bob:
        assert rows(bob.get("/").text) == [team.runs["whisper"].id]
        assert rows(bob.get("/?project=vision").text) == []
        other = bob.get(f"/runs/{team.runs['resnet-1'].id}")
        assert other.status_code == 404
        assert "train-resnet" not in other.text
        compare = bob.get(f"/compare?runs={team.runs['resnet-1'].id}")
        assert compare.status_code == 404
        rows_api = bob.get(f"/dashboard/api/runs/{team.runs['live'].id}/rows")
        assert rows_api.status_code == 404
        assert bob.get("/dashboard/api/live").json()["runs"] == []
    with team.server.client("reader") as reader:
        assert set(rows(reader.get("/").text)) == team.ids(*VISION)
    with team.server.client("admin") as admin:
        assert set(rows(admin.get("/").text)) == {r.id for r in team.runs.values()}
        assert set(rows(admin.get("/?project=audio").text)) == team.ids("whisper")


# -- user text is text --------------------------------------------------------------------
MARKUP = ("<script>alert(1)", "<img src=x", "<b>gpu:0</b>", "<i>tag</i>", "<u>value</u>", "<b>host")


def test_markup_in_user_text_is_escaped_everywhere(team: Team) -> None:
    run = team.runs["script"]
    with team.server.client("alice") as browser:
        pages = {
            "runs": browser.get("/"),
            "filtered": browser.get("/", params={"label": SCRIPT_LABEL, "host": "<b>host</b>"}),
            "run": browser.get(f"/runs/{run.id}"),
            "compare": browser.get(f"/compare?runs={run.id},{team.runs['eval'].id}"),
            "by label": browser.get("/?by=label&since=2025-01-01"),
        }
    for name, page in pages.items():
        assert page.status_code == 200, (name, page.text)
        for raw in MARKUP:
            assert raw not in page.text, (name, raw)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages["runs"].text
    assert rows(pages["filtered"].text) == [run.id]
    texts = parse(pages["run"].text).texts
    assert SCRIPT_LABEL in texts  # shown as the page's heading, as text
    assert "<img src=x onerror=alert(2)>" in " ".join(texts)
    assert any("<b>gpu:0</b> read late" in t for t in texts)


def test_totals_per_day_cover_the_window_and_follow_the_filters(team: Team) -> None:
    with team.server.client("alice") as browser:
        default = browser.get("/")
        march = browser.get("/?since=2025-03-01&until=2025-03-06&by=label&metric=co2")
        one_label = browser.get("/?since=2025-03-01&by=label&label=eval")
    assert "per day by user, last 90 days" in default.text
    assert "carbon-totals" in default.text  # the live run started an hour ago
    assert "per day by label, from 2025-03-01 until 2025-03-06" in march.text
    assert "CO2e per day" in march.text
    # the groups are the labels, as data in the figure (escaped as Bokeh escapes a document)
    for label in ("train-resnet", "eval", "carol-job", "&lt;script&gt;alert(1)"):
        assert label in march.text, label
    assert "5 runs" in " ".join(parse(march.text).texts)  # the window's runs, vision only
    assert "train-resnet" not in one_label.text.split("carbon-totals")[1]


# -- one run ------------------------------------------------------------------------------
def test_a_run_page_shows_its_problems_devices_and_plot(team: Team) -> None:
    with team.server.client("alice") as browser:
        bad = browser.get(f"/runs/{team.runs['script'].id}")
        clean = browser.get(f"/runs/{team.runs['resnet-1'].id}")
    text = " ".join(parse(bad.text).texts)
    assert 'role="alert"' in bad.text
    assert "This run ended with an error" in text
    assert "Warning: <b>gpu:0</b> read late" in text
    assert "estimates from a model" in text  # cpu-model and ram-model
    # every device with its method and how its figure was obtained
    for device, method, quality in (
        ("gpu:0", "nvml-energy", "measured"),
        ("cpu:0", "cpu-model", "estimated"),
        ("ram", "ram-model", "estimated"),
    ):
        assert re.search(rf"{re.escape(device)}.*{method}.*{quality}", text), (device, text)
    assert "carbon-samples" in clean.text  # the notebook's power and CO2e plot
    assert "ended with an error" not in clean.text
    assert "Warning:" not in clean.text


def test_a_live_run_gains_rows_from_new_samples(team: Team) -> None:
    run = team.runs["live"]
    with team.server.client("alice") as browser:
        page = browser.get(f"/runs/{run.id}")
        assert page.status_code == 200
        assert '"live":true' in page.text
        first = browser.get(f"/dashboard/api/runs/{run.id}/rows").json()
        assert first["status"] == "running"
        assert len(first["rows"]["t_s"]) == 4 and first["next_seq"] == 12
        nothing = browser.get(f"/dashboard/api/runs/{run.id}/rows?since_seq=12").json()
        assert nothing["rows"]["t_s"] == [] and nothing["next_seq"] == 12

        more = make_samples(3, first_tick=5)
        send_samples(team.server, "alice", run.id, 13, more[:7])  # the third tick is not whole
        partial = browser.get(f"/dashboard/api/runs/{run.id}/rows?since_seq=12").json()
        assert partial["rows"]["t_s"] == [2.5, 3.0] and partial["next_seq"] == 18
        send_samples(team.server, "alice", run.id, 20, more[7:])
        rest = browser.get(f"/dashboard/api/runs/{run.id}/rows?since_seq=18").json()
        assert rest["rows"]["t_s"] == [3.5] and rest["next_seq"] == 21
        assert rest["energy"].endswith("Wh") and rest["co2"].endswith("g")

        live = browser.get("/dashboard/api/live").json()["runs"]
        assert [r["id"] for r in live] == [run.id]
        assert live[0]["title"] == "live-job" and live[0]["energy"] != "0 Wh"


def test_comparison_of_selected_runs(team: Team) -> None:
    ids = [team.runs[n].id for n in ("resnet-1", "resnet-2", "eval")]
    with team.server.client("alice") as browser:
        page = browser.get("/compare", params={"runs": ",".join(ids), "by": "label"})
        plain_form = browser.get("/compare", params=[("run", ids[0]), ("run", ids[2])])
    assert page.status_code == 200, page.text
    assert rows(page.text, "compare-table") == ids
    assert "carbon-groups" in page.text
    assert "train-resnet (n=2)" in " ".join(parse(page.text).texts)
    assert rows(plain_form.text, "compare-table") == [ids[0], ids[2]]


# -- what cannot be used ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/?since=yesterday", "since"),
        ("/?until=2025-13-45", "until"),
        ("/?since=2025-03-05&until=2025-03-01", "until"),
        ("/?status=finished", "status"),
        ("/?page=0", "page"),
        ("/?page=two", "page"),
        ("/?per_page=100000", "per_page"),
        ("/?by=colour", "by"),
        ("/?metric=money", "metric"),
        ("/?usr=alice", "usr"),
        ("/?label=a&label=b", "label"),
        ("/?label=" + "x" * 300, "label"),
        ("/compare", "runs"),
        ("/compare?runs=a&by=size", "by"),
        ("/compare?runs=" + ",".join(str(i) for i in range(60)), "runs"),
        ("/runs/" + "x" * 80, "run_id"),
    ],
)
def test_a_parameter_that_cannot_be_used_answers_a_page_naming_it(
    team: Team, path: str, name: str
) -> None:
    with team.server.client("alice") as browser:
        answer = browser.get(path)
    assert answer.status_code == 400, (path, answer.status_code, answer.text[:500])
    assert answer.headers["content-type"].startswith("text/html")
    assert f"{name}:" in " ".join(parse(answer.text).texts), answer.text


def test_the_plot_rows_refuse_a_bad_sequence_and_an_unknown_run(team: Team) -> None:
    with team.server.client("alice") as browser:
        bad = browser.get(f"/dashboard/api/runs/{team.runs['live'].id}/rows?since_seq=-1")
        unknown = browser.get("/dashboard/api/runs/no-such-run/rows")
        missing = browser.get("/runs/no-such-run")
        markup = browser.get("/runs/%3Cscript%3Ealert(1)%3C%2Fscript%3E")
    assert markup.status_code == 404 and "<script>alert(1)" not in markup.text
    assert bad.status_code == 400
    assert bad.json()["detail"][0]["loc"] == ["query", "since_seq"]
    assert unknown.status_code == 404
    assert missing.status_code == 404 and "no-such-run" in missing.text


# -- signing in ---------------------------------------------------------------------------
def test_without_a_token_the_pages_ask_for_one_and_the_cookie_is_strict(team: Team) -> None:
    with team.server.client(None) as anonymous:
        page = anonymous.get("/?label=eval")
        assert page.status_code == 401
        assert 'name="token"' in page.text
        assert parse(page.text).inputs["next"] == "/?label=eval"
        assert "train-resnet" not in page.text
        assert anonymous.get("/dashboard/api/live").status_code == 401

        wrong = anonymous.post("/login", data={"token": "cj_not-a-token", "next": "/"})
        assert wrong.status_code == 401 and "not known" in wrong.text
        assert "carbon_jupyter_token" not in anonymous.cookies

        signed = anonymous.post(
            "/login", data={"token": team.server.tokens["alice"], "next": "/?label=eval"}
        )
        assert signed.status_code == 303 and signed.headers["location"] == "/?label=eval"
        cookie = signed.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
        assert rows(anonymous.get("/?label=eval").text) == [team.runs["eval"].id]

        away = anonymous.post("/login", data={"token": team.server.tokens["alice"], "next": "//x"})
        assert away.headers["location"] == "/"  # never sent off this server

        out = anonymous.post("/logout")
        assert out.status_code == 303
        assert anonymous.get("/").status_code == 401


def test_an_open_server_needs_no_sign_in(tmp_path: Path) -> None:
    with run_dashboard(tmp_path, tokens=False) as server, server.client(None) as browser:
        run = make_run("local-run")
        send_run(server, "nobody", run)  # no token: the open server takes it
        page = browser.get("/")
        assert page.status_code == 200
        assert rows(page.text) == [run.id]
        assert "Sign out" not in page.text
        assert browser.get("/login").status_code == 303


# -- BokehJS from the server --------------------------------------------------------------
def test_bokehjs_comes_from_the_server_itself(team: Team) -> None:
    import bokeh

    with team.server.client("alice") as browser:
        pages = [
            browser.get("/?since=2025-01-01"),
            browser.get(f"/runs/{team.runs['resnet-1'].id}"),
            browser.get(f"/compare?runs={team.runs['eval'].id}"),
        ]
        for page in pages:
            parsed = parse(page.text)
            assert parsed.scripts, page.text[:500]
            for src in parsed.scripts + parsed.styles:
                assert src.startswith("/"), src  # no other host
            assert "cdn.bokeh.org" not in page.text and "://" not in "".join(parsed.scripts)
        bokeh_src = next(s for s in parse(pages[0].text).scripts if "bokeh" in s)
        script = browser.get(bokeh_src)
        assert script.status_code == 200
        assert "javascript" in script.headers["content-type"]
        assert bokeh.__version__ in script.text[:2000] or bokeh.__version__ in script.text
        own = browser.get("/dashboard/static/dashboard.js")
        assert own.status_code == 200 and "textContent" in own.text
    with team.server.client(None) as anonymous:  # static files need no token
        assert anonymous.get(bokeh_src).status_code == 200


def test_the_dashboard_on_postgresql(postgres_url: str, tmp_path: Path) -> None:
    with run_dashboard(tmp_path, db=postgres_url) as server:
        train = make_run("train-pg", status="error", warnings=("late",), tags={"k": "v"})
        other = make_run("other-pg", started_at=recent(30))
        live = make_run("live-pg", status="running")
        for run in (train, other, live):
            send_run(server, "alice", run)
        send_samples(server, "alice", train.id, 1, make_samples(10))
        send_samples(server, "alice", live.id, 1, make_samples(3))
        send_run(server, "bob", make_run("bob-pg"))
        with server.client("alice") as browser:
            assert set(rows(browser.get("/").text)) == {train.id, other.id, live.id}
            assert rows(browser.get("/?label=train-pg").text) == [train.id]
            assert rows(browser.get("/?status=running").text) == [live.id]
            by_label = browser.get("/?by=label&metric=co2")
            assert "carbon-totals" in by_label.text and "other-pg" in by_label.text
            page = browser.get(f"/runs/{train.id}")
            assert page.status_code == 200 and "carbon-samples" in page.text
            assert "Warning: late" in " ".join(parse(page.text).texts)
            compare = browser.get(f"/compare?runs={train.id},{other.id}")
            assert rows(compare.text, "compare-table") == [train.id, other.id]
            grown = browser.get(f"/dashboard/api/runs/{live.id}/rows").json()
            assert len(grown["rows"]["t_s"]) == 3 and grown["next_seq"] == 9
            live_now = browser.get("/dashboard/api/live").json()["runs"]
            assert [r["id"] for r in live_now] == [live.id]
            assert browser.get("/?page=0").status_code == 400
