"""The dashboard's sweep pages over HTTP and in Chromium, on a real server running real sweeps.

One ``carbon-jupyter serve`` for the module, with its local executor: a small
script is swept over ``n=1,2`` (``n=2`` exits 1, an error run) through
``POST /api/v1/sweeps``; the pages are then read as a browser reads them and
checked against what the API answers for the same sweep. The forms are
posted as a browser posts them (URL-encoded, with the dashboard cookie).
"""

from __future__ import annotations

import contextlib
import html
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server_fixtures import bearer, make_token, start_server
from tests.test_dashboard_support import SCRIPT_LABEL, parse

pytestmark = pytest.mark.slow

#: How long a sweep may take to finish, in seconds.
SWEEP_TIMEOUT_S = 60.0

FAST_SCRIPT = """\
import argparse

import carbon_jupyter

parser = argparse.ArgumentParser()
parser.add_argument("--n", type=int)
n = parser.parse_args().n
if n == 2:
    raise SystemExit(1)
carbon_jupyter.log_metric("score", 1.0 / n)
"""

SLOW_SCRIPT = """\
import argparse
import time

parser = argparse.ArgumentParser()
parser.add_argument("--n", type=int)
parser.parse_args()
time.sleep(3)
"""

#: Tokens of the module's server: name -> (user, project, scope).
TOKENS = {
    "alice": ("alice", "vision", "ingest"),
    "reader": ("rita", "vision", "read"),
    "bob": ("bob", "audio", "ingest"),
}


@dataclass
class SweepServer:
    url: str
    tokens: dict[str, str]
    sweep_id: str  # the finished n=1,2 sweep
    detail: dict[str, Any]  # GET /api/v1/sweeps/{sweep_id} once it finished

    def page(self, who: str) -> httpx.Client:
        """A client sending ``who``'s token as the dashboard cookie; redirects not followed."""
        cookies = {"carbon_jupyter_token": self.tokens[who]}
        return httpx.Client(base_url=self.url, cookies=cookies, timeout=30.0)

    def api(self, who: str = "alice") -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=bearer(self.tokens[who]), timeout=30.0)

    def submit(self, body: dict[str, Any]) -> str:
        with self.api() as api:
            answer = api.post("/api/v1/sweeps", json=body)
        assert answer.status_code == 201, answer.text
        return str(answer.json()["id"])

    def detail_of(self, sweep_id: str) -> dict[str, Any]:
        with self.api() as api:
            answer = api.get(f"/api/v1/sweeps/{sweep_id}")
        assert answer.status_code == 200, answer.text
        found: dict[str, Any] = answer.json()
        return found

    def wait(self, sweep_id: str, *statuses: str) -> dict[str, Any]:
        """The sweep once its status is one of ``statuses`` (a finished one by default)."""
        wanted = statuses or ("done", "cancelled", "failed")
        deadline = time.monotonic() + SWEEP_TIMEOUT_S
        while True:
            found = self.detail_of(sweep_id)
            if found["status"] in wanted:
                return found
            if time.monotonic() > deadline:
                pytest.fail(f"sweep {sweep_id} is still {found['status']}, not {wanted}")
            time.sleep(0.2)


def script_sweep(content: str, params: list[str], **fields: Any) -> dict[str, Any]:
    target = {"kind": "script", "name": "t.py", "content": content}
    return {"target": target, "params": params, **fields}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SweepServer]:
    """The module's server, holding one finished sweep of ``n=1,2`` with a markup label."""
    base = tmp_path_factory.mktemp("dashboard-sweeps")
    db = str(base / "server.db")
    tokens = {name: make_token(db, *spec) for name, spec in TOKENS.items()}
    env = {
        "CARBON_JUPYTER_EXECUTOR_DB": str(base / "executor.db"),
        "CARBON_JUPYTER_DB": str(base / "local.db"),
    }
    with start_server(base, db=db, env=env) as handle:
        running = SweepServer(handle.url, tokens, "", {})
        running.sweep_id = running.submit(
            script_sweep(FAST_SCRIPT, ["n=1,2"], metric="score", label=SCRIPT_LABEL)
        )
        running.detail = running.wait(running.sweep_id)
        assert running.detail["status"] == "done", handle.output()
        yield running


def form_problem(text: str) -> str:
    found = re.search(r'id="form-problem">(.*?)</p>', text, re.S)
    assert found, text
    return html.unescape(found.group(1))


# -- over HTTP ----------------------------------------------------------------------------
def test_the_sweeps_page_lists_the_sweep(server: SweepServer) -> None:
    with server.page("alice") as client:
        answer = client.get("/sweeps")
    assert answer.status_code == 200
    page = parse(answer.text)
    assert f"/sweeps/{server.sweep_id}" in page.links
    assert "/sweeps/new" in page.links  # "Submit a sweep"
    row = re.search(rf'<tr data-sweep-id="{server.sweep_id}".*?</tr>', answer.text, re.S)
    assert row, answer.text
    cells = [html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row.group(0), re.S)]
    assert "2/2" in cells and "n=1,2" in cells and "alice" in cells and "vision" in cells
    assert html.escape(SCRIPT_LABEL) in row.group(0) and SCRIPT_LABEL not in answer.text


