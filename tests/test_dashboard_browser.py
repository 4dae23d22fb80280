"""The team dashboard in Chromium: live plots grow, filters change the table, text stays text.

One real server process for the module (:func:`tests.test_dashboard_support.run_dashboard`);
runs are sent through its HTTP API while the page is open, as a notebook
forwarding a live run does. The page is read through BokehJS itself (the rows
of the plot's ``carbon-samples`` source) and the DOM.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import ARTIFACTS, headless_chromium, poll
from tests.test_dashboard_support import (
    SCRIPT_LABEL,
    Dashboard,
    make_run,
    make_samples,
    run_dashboard,
    send_run,
    send_samples,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(180)]

PAGE_TIMEOUT_MS = 30_000

# Rows of the plot's samples source, read from BokehJS (-1 before the plot is drawn).
_SOURCE_ROWS_JS = """
(name) => {
  const bokeh = window.Bokeh;
  if (!bokeh || !bokeh.documents) return -1;
  for (const doc of bokeh.documents) {
    const source = doc.get_model_by_name(name);
    if (source) return source.get_length() ?? 0;
  }
  return -1;
}
"""


_COLUMN_JS = """
([name, column]) => {
  for (const doc of (window.Bokeh && window.Bokeh.documents) || []) {
    const source = doc.get_model_by_name(name);
    if (source) {
      const values = source.data instanceof Map ? source.data.get(column) : source.data[column];
      return values ? Array.from(values) : [];
    }
  }
  return [];
}
"""

# Elements that user text would have made had it been parsed as markup.
_INJECTED_JS = """
() => document.querySelectorAll('img[src="x"], b[onmouseover]').length
  + Array.from(document.scripts).filter((s) => s.textContent.trim() === "alert(1)").length
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    with run_dashboard(tmp_path_factory.mktemp("dashboard-browser")) as running:
        yield running


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright (skipped without them, failed on CI)."""
    with headless_chromium() as browser:
        yield browser


class Tab:
    """One page, with every dialog it tries to open and every script error recorded."""

    def __init__(self, page: Any, name: str) -> None:
        self.page = page
        self.name = name
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        page.on("dialog", self._dialog)
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.set_default_timeout(PAGE_TIMEOUT_MS)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def table(self, table_id: str = "runs-table") -> list[str]:
        """The run ids of the rows of the table ``table_id``, top to bottom."""
        ids = self.page.locator(f"#{table_id} tbody tr[data-run-id]").evaluate_all(
            "(rows) => rows.map((r) => r.getAttribute('data-run-id'))"
        )
        return [str(i) for i in ids]

    def source_rows(self, name: str = "carbon-samples") -> int:
        return int(self.page.evaluate(_SOURCE_ROWS_JS, name))

    def column(self, source: str, name: str) -> list[Any]:
        """The values of column ``name`` of the Bokeh source named ``source`` in the page."""
        return list(self.page.evaluate(_COLUMN_JS, [source, name]))

    def screenshot(self, step: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"dashboard-{self.name}-{step}.png"))


@pytest.fixture
def tab(chromium: Any, server: Dashboard, request: pytest.FixtureRequest) -> Iterator[Tab]:
    """A fresh browser context signed in as alice through the sign-in form."""
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = context.new_page()
        tab = Tab(page, request.node.name)
        page.goto(f"{server.url}/")
        page.fill('input[name="token"]', server.tokens["alice"])
        page.click('button[type="submit"]')
        page.wait_for_selector("#runs-table")
        yield tab
        assert not tab.errors, tab.errors
    finally:
        context.close()


def test_a_live_run_plot_grows_while_it_runs(server: Dashboard, tab: Tab) -> None:
    run = make_run("grows-live", status="running")
    send_run(server, "alice", run)
    send_samples(server, "alice", run.id, 1, make_samples(4))
    tab.page.goto(f"{server.url}/runs/{run.id}")
    first = poll(
        lambda: (rows := tab.source_rows()) > 0 and rows,
        timeout_s=20,
        what="the live plot to draw",
    )
    assert first == 5  # the origin and the four ticks sent so far
    sent = 4
    seen = [first]
    for _ in range(3):
        send_samples(server, "alice", run.id, 3 * sent + 1, make_samples(2, first_tick=sent + 1))
        sent += 2
        grown = poll(
            lambda: (rows := tab.source_rows()) > seen[-1] and rows,
            timeout_s=15,
            what=f"the plot to grow past {seen[-1]} rows",
        )
        seen.append(grown)
    assert seen[-1] == 1 + sent, seen
    energy = tab.page.locator("#run-energy").inner_text()
    assert energy.endswith("Wh") and not energy.startswith("0 "), energy
    tab.screenshot("live")

    # When the run ends the page shows its final figures.
    send_run(server, "alice", make_run("grows-live", id=run.id))
    poll(
        lambda: tab.page.locator("#run-status").inner_text() == "ok",
        timeout_s=15,
        what="the page to show the finished run",
    )
    assert tab.page.locator("#live-badge").count() == 0


def test_the_live_list_updates_while_you_watch(server: Dashboard, tab: Tab) -> None:
    run = make_run("appears-live", status="running")
    assert run.id not in tab.table("live-table")
    send_run(server, "alice", run)
    send_samples(server, "alice", run.id, 1, make_samples(2))
    poll(
        lambda: run.id in tab.table("live-table"),
        timeout_s=15,
        what="the new live run in the live list",
    )
    send_run(server, "alice", make_run("appears-live", id=run.id))
    poll(
        lambda: run.id not in tab.table("live-table"),
        timeout_s=15,
        what="the ended run to leave the live list",
    )


def test_filters_change_the_table(server: Dashboard, tab: Tab) -> None:
    mine = make_run("filter-me", started_at="2025-02-01T09:00:00.000+00:00")
    other = make_run("something-else", started_at="2025-02-02T09:00:00.000+00:00")
    for run in (mine, other):
        send_run(server, "alice", run)
    tab.page.goto(f"{server.url}/")
    before = tab.table()
    assert mine.id in before and other.id in before
    tab.page.fill('form.filters input[name="label"]', "filter-me")
    tab.page.click('form.filters button[type="submit"]')
    tab.page.wait_for_url("**label=filter-me**")
    assert tab.table() == [mine.id]
    shared = tab.page.url
    tab.page.goto(f"{server.url}/")
    tab.page.goto(shared)  # the link alone brings the same table back
    assert tab.table() == [mine.id]

    # Compare: tick two runs, press the button, land on /compare?runs=...
    tab.page.goto(f"{server.url}/?since=2025-02-01&until=2025-02-03")
    assert set(tab.table()) == {mine.id, other.id}
    for run in (mine, other):
        tab.page.check(f'#runs-table tr[data-run-id="{run.id}"] input[type="checkbox"]')
    tab.page.click("#compare-button")
    tab.page.wait_for_url("**/compare?runs=**")
    assert set(tab.table("compare-table")) == {mine.id, other.id}
    poll(lambda: tab.source_rows("carbon-groups") == 2, timeout_s=15, what="the comparison plot")


def test_a_script_label_shows_as_text_and_opens_no_dialog(server: Dashboard, tab: Tab) -> None:
    run = make_run(
        SCRIPT_LABEL,
        warnings=("<img src=x onerror=alert(2)>",),
        host="<b onmouseover=alert(3)>h</b>",
    )
    live = make_run(SCRIPT_LABEL, status="running")
    send_run(server, "alice", run)
    send_run(server, "alice", live)
    send_samples(server, "alice", run.id, 1, make_samples(6))
    send_samples(server, "alice", live.id, 1, make_samples(2))
    for path in ("/", f"/runs/{run.id}", f"/compare?runs={run.id},{live.id}", "/?by=label"):
        tab.page.goto(f"{server.url}{path}")
        tab.page.wait_for_load_state("load")
        time.sleep(0.5)  # let the page's scripts and BokehJS run
        injected = tab.page.evaluate(_INJECTED_JS)
        assert injected == 0, (path, injected)
    tab.page.goto(f"{server.url}/")
    link = tab.page.locator(f'#runs-table tr[data-run-id="{run.id}"] a')
    assert link.inner_text() == SCRIPT_LABEL
    # the live list is redrawn by the page's script from JSON: still text
    poll(
        lambda: live.id in tab.table("live-table") and tab.dialogs == [],
        timeout_s=10,
        what="the live list",
    )
    time.sleep(2.5)  # one refresh of the live list at least
    live_link = tab.page.locator(f'#live-table tr[data-run-id="{live.id}"] a')
    assert live_link.inner_text() == SCRIPT_LABEL
    # In the totals by label the label is data: the legend and hover draw it as text.
    tab.page.goto(f"{server.url}/?by=label")
    groups = poll(
        lambda: tab.column("carbon-totals", "group"), timeout_s=15, what="the totals figure"
    )
    assert SCRIPT_LABEL in groups, groups
    tab.page.goto(f"{server.url}/runs/{run.id}")
    assert tab.page.locator("h1").inner_text() == SCRIPT_LABEL
    assert "<img src=x onerror=alert(2)>" in tab.page.locator(".problems").inner_text()
    assert tab.dialogs == []


def test_signing_in_is_needed_and_a_bad_token_is_refused(
    chromium: Any, server: Dashboard, tmp_path: Path
) -> None:
    context = chromium.new_context()
    try:
        page = context.new_page()
        page.goto(f"{server.url}/?label=eval")
        page.fill('input[name="token"]', "cj_not-a-token")
        page.click('button[type="submit"]')
        assert "not known" in page.locator(".problem").inner_text()
        cookies = context.cookies()
        assert not [c for c in cookies if c["name"] == "carbon_jupyter_token"]
        page.fill('input[name="token"]', server.tokens["bob"])
        page.click('button[type="submit"]')
        page.wait_for_selector("#runs-table")
        assert page.url.endswith("/?label=eval")
        cookie = next(c for c in context.cookies() if c["name"] == "carbon_jupyter_token")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert page.evaluate("document.cookie") == ""  # scripts cannot read the token
        page.click("text=Sign out")
        page.wait_for_selector('input[name="token"]')
    finally:
        context.close()


def test_the_api_docs_render_from_this_server_alone(server: Dashboard, tab: Tab) -> None:
    """``/docs`` draws every route from files the server serves: no CDN, no internet."""
    outside: list[str] = []
    origin = server.url.rstrip("/")
    tab.page.on("request", lambda r: None if r.url.startswith(origin) else outside.append(r.url))
    tab.page.goto(f"{server.url}/docs")
    tab.page.wait_for_selector(".swagger-ui .info .title")
    assert "carbon-jupyter team server" in tab.page.inner_text(".swagger-ui .info .title")
    tab.page.wait_for_selector(".opblock")
    paths = tab.page.locator(".opblock-summary-path").all_inner_texts()
    assert "/api/v1/runs/{run_id}" in " ".join(paths).replace("\u200b", "")
    assert not outside, outside
