"""%%carbon in a real JupyterLab: the plot is live while the cell runs and stays after a reload.

One notebook is driven through the module (the kernel replays an A100 trace
next to the real CPU model):

0. ``%load_ext carbon_jupyter``
1. a short ``%%carbon warm-up`` cell (BokehJS reaches the page, Bokeh is imported)
2. ``%%carbon live-test --interval 0.2`` sleeping 6 s: read while it runs
3. ``%carbon compare live-test warm-up --by label``

The live figures (bytes per update, updates per second) are printed and
written to ``test-artifacts/live-metrics.json``. The saved notebook must carry
BokehJS once, weigh at most :data:`MAX_NOTEBOOK_BYTES`, and draw its plots
again after a reload (the browser has no network).
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.browser.conftest import (
    ARTIFACTS,
    SAMPLES_SOURCE,
    JupyterLab,
    KernelFrame,
    KernelFrames,
    LabPage,
    assert_static_run_output,
    failed_test,
    open_lab_page,
    poll,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(240)]

NOTEBOOK = "live-plot.ipynb"
LIVE_CELL, COMPARE_CELL = 2, 3
CELLS = [
    "%load_ext carbon_jupyter",
    "%%carbon warm-up --interval 0.2\ntotal = sum(i * i for i in range(300_000))",
    "%%carbon live-test --interval 0.2\nimport time; time.sleep(6)",
    "%carbon compare live-test warm-up --by label",
]
READING_SPACING_S = 1.5
#: The saved notebook: BokehJS once (about 1.3 MB), two runs' plots and summaries.
MAX_NOTEBOOK_BYTES = 1_400_000


@dataclass
class Reading:
    page_ms: float
    rows: int


@dataclass
class LiveRun:
    """What was seen while the live cell ran, and the page left open afterwards."""

    lab: LabPage
    frames: KernelFrames
    readings: list[Reading]
    recording: list[tuple[float, int, str]]  # page ms, rows, source id
    cell_frames: list[KernelFrame]
    after_frames: list[KernelFrame]
    metrics: dict[str, Any] = field(default_factory=dict)


def _live_sources(lab: LabPage) -> dict[str, int]:
    """Rows per source of the power plot in the live cell, by Bokeh model id."""
    sources = lab.bokeh_state(LIVE_CELL)["sources"]
    return {str(s["id"]): int(s["rows"]) for s in sources if s["name"] == SAMPLES_SOURCE}


def _read_while_running(lab: LabPage) -> list[Reading]:
    """Readings of the live source ~1.5 s apart, kept only when the cell still ran after each.

    The first source seen is the live widget's; the final plot, which replaces
    it when the cell ends, has a source of its own and is never read here.
    """
    found = poll(
        lambda: _live_sources(lab) or not lab.is_running(LIVE_CELL),
        timeout_s=30,
        what="the live plot to appear",
        diagnose=lab.diagnose,
    )
    if not isinstance(found, dict):
        return []
    (live_id, _), *_ = found.items()
    readings: list[Reading] = []
    while lab.is_running(LIVE_CELL):
        state = lab.bokeh_state(LIVE_CELL)
        rows = [s["rows"] for s in state["sources"] if s["id"] == live_id]
        if not rows or not lab.is_running(LIVE_CELL):
            break
        readings.append(Reading(float(state["now_ms"]), int(rows[0])))
        next_at = time.monotonic() + READING_SPACING_S
        if len(readings) == 2:
            lab.screenshot("2-live")
        while time.monotonic() < next_at and lab.is_running(LIVE_CELL):
            time.sleep(0.1)
    return readings


def _widget_comm_ids(frames: list[KernelFrame]) -> set[str]:
    ids = set()
    for f in frames:
        if f.msg_type == "comm_open" and f.content:
            state = (f.content.get("data") or {}).get("state") or {}
            if state.get("_model_name") == "BokehModel":
                ids.add(str(f.content.get("comm_id")))
    return ids


def _metrics(run: LiveRun) -> dict[str, Any]:
    frames = run.cell_frames
    widgets = _widget_comm_ids(frames)
    widget_msgs = [
        f
        for f in frames
        if f.msg_type == "comm_msg" and f.content and f.content.get("comm_id") in widgets
    ]
    streamed = [f for f in widget_msgs if "ColumnsStreamed" in json.dumps(f.content)]
    opens = [f for f in frames if f.msg_type == "comm_open"]
    final = [f for f in frames if f.msg_type == "update_display_data"]
    # The live widget's source: the first one seen (the final plot brings a source of its own).
    live_source = run.recording[0][2] if run.recording else None
    rec = [(t_ms, rows) for t_ms, rows, source in run.recording if source == live_source]
    changes = [b for a, b in itertools.pairwise(rec) if b[1] > a[1]]
    span_s = (changes[-1][0] - rec[0][0]) / 1000 if changes else 0.0
    no_such_comm = sum(
        1
        for f in run.after_frames
        if f.msg_type == "stream" and "No such comm" in str((f.content or {}).get("text", ""))
    )
    return {
        "live_updates_seen_in_page": len(changes),
        "updates_per_s": round(len(changes) / span_s, 3) if span_s > 0 else None,
        "rows_per_update": round((rec[-1][1] - rec[0][1]) / len(changes), 2) if changes else None,
        "widget_update_messages": len(streamed),
        "bytes_per_update": round(sum(f.size_b for f in widget_msgs) / len(streamed))
        if streamed
        else None,
        "widget_comm_messages": len(widget_msgs),
        "widget_open_bytes": sum(f.size_b for f in opens),
        "final_update_bytes": sum(f.size_b for f in final),
        "readings_while_running": [r.rows for r in run.readings],
        "rows_seen_by_page": [rows for _, rows in rec],
        "kernel_no_such_comm_errors_after_cell": no_such_comm,
    }


@pytest.fixture(scope="module")
def live(
    playwright_driver: Any, jupyter_lab: JupyterLab, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveRun]:
    """Open the notebook, run the warm-up, then run the live cell while reading the page."""
    jupyter_lab.write_notebook(NOTEBOOK, CELLS)
    profile = tmp_path_factory.mktemp("chromium")
    with open_lab_page(playwright_driver, jupyter_lab, profile, "live_plot") as lab:
        frames = KernelFrames(lab.page)
        lab.open_notebook(NOTEBOOK)
        lab.run_cell(0)
        lab.run_cell(1)
        lab.screenshot("1-warm-up")

        lab.start_bokeh_recorder(LIVE_CELL, SAMPLES_SOURCE)
        started_s = time.monotonic()
        before = lab.execution_count(LIVE_CELL)
        lab.run_cell(LIVE_CELL, wait=False)
        lab.wait_cell_started(LIVE_CELL)
        readings = _read_while_running(lab)
        lab.wait_cell_done(LIVE_CELL, after=before, timeout_s=60)
        done_s = time.monotonic()
        recording = lab.bokeh_recording()
        lab.wait_kernel_idle()
        lab.screenshot("3-finished")
        run = LiveRun(
            lab=lab,
            frames=frames,
            readings=readings,
            recording=recording,
            cell_frames=frames.since(started_s, done_s),
            after_frames=frames.since(started_s),
        )
        run.metrics = _metrics(run)
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "live-metrics.json").write_text(json.dumps(run.metrics, indent=2) + "\n")
        print("\nlive plot metrics:", json.dumps(run.metrics, indent=2))
        yield run


@pytest.fixture(autouse=True)
def _screenshot_on_failure(live: LiveRun, request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if failed_test(request):
        print(f"\nscreenshot of the failure: {live.lab.screenshot(request.node.name + '-failed')}")


def test_plot_grows_while_the_cell_is_running(live: LiveRun) -> None:
    rows = [r.rows for r in live.readings]
    assert len(rows) >= 3, f"only {len(rows)} readings while the cell ran: {rows}"
    assert rows == sorted(rows), f"the plotted rows went down: {rows}"
    increases = sum(1 for a, b in itertools.pairwise(rows) if b > a)
    assert increases >= 2, f"the plot did not keep growing while running: {rows}"
    # The growth came over the widget's comm, as small stream messages.
    assert live.metrics["widget_update_messages"] >= 2, live.metrics
    assert 0 < live.metrics["bytes_per_update"] < 20_000, live.metrics


def test_static_plot_and_summary_replace_the_live_view(live: LiveRun) -> None:
    assert_static_run_output(
        live.lab, LIVE_CELL, label="live-test", min_rows=max(r.rows for r in live.readings)
    )
    live.lab.screenshot("4-final")
    # The page's own messages to the finished widget still found it open: no kernel errors.
    assert live.metrics["kernel_no_such_comm_errors_after_cell"] == 0, live.metrics


def bokehjs_outputs(notebook: Any) -> list[tuple[int, str]]:
    """(cell, mime type) of every output value carrying BokehJS itself (about 1.3 MB each)."""
    return [
        (index, mime)
        for index, cell in enumerate(notebook.cells)
        for output in cell.get("outputs", [])
        for mime, value in output.get("data", {}).items()
        if len(str(value)) > 1_000_000 and "Bokeh" in str(value)
    ]


def test_results_survive_save_and_reload(live: LiveRun, jupyter_lab: JupyterLab) -> None:
    lab = live.lab
    lab.save()
    saved = jupyter_lab.read_notebook(NOTEBOOK)
    # BokehJS travels once, in the first plotted cell, as one script the plots below share.
    assert bokehjs_outputs(saved) == [(1, "text/html")]
    size = (jupyter_lab.root_dir / NOTEBOOK).stat().st_size
    print(f"\nsaved notebook: {size} bytes")
    assert size <= MAX_NOTEBOOK_BYTES, size
    outputs = saved.cells[LIVE_CELL].outputs
    html = "".join(str(o.get("data", {}).get("text/html", "")) for o in outputs)
    plain = "".join(str(o.get("data", {}).get("text/plain", "")) for o in outputs)
    assert "carbon-jupyter-summary" in html and "CO2e" in html
    assert "Bokeh" in html and "<script" in html  # the static plot travels with the notebook
    assert "carbon: live-test" in plain  # text for viewers without HTML
    mime_types = {m for o in outputs for m in o.get("data", {})}
    assert "application/vnd.jupyter.widget-view+json" not in mime_types

    lab.reload()
    assert_static_run_output(lab, LIVE_CELL, label="live-test", min_rows=2)
    lab.screenshot("5-reloaded")


def test_compare_draws_one_bar_per_label(live: LiveRun) -> None:
    lab = live.lab
    lab.run_cell(COMPARE_CELL)
    state = poll(
        lambda: (s := lab.bokeh_state(COMPARE_CELL))["roots"] >= 1 and s,
        timeout_s=30,
        what="the comparison to render",
        diagnose=lab.diagnose,
    )
    lab.screenshot("6-compare")
    bars = [r for r in state["renderers"] if r["glyph"] == "VBar"]
    assert bars, state["renderers"]
    assert {r["source_name"] for r in bars} >= {"carbon-groups"}
    assert all(r["rows"] == 2 for r in bars if r["source_name"] == "carbon-groups"), bars
    names = lab.bokeh_column(COMPARE_CELL, "carbon-groups", "name")
    assert sorted(names) == ["live-test", "warm-up"]
    energy = lab.bokeh_column(COMPARE_CELL, "carbon-groups", "energy_wh")
    assert all(e > 0 for e in energy), energy


def test_runs_are_stored_with_this_kernel_and_notebook(
    live: LiveRun, jupyter_lab: JupyterLab
) -> None:
    from carbon_jupyter.store.sqlite import Store

    kernel = jupyter_lab.kernel_for(NOTEBOOK)
    assert kernel is not None
    runs = {r.label: r for r in Store(jupyter_lab.db_path).runs(limit=None)}
    for label in ("warm-up", "live-test"):
        run = runs[label]
        assert run.status == "ok"
        assert run.kernel == kernel["id"]
        assert run.notebook is not None and run.notebook.endswith(NOTEBOOK)
        assert {d.method for d in run.devices} >= {"replay"}
    assert runs["live-test"].duration_s >= 6.0
