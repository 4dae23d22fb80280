"""The Carbon sidebar in a real JupyterLab: the switch, live power, the runs table, the status bar.

One notebook that never loads carbon-jupyter itself (the switch does):

0. a cell that keeps the CPU busy for a few seconds (read while it runs)
1. a shorter busy cell
2. a cell run after the switch is off again: it must not be tracked

What the panel shows is checked against the run store, both through the
server extension's REST routes (``/carbon-jupyter/api/runs?kernel=<id>``) and
by reading the SQLite file the kernel writes. Screenshots go to
``test-artifacts/test_sidebar_*.png``.
"""

from __future__ import annotations

import json
import math
import re
import time
import urllib.parse
import urllib.request
from typing import Any

import pytest

from tests.browser.conftest import NUMBER, WATTS, CarbonPanel, JupyterLab, LabPage, poll

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(180)]

NOTEBOOK = "sidebar.ipynb"
LONG_CELL, SHORT_CELL, UNTRACKED_CELL = 0, 1, 2
LONG_S = 5.0
LIVE_READINGS = 3  # readings per device the chart shows before the long cell ends
CELLS = [
    f"import time\nt = time.time()\nwhile time.time() - t < {LONG_S:g}:\n    pass",
    "t = time.time()\nwhile time.time() - t < 1:\n    pass",
    "untracked = sum(i * i for i in range(100_000))",
]
STATUS_TEXT = re.compile(rf"^⚡ (idle|{NUMBER} W) · ({NUMBER}|–) g CO₂$")
STEP_TIMEOUT_S = 20.0


