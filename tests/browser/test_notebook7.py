"""%%carbon and the Carbon panel in a real Notebook 7 (the ``notebook`` package, 7.x).

What README says of Notebook 7, checked in its own pages (``/notebooks/<path>``):
a ``%%carbon`` cell shows a live Bokeh widget while it runs and a static plot
with the summary once it ends, and the Carbon panel sits in the right sidebar,
under View > Right Sidebar > Show Carbon, with a working "Track every cell"
switch. One notebook is driven through the module (the kernel replays an A100
trace next to the real CPU model):

0. ``%load_ext carbon_jupyter``
1. ``%%carbon nb7 --interval 0.2`` sleeping 4 s: read while it runs
2. a 3 s cell run after "Track every cell" is switched on in the panel

Screenshots go to ``test-artifacts/notebook7-*.png``.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.browser.conftest import (
    SAMPLES_SOURCE,
    WATTS,
    CarbonPanel,
    JupyterLab,
    KernelFrames,
    LabPage,
    assert_static_run_output,
    failed_test,
    open_lab_page,
    poll,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(150)]

NOTEBOOK = "notebook7.ipynb"
LOAD_CELL, LIVE_CELL, TRACKED_CELL = 0, 1, 2
LIVE_S = 4.0
TRACKED_S = 3.0
CELLS = [
    "%load_ext carbon_jupyter",
    f"%%carbon nb7 --interval 0.2\nimport time; time.sleep({LIVE_S:g})",
    f"time.sleep({TRACKED_S:g})",
]
READING_SPACING_S = 0.3
STEP_TIMEOUT_S = 20.0


@dataclass
class Notebook7:
    """The page on the Notebook 7 server, and the kernel frames it received."""

    page: LabPage
    frames: KernelFrames


@pytest.fixture(scope="module")
def nb7(
    playwright_driver: Any,
    jupyter_notebook7: JupyterLab,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Notebook7]:
    """The notebook open in Notebook 7, its kernel idle."""
    jupyter_notebook7.write_notebook(NOTEBOOK, CELLS)
    profile = tmp_path_factory.mktemp("chromium-notebook7")
    with open_lab_page(playwright_driver, jupyter_notebook7, profile, "notebook7") as page:
        frames = KernelFrames(page.page)
        page.open_notebook(NOTEBOOK)
        yield Notebook7(page, frames)


@pytest.fixture(autouse=True)
def _screenshot_on_failure(nb7: Notebook7, request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if failed_test(request):
        print(f"\nscreenshot of the failure: {nb7.page.screenshot(request.node.name + '-failed')}")


# -- the live plot ------------------------------------------------------------------------
def _live_rows(lab: LabPage) -> list[tuple[str, int]]:
    """(source id, rows) of the power plot's sources in the live cell."""
    sources = lab.bokeh_state(LIVE_CELL)["sources"]
    return [(str(s["id"]), int(s["rows"])) for s in sources if s["name"] == SAMPLES_SOURCE]


def _read_while_running(lab: LabPage) -> list[int]:
    """Rows of the live plot's source, read every 0.3 s while the cell still runs."""
    found = poll(
        lambda: _live_rows(lab) or not lab.is_running(LIVE_CELL),
        timeout_s=30,
        what="the live plot to appear",
        diagnose=lab.diagnose,
    )
    if not isinstance(found, list):
        return []
    live_id = found[0][0]  # the live widget's source; the final plot brings its own
    readings: list[int] = []
    while lab.is_running(LIVE_CELL):
        rows = [n for source, n in _live_rows(lab) if source == live_id]
        if not rows or not lab.is_running(LIVE_CELL):
            break
        readings.append(rows[0])
        if len(readings) == 6:
            lab.screenshot("1-live")
        lab.page.wait_for_timeout(READING_SPACING_S * 1000)
    return readings


def _bokeh_widget_opened(frames: KernelFrames, since_s: float) -> bool:
    """The kernel opened a jupyter_bokeh widget (a BokehModel comm) after ``since_s``."""
    for f in frames.since(since_s):
        if f.msg_type == "comm_open" and f.content:
            state = (f.content.get("data") or {}).get("state") or {}
            if state.get("_model_name") == "BokehModel":
                return True
    return False


def test_carbon_cell_shows_a_live_plot_then_the_static_plot_and_summary(nb7: Notebook7) -> None:
    lab = nb7.page
    started_s = time.monotonic()
    lab.run_cell(LOAD_CELL)
    assert lab.output(LOAD_CELL).inner_text().strip() == ""

    before = lab.execution_count(LIVE_CELL)
    clicked_s = time.monotonic()
    lab.run_cell(LIVE_CELL, wait=False)
    lab.wait_cell_started(LIVE_CELL)
    readings = _read_while_running(lab)
    lab.wait_cell_done(LIVE_CELL, after=before, timeout_s=LIVE_S + 60)

    # While it ran: a jupyter_bokeh widget whose plotted data kept growing.
    assert _bokeh_widget_opened(nb7.frames, clicked_s), "no Bokeh widget was opened"
    assert len(readings) >= 3, f"only {len(readings)} readings while the cell ran: {readings}"
    assert readings == sorted(readings), f"the plotted rows went down: {readings}"
    increases = sum(1 for a, b in itertools.pairwise(readings) if b > a)
    assert increases >= 2, f"the plot did not keep growing while running: {readings}"

    # Once it ended: one static plot of the whole run, and the summary under it.
    assert_static_run_output(lab, LIVE_CELL, label="nb7", min_rows=max(readings))
    lab.wait_kernel_idle()
    lab.screenshot("2-static")
    took_s = time.monotonic() - started_s
    print(f"\nnotebook 7 live plot: {took_s:.1f} s; rows read while running: {readings}")