def test_the_sweep_page_shows_the_answer_the_comparison_and_the_runs(
    server: SweepServer,
) -> None:
    with server.page("alice") as client:
        answer = client.get(f"/sweeps/{server.sweep_id}")
    assert answer.status_code == 200
    text = answer.text
    page = parse(text)
    comparison = server.detail["comparison"]
    assert comparison["answer"].startswith("n=1")
    assert comparison["answer"] in page.texts  # the API's answer, word for word
    assert f"<b>{html.escape(comparison['answer'])}</b>" in text
    configs = re.findall(r'<tr data-config="([^"]*)"', text)
    assert configs == [c["config"] for c in comparison["configurations"]] == ["n=1", "n=2"]
    runs = server.detail["runs"]
    assert sorted(page.tables["sweep-runs"]) == sorted(r["id"] for r in runs)
    assert all(f"/runs/{r['id']}" in page.links for r in runs)
    assert "exit status 1" in page.texts  # the error run's message
    # the Bokeh comparison, BokehJS from this server
    assert re.search(r'id="sweep-plot"><div id="[^"]+" data-root-id=', text)
    assert "carbon-sweep" in text and "Bokeh.safely" in text
    assert any(src.startswith("/static/bokeh/bokeh.min.js") for src in page.scripts)
    assert "cdn.bokeh.org" not in text
    # the label is text; a finished sweep does not reload itself
    assert html.escape(SCRIPT_LABEL) in text and SCRIPT_LABEL not in text
    assert 'http-equiv="refresh"' not in text
    assert 'id="cancel-button"' not in text and 'id="resume-button"' not in text


def test_other_projects_see_no_sweep_and_readers_change_nothing(server: SweepServer) -> None:
    sweep = f"/sweeps/{server.sweep_id}"
    with server.page("bob") as bob:
        assert bob.get(sweep).status_code == 404
        assert bob.post(f"{sweep}/cancel").status_code == 404
        assert server.sweep_id not in bob.get("/sweeps").text
    with server.page("alice") as alice:
        assert alice.get("/sweeps/no-such-sweep").status_code == 404
        assert alice.get("/sweeps/..%2Fetc").status_code == 404
    with server.page("reader") as reader:
        assert reader.get(sweep).status_code == 200
        assert "/sweeps/new" not in parse(reader.get("/sweeps").text).links
        assert reader.get("/sweeps/new").status_code == 403
        assert reader.post(f"{sweep}/resume").status_code == 403
        assert reader.post("/sweeps/new", data={"content": "x"}).status_code == 403
    with httpx.Client(base_url=server.url) as nobody:
        assert nobody.get(sweep).status_code == 401  # the sign-in page


def test_the_form_submits_a_sweep_and_redirects_to_it(server: SweepServer) -> None:
    form = {
        "kind": "script", "name": "form.py", "content": FAST_SCRIPT, "params": "n=1,4\r\n\r\n",
        "repeat": "1", "phase": "train", "items": "", "label": "from the form", "metric": "score",
        "threads": "", "gpus": "", "executor": "",
    }  # fmt: skip
    with server.page("alice") as client:
        shown = client.get("/sweeps/new")
        assert shown.status_code == 200
        fields = {"name", "threads", "gpus", "repeat", "items", "label", "metric", "executor"}
        assert fields <= set(parse(shown.text).inputs)
        assert '<textarea name="content"' in shown.text and '<textarea name="params"' in shown.text
        answer = client.post("/sweeps/new", data=form)
    assert answer.status_code == 303, answer.text
    location = answer.headers["location"]
    assert re.fullmatch(r"/sweeps/[0-9a-f]{12}", location), location
    done = server.wait(location.rsplit("/", 1)[1])
    assert done["status"] == "done" and done["total"] == 2 == done["finished"]
    assert done["params"] == ["n=1,4"] and done["label"] == "from the form"
    assert done["phase"] == "train" and done["target"] == {"kind": "script", "name": "form.py"}


@pytest.mark.parametrize(
    ("changes", "field", "says"),
    [
        ({"name": "../t.py"}, "name", "plain file name ending in .py"),
        ({"params": "n=1,2\nnot a parameter"}, "params (line 2)", "NAME=VALUE"),
        ({"repeat": "twice"}, "repeat", "integer"),
        ({"kind": "command"}, "kind", "script or notebook"),
        ({"kind": "notebook", "name": "t.ipynb"}, "content", ".ipynb JSON"),
        ({"executor": "ftp://x"}, "executor", "dask://HOST:PORT"),
        ({"threads": "0"}, "threads", "at least 1"),
    ],
)
def test_bad_form_input_shows_the_form_again_naming_the_field(
    server: SweepServer, changes: dict[str, str], field: str, says: str
) -> None:
    form = {"kind": "script", "name": "t.py", "content": FAST_SCRIPT, "params": "n=1"}
    with server.page("alice") as client:
        answer = client.post("/sweeps/new", data={**form, **changes})
    assert answer.status_code == 422
    problem = form_problem(answer.text)
    assert problem.startswith(f"{field}: ") and says in problem, problem
    assert "Traceback" not in answer.text
    # what was typed is kept
    assert html.escape(FAST_SCRIPT.splitlines()[0]) in answer.text