# -- the store, through the server extension and directly ---------------------------------
def api_runs(server: JupyterLab, kernel_id: str) -> list[dict[str, Any]]:
    """The kernel's runs from ``GET /carbon-jupyter/api/runs?kernel=<id>``, newest first."""
    query = urllib.parse.urlencode({"kernel": kernel_id, "limit": 100})
    request = urllib.request.Request(
        f"{server.url}/carbon-jupyter/api/runs?{query}",
        headers={"Authorization": f"token {server.token}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return list(json.loads(response.read().decode("utf-8"))["runs"])


def stored_run_ids(server: JupyterLab, kernel_id: str) -> set[str]:
    """The kernel's run ids, read from the SQLite file itself."""
    from carbon_jupyter.store.sqlite import Store

    if not server.db_path.exists():
        return set()
    store = Store(server.db_path)
    try:
        return {r.id for r in store.runs(kernel=kernel_id, limit=None)}
    finally:
        store.close()


# -- reading the panel --------------------------------------------------------------------
def close_to(shown: float | None, expected: float) -> bool:
    """A figure shown with three significant figures matches ``expected``."""
    return shown is not None and math.isclose(shown, expected, rel_tol=0.01, abs_tol=1e-9)


def wait_for_polls(lab: LabPage, kernel_id: str, count: int = 2) -> None:
    """Wait for ``count`` of the panel's next session-totals answers for this kernel."""

    def is_totals(response: Any) -> bool:
        path = urllib.parse.urlparse(response.url).path
        return path.endswith(f"/kernels/{kernel_id}/totals")

    for _ in range(count):
        with lab.page.expect_response(is_totals, timeout=STEP_TIMEOUT_S * 1000):
            pass


# -- the steps ----------------------------------------------------------------------------
def open_panel(lab: LabPage, panel: CarbonPanel) -> None:
    lab.page.locator('.jp-SideBar li[data-id="carbon-jupyter-panel"]').click()
    panel.root.wait_for(state="visible", timeout=STEP_TIMEOUT_S * 1000)
    # The kernel answered whether carbon-jupyter is importable: the switch becomes usable.
    poll(
        lambda: panel.switch.is_enabled(),
        timeout_s=STEP_TIMEOUT_S,
        what="the 'Track every cell' switch to become usable",
        diagnose=panel.describe,
    )
    assert not panel.switch.is_checked(), panel.describe()
    assert NOTEBOOK in panel.text(panel.root.locator(".cj-notebook")), panel.describe()


def set_switch(panel: CarbonPanel, on: bool) -> None:
    """Click the switch and wait until the kernel confirmed the new state."""
    panel.switch.click()

    def confirmed() -> bool:
        return panel.switch.is_enabled() and panel.switch.is_checked() == on

    poll(
        confirmed,
        timeout_s=STEP_TIMEOUT_S,
        what=f"the kernel to confirm per-cell tracking {'on' if on else 'off'}",
        diagnose=panel.describe,
    )
    assert panel.text(panel.error) == "", panel.describe()


def watch_long_cell(lab: LabPage, panel: CarbonPanel) -> dict[str, Any]:
    """While the long cell runs: the live power, the chart and the status bar.

    ``most_points``: the most points one line of the chart had while the cell ran
    (a device with a single reading is drawn as a flat line of two points).
    """
    seen: dict[str, Any] = {}
    clicked_s = time.monotonic()
    deadline = clicked_s + LONG_S + 30
    while time.monotonic() < deadline:
        power = panel.text(panel.power)
        lines = panel.chart_lines()
        status = panel.text(panel.status)
        still_running = lab.is_running(LONG_CELL)
        if still_running and WATTS.match(power) and "power" not in seen:
            seen["power"] = power
            seen["power_after_s"] = round(time.monotonic() - clicked_s, 2)
        if still_running and lines:
            most = max(len(line.split()) for line in lines)
            seen["most_points"] = max(seen.get("most_points", 0), most)
        if still_running and lines and "lines" not in seen:
            seen["lines"] = lines
            seen["legend"] = panel.text(panel.root.locator(".cj-legend"))
        if still_running and re.search(rf"⚡ {NUMBER} W", status) and "status" not in seen:
            seen["status"] = status
        live = seen.get("most_points", 0) >= LIVE_READINGS
        if live and {"power", "lines", "status"} <= seen.keys() and "screenshot" not in seen:
            seen["screenshot"] = lab.screenshot("2-running")
        if lab.execution_count(LONG_CELL) is not None:
            break
        lab.page.wait_for_timeout(100)
    return seen


def test_sidebar_follows_the_kernel_while_tracking_is_on(
    jupyter_lab: JupyterLab, lab: LabPage
) -> None:
    started_s = time.monotonic()
    notebook = jupyter_lab.write_notebook(NOTEBOOK, CELLS)
    cell_ids = [str(c.id) for c in jupyter_lab.read_notebook(notebook.name).cells]
    lab.open_notebook(NOTEBOOK)
    kernel = jupyter_lab.kernel_for(NOTEBOOK)
    assert kernel is not None
    kernel_id = str(kernel["id"])
    panel = CarbonPanel(lab)

    # 1. The panel, for this notebook, before anything ran.
    open_panel(lab, panel)
    poll(
        lambda: WATTS.match(panel.text(panel.machine)),
        timeout_s=STEP_TIMEOUT_S,
        what="the panel to show the machine's power",
        diagnose=panel.describe,
    )
    assert panel.text(panel.power) == "idle", panel.describe()
    assert panel.rows.count() == 0, panel.describe()
    assert api_runs(jupyter_lab, kernel_id) == []
    lab.screenshot("1-opened")

    # 2. The switch turns per-cell tracking on in the kernel; switching is itself not tracked.
    set_switch(panel, on=True)
    assert api_runs(jupyter_lab, kernel_id) == [], "switching tracking on stored a run"

    # 3. Run the long cell: live power and the chart while it runs, then its run in the table.
    lab.run_cell(LONG_CELL, wait=False)
    seen = watch_long_cell(lab, panel)
    assert "power" in seen, f"no live power while the cell ran; {panel.describe()}"
    assert "lines" in seen, f"the power chart drew nothing while the cell ran; {seen}"
    assert "status" in seen, f"the status bar showed no watts while the cell ran; {seen}"
    assert "replay" in seen["legend"] or "A100" in seen["legend"], seen
    # The chart grows while the cell runs: new readings are appended, one line per device.
    assert seen.get("most_points", 0) >= LIVE_READINGS, seen
    lab.wait_cell_done(LONG_CELL, timeout_s=LONG_S + 30)
    poll(
        lambda: panel.rows.count() == 1 and panel.number(panel.energy),
        timeout_s=STEP_TIMEOUT_S,
        what="the long cell's run in the table and the session energy",
        diagnose=panel.describe,
    )
    energy_after_long_wh = panel.number(panel.energy)
    co2_after_long_g = panel.number(panel.co2)
    assert energy_after_long_wh and co2_after_long_g, panel.describe()

    lab.run_cell(SHORT_CELL, timeout_s=30)
    poll(
        lambda: (
            panel.rows.count() == 2 and (panel.number(panel.energy) or 0) > energy_after_long_wh
        ),
        timeout_s=STEP_TIMEOUT_S,
        what="the short cell's run in the table and the session energy to grow",
        diagnose=panel.describe,
    )
    lab.wait_kernel_idle()
    poll(
        lambda: panel.text(panel.power) == "idle",
        timeout_s=STEP_TIMEOUT_S,
        what="the kernel power to read idle after the cells",
        diagnose=panel.describe,
    )
    assert (panel.number(panel.co2) or 0) > co2_after_long_g, panel.describe()
    assert WATTS.match(panel.text(panel.machine)), panel.describe()
    lab.screenshot("3-tracked")

    # The table, the session figures and the store agree.
    runs = {r["id"]: r for r in api_runs(jupyter_lab, kernel_id)}
    table = panel.table()
    assert [row["id"] for row in table] == list(runs), (table, list(runs))
    assert set(runs) == stored_run_ids(jupyter_lab, kernel_id)
    newest_first = (SHORT_CELL, LONG_CELL)
    for row, index in zip(table, newest_first, strict=True):
        run = runs[row["id"]]
        assert run["status"] == "ok" == row["status"], (row, run)
        assert run["cell"] == cell_ids[index], (run["cell"], cell_ids)
        assert row["run"] == f"In [{lab.execution_count(index)}]", row
        assert close_to(float(row["wh"]), run["energy_j"] / 3600), (row, run["energy_j"])
        assert close_to(float(row["co2_g"]), run["co2_g"]), (row, run["co2_g"])
        assert run["energy_j"] > 0 and run["co2_g"] > 0, run
        assert "[carbon]" in lab.output(index).inner_text()
    long_run = runs[table[1]["id"]]
    assert long_run["duration_s"] >= LONG_S, long_run
    session_j = sum(r["energy_j"] for r in runs.values())
    session_g = sum(r["co2_g"] for r in runs.values())
    assert close_to(panel.number(panel.energy), session_j / 3600), panel.describe()
    assert close_to(panel.number(panel.co2), session_g), panel.describe()
    assert re.match(rf"^{NUMBER} g/kWh · ", panel.text(panel.intensity)), panel.describe()

    # 4. The status bar: idle now, and the session's grams.
    status = panel.text(panel.status)
    assert STATUS_TEXT.match(status), status
    assert status.startswith("⚡ idle"), status
    assert close_to(float(status.split(" · ")[1].split(" g")[0]), session_g), status

    # 5. Switched off, the next cell is not tracked and the table gains no row.
    set_switch(panel, on=False)
    before = set(runs)
    lab.run_cell(UNTRACKED_CELL, timeout_s=30)
    lab.wait_kernel_idle()
    wait_for_polls(lab, kernel_id)
    assert {r["id"] for r in api_runs(jupyter_lab, kernel_id)} == before
    assert stored_run_ids(jupyter_lab, kernel_id) == before
    assert [row["id"] for row in panel.table()] == [row["id"] for row in table]
    assert "[carbon]" not in lab.output(UNTRACKED_CELL).inner_text()
    assert not panel.switch.is_checked(), panel.describe()
    assert close_to(panel.number(panel.energy), session_j / 3600), panel.describe()
    lab.screenshot("4-switched-off")

    took_s = time.monotonic() - started_s
    print(f"\nsidebar test: {took_s:.1f} s (server and page already up); live readings: {seen}")