# -- the Carbon panel ---------------------------------------------------------------------
def _show_carbon_from_the_view_menu(lab: LabPage) -> None:
    """View > Right Sidebar > Show Carbon, as a user opens it in Notebook 7."""
    page = lab.page
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^View$")).click()
    page.locator(".lm-Menu-item", has_text=re.compile(r"^Right Sidebar$")).first.hover()
    page.locator(".lm-Menu-item", has_text=re.compile(r"^Show Carbon$")).first.click()


def _stored_runs(server: JupyterLab, kernel_id: str) -> dict[str, Any]:
    """The kernel's runs as stored in the SQLite file, by run id."""
    from carbon_jupyter.store.sqlite import Store

    store = Store(server.db_path)
    try:
        return {r.id: r for r in store.runs(kernel=kernel_id, limit=None)}
    finally:
        store.close()


def test_carbon_panel_tracks_every_cell(nb7: Notebook7, jupyter_notebook7: JupyterLab) -> None:
    lab = nb7.page
    started_s = time.monotonic()
    kernel = jupyter_notebook7.kernel_for(NOTEBOOK)
    assert kernel is not None
    kernel_id = str(kernel["id"])
    panel = CarbonPanel(lab)

    # 1. Hidden at first; View > Right Sidebar > Show Carbon opens it for this notebook.
    assert not panel.root.is_visible(), panel.describe()
    _show_carbon_from_the_view_menu(lab)
    panel.root.wait_for(state="visible", timeout=STEP_TIMEOUT_S * 1000)
    poll(
        lambda: panel.switch.is_enabled() and WATTS.match(panel.text(panel.machine)),
        timeout_s=STEP_TIMEOUT_S,
        what="the switch to become usable and the machine's power to show",
        diagnose=panel.describe,
    )
    assert NOTEBOOK in panel.text(panel.root.locator(".cj-notebook")), panel.describe()
    assert not panel.switch.is_checked(), panel.describe()
    lab.screenshot("3-panel-opened")
    rows_before = panel.table()

    # 2. The switch turns per-cell tracking on in the kernel.
    panel.switch.click()
    poll(
        lambda: panel.switch.is_enabled() and panel.switch.is_checked(),
        timeout_s=STEP_TIMEOUT_S,
        what="the kernel to confirm per-cell tracking on",
        diagnose=panel.describe,
    )
    assert panel.text(panel.error) == "", panel.describe()

    # 3. A plain cell: live kernel power while it runs, then its run in the table.
    before = lab.execution_count(TRACKED_CELL)
    lab.run_cell(TRACKED_CELL, wait=False)
    lab.wait_cell_started(TRACKED_CELL)
    live_power = poll(
        lambda: (
            (lab.is_running(TRACKED_CELL) and WATTS.match(panel.text(panel.power)))
            or lab.execution_count(TRACKED_CELL) is not None
        ),
        timeout_s=TRACKED_S + 30,
        what="the kernel power to show watts while the cell runs",
        diagnose=panel.describe,
    )
    assert isinstance(live_power, re.Match), f"no live power while the cell ran; {panel.describe()}"
    lab.screenshot("4-panel-running")
    count = lab.wait_cell_done(TRACKED_CELL, after=before, timeout_s=TRACKED_S + 30)
    poll(
        lambda: len(panel.table()) == len(rows_before) + 1,
        timeout_s=STEP_TIMEOUT_S,
        what="the tracked cell's run to appear in the 'Latest runs' table",
        diagnose=panel.describe,
    )
    lab.wait_kernel_idle()
    newest, *older = panel.table()
    assert newest["run"] == f"In [{count}]", newest
    assert newest["status"] == "ok", newest
    assert float(newest["wh"]) > 0 and float(newest["co2_g"]) > 0, newest
    assert "nb7" in [row["run"] for row in older], older  # the %%carbon cell's run is listed too
    assert "[carbon]" in lab.output(TRACKED_CELL).inner_text()
    assert WATTS.match(panel.text(panel.machine)), panel.describe()
    assert float(panel.text(panel.energy).split()[0]) > 0, panel.describe()

    # The table shows what the kernel stored.
    stored = _stored_runs(jupyter_notebook7, kernel_id)
    assert {row["id"] for row in panel.table()} == set(stored), (panel.table(), list(stored))
    assert stored[newest["id"]].duration_s >= TRACKED_S, stored[newest["id"]]
    lab.screenshot("5-panel-tracked")
    took_s = time.monotonic() - started_s
    print(f"\nnotebook 7 panel: {took_s:.1f} s; live kernel power: {live_power.group(0)}")