def test_a_form_too_large_is_refused_with_a_page(server: SweepServer) -> None:
    body = b"kind=script&content=" + b"x" * 2_600_000
    with server.page("alice") as client:
        answer = client.post(
            "/sweeps/new",
            content=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    assert answer.status_code == 413
    assert "text/html" in answer.headers["content-type"]


def test_cancel_from_the_page_stops_the_sweep_and_resume_queues_it_again(
    server: SweepServer,
) -> None:
    sweep_id = server.submit(script_sweep(SLOW_SCRIPT, ["n=1,2,3"]))
    path = f"/sweeps/{sweep_id}"
    server.wait(sweep_id, "running")
    with server.page("alice") as client:
        running = client.get(path).text
        assert '<meta http-equiv="refresh" content="2">' in running
        assert f'action="{path}/cancel"' in running
        answer = client.post(f"{path}/cancel")
        assert answer.status_code == 303 and answer.headers["location"] == path
        stopped = server.wait(sweep_id)
        assert stopped["status"] == "cancelled"
        assert stopped["finished"] < stopped["total"] == 3
        page = client.get(path).text
        assert 'http-equiv="refresh"' not in page
        assert f'action="{path}/resume"' in page and 'id="cancel-button"' not in page
        # Resume queues it again; cancelling it once more stops it.
        answer = client.post(f"{path}/resume")
        assert answer.status_code == 303 and answer.headers["location"] == path
        assert server.detail_of(sweep_id)["status"] in ("queued", "running")
        assert client.post(f"{path}/cancel").status_code == 303
        again = server.wait(sweep_id)
    assert again["status"] == "cancelled" and again["finished"] < 3


# -- in Chromium --------------------------------------------------------------------------
# Canvases drawn under the element ``selector``, looking into shadow roots (BokehJS's views).
_CANVASES_JS = """
(selector) => {
  const count = (node) => {
    let n = 0;
    for (const el of node.querySelectorAll("*")) {
      if (el.tagName === "CANVAS") n += 1;
      if (el.shadowRoot) n += count(el.shadowRoot);
    }
    return n;
  };
  const root = document.querySelector(selector);
  return root ? count(root) : 0;
}
"""


@contextlib.contextmanager
def chromium_page() -> Iterator[Any]:
    """A page in Debian's Chromium driven by Playwright (skipped without them, failed on CI)."""
    from tests.browser.conftest import headless_chromium

    with headless_chromium() as browser:
        yield browser.new_context(viewport={"width": 1400, "height": 1000})


def console_error(message: Any, errors: list[str]) -> None:
    """Keep an error the page's console shows (not the browser's own favicon.ico request)."""
    where = str((message.location or {}).get("url", ""))
    if message.type == "error" and not where.endswith("/favicon.ico"):
        errors.append(f"{message.text} ({where})")


@pytest.mark.browser
@pytest.mark.timeout(180)
def test_the_sweep_page_in_chromium_draws_the_plot_and_keeps_the_label_text(
    server: SweepServer, tmp_path: Path
) -> None:
    from tests.browser.conftest import poll

    with chromium_page() as context:
        context.add_cookies(
            [{"name": "carbon_jupyter_token", "value": server.tokens["alice"], "url": server.url}]
        )
        page = context.new_page()
        page.set_default_timeout(30_000)
        errors: list[str] = []
        dialogs: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda message: console_error(message, errors))

        def dialog(shown: Any) -> None:
            dialogs.append(shown.message)
            shown.dismiss()

        page.on("dialog", dialog)
        page.goto(f"{server.url}/sweeps/{server.sweep_id}")
        poll(
            lambda: page.evaluate(_CANVASES_JS, "#sweep-plot") > 0,
            timeout_s=20,
            what="the comparison plot to draw",
            diagnose=lambda: f"errors: {errors}",
        )
        answer = page.locator("#sweep-answer")
        assert answer.is_visible()
        assert answer.inner_text() == server.detail["comparison"]["answer"]
        assert page.locator("#sweep-label").inner_text() == SCRIPT_LABEL
        rows = page.locator("#sweep-runs tbody tr[data-run-id]")
        assert rows.count() == 2
        page.screenshot(path=str(tmp_path / "sweep.png"))
        time.sleep(0.5)  # any late script error or dialog
        assert dialogs == [] and errors == [], (dialogs, errors)
