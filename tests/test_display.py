"""How a notebook shows a run: summary, environment detection, live views in a real shell."""

from __future__ import annotations

import logging
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import comm
import pytest
from comm.base_comm import BaseComm
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from carbon_jupyter.measure.tracker import Tracker, build_run
from carbon_jupyter.model import DeviceEnergy, DeviceInfo, Intensity
from carbon_jupyter.sensors.base import Reading
from carbon_jupyter.show import display, embed, frontend, live

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
LOAD_MIME = "application/vnd.bokehjs_load.v0+json"
JS_MIME = "application/javascript"


class FakeGPU:
    """A GPU with an energy counter that gains 5 J per read at a steady 100 W."""

    def __init__(self, method: str = "nvml-energy") -> None:
        self.info = DeviceInfo("gpu:0", "gpu", "Fake GPU <b>", method)  # type: ignore[arg-type]
        self.counter_j = 1000.0
        self.reads = 0

    def read(self) -> Reading:
        self.reads += 1
        self.counter_j += 5.0
        return Reading(counter_j=self.counter_j, power_w=100.0)

    def close(self) -> None:
        pass


_started: list[Tracker] = []


def tracker(label: str = "fine-tune") -> Tracker:
    t = Tracker(label, sensors=[FakeGPU()], sink=None, interval=0.05, intensity=300.0)
    _started.append(t)
    return t


@pytest.fixture(autouse=True)
def _stop_trackers() -> Iterator[None]:
    """A failed assertion must not leave a sampler thread running."""
    yield
    while _started:
        t = _started.pop()
        if t.running:
            t.stop()


def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the live view never updated"
        time.sleep(0.02)


@pytest.fixture
def shell(monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    """A real IPython shell; BokehJS counts as not yet loaded in its page."""
    monkeypatch.setattr(embed, "_loaded", None)
    yield InteractiveShell.instance()
    live.close_finished_widgets()
    InteractiveShell.clear_instance()


def outputs_with(outputs: list[Any], mime: str) -> list[Any]:
    return [o for o in outputs if mime in o.data]


# -- summary ------------------------------------------------------------------------------
def make_run(label: str = "<script>alert(1)</script>", items: int | None = 50) -> Any:
    devices = [
        DeviceEnergy(DeviceInfo("gpu:0", "gpu", "NVIDIA A100", "nvml-energy"), 7200.0),
        DeviceEnergy(DeviceInfo("cpu:0", "cpu", "Xeon <i>", "cpu-model"), 1800.0, 900.0),
        DeviceEnergy(DeviceInfo("ram", "ram", "memory", "ram-model"), 360.0),
    ]
    return build_run(
        run_id="abcdef12-0000-4000-8000-000000000000",
        label=label,
        phase="inference",
        items=items,
        status="ok",
        started_at="2025-01-02T03:04:05.000+00:00",
        ended_at="2025-01-02T03:05:05.000+00:00",
        duration_s=60.0,
        attribution="device",
        devices=devices,
        intensity=Intensity(380.0, "ember", 2024, 1.2, "argument", "argument", "DEU"),
    )


def test_summary_html_escapes_user_text_and_words_each_method() -> None:
    run = make_run()
    page = display.summary_html(run)
    assert "<script>" not in page and "<i>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "2.6 Wh" in page  # 9360 J
    assert "gpu 2 Wh" in page and "cpu 500 mWh" in page and "ram 100 mWh" in page
    assert "1.19 g" in page  # 9360 J * 1.2 * 380 g/kWh
    assert "380 gCO2e/kWh (DEU, ember 2024; argument), PUE 1.2" in page
    assert "nvml-energy: measured" in page
    assert "cpu-model: estimate" in page
    assert "(estimate)" in page
    assert "50 items" in page and "52 mWh" in page
    assert "1 min 0 s" in page


def test_summary_shows_itself_in_notebooks_and_as_text() -> None:
    run = make_run(label="plain", items=None)
    summary = display.Summary(run)
    assert summary._repr_html_() == display.summary_html(run)
    assert repr(summary).startswith("carbon: plain")
    bundle = display.summary_bundle(run)
    assert set(bundle) == {"text/html", "text/plain"}
    assert "per item" not in bundle["text/html"]


# -- frontend detection -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "mode"),
    [
        ("widgets", "jupyter-widgets"),
        ("html", "html"),
        ("colab", "colab"),
        ("text", "terminal"),
        ("none", "none"),
        (" TEXT ", "terminal"),
    ],
)
def test_display_override_from_environment(
    monkeypatch: pytest.MonkeyPatch, value: str, mode: str
) -> None:
    monkeypatch.setenv("CARBON_JUPYTER_DISPLAY", value)
    assert frontend.detect() == mode


def test_unknown_override_is_said_once_and_ignored(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CARBON_JUPYTER_DISPLAY", "hologram")
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    with caplog.at_level(logging.WARNING, logger="carbon_jupyter"):
        assert frontend.detect() == "terminal"
        assert frontend.detect() == "terminal"
    assert len([r for r in caplog.records if "hologram" in r.message]) == 1


def test_colab_is_detected_from_its_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    assert frontend.detect() == "colab"


def test_a_terminal_shell_gets_text(shell: InteractiveShell) -> None:
    assert frontend.detect() == "terminal"


class FakeKernel:
    """What ipykernel offers a shell: the request being executed."""

    def __init__(self) -> None:
        self.parent: dict[str, Any] = {"header": {"msg_id": "m1"}, "metadata": {"cellId": "c1"}}

    def get_parent(self, channel: str = "shell") -> dict[str, Any]:
        return self.parent


def test_a_kernel_with_widgets_gets_widgets_and_without_gets_html(
    shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shell, "kernel", FakeKernel(), raising=False)
    assert frontend.detect() == "jupyter-widgets"
    monkeypatch.setitem(sys.modules, "jupyter_bokeh", None)  # not installed
    assert frontend.detect() == "html"


def bokehjs_loads(outputs: list[Any]) -> list[str]:
    """The outputs that carry the BokehJS library itself (about 1.3 MB each)."""
    return [
        str(value)
        for o in outputs
        for value in o.data.values()
        if "root.Bokeh" in str(value) and len(str(value)) > 1_000_000
    ]


def test_bokehjs_core_is_loaded_once_and_again_when_its_cell_reruns(
    shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch
) -> None:
    kernel = FakeKernel()
    monkeypatch.setattr(shell, "kernel", kernel, raising=False)
    with capture_output() as cap:
        assert display.load_bokehjs() is True
        assert display.load_bokehjs() is False  # same cell, same run
        kernel.parent = {"header": {"msg_id": "m2"}, "metadata": {"cellId": "c2"}}
        assert display.load_bokehjs() is False  # another cell: the page has it
        kernel.parent = {"header": {"msg_id": "m3"}, "metadata": {"cellId": "c1"}}
        assert display.load_bokehjs() is True  # its cell ran again: its output was cleared
    assert len(cap.outputs) == 2
    # One copy per load, in one mime type: a script any HTML output runs, offline.
    assert [set(o.data) for o in cap.outputs] == [{"text/html"}, {"text/html"}]
    assert not outputs_with(cap.outputs, LOAD_MIME) and not outputs_with(cap.outputs, JS_MIME)
    script = cap.outputs[0].data["text/html"]
    assert bokehjs_loads(cap.outputs[:1]) == [script]
    assert script.startswith('<script type="text/javascript">') and script.count("</script") == 1
    assert "cdn.bokeh.org" not in script  # inline: works offline
    assert len(script) < 1_400_000  # the core library only, not widgets, tables, gl, mathjax
    # A page that already has this BokehJS does not run it again.
    assert "root.Bokeh !== undefined && root.Bokeh[" in script


def test_cdn_resources_are_opt_in(shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARBON_JUPYTER_BOKEH_RESOURCES", "cdn")
    with capture_output() as cap:
        display.load_bokehjs()
    script = outputs_with(cap.outputs, LOAD_MIME)[0].data[LOAD_MIME]
    assert "cdn.bokeh.org" in script and len(script) < 100_000
    assert not bokehjs_loads(cap.outputs)
    monkeypatch.setenv("CARBON_JUPYTER_BOKEH_RESOURCES", "internet")
    with pytest.raises(ValueError, match="inline, cdn"):
        display.resources_mode()


# -- live views ---------------------------------------------------------------------------
def test_text_mode_prints_the_summary(capsys: pytest.CaptureFixture[str]) -> None:
    t = tracker("text run").start()
    view = live.LiveView(t, mode="text").start()
    run = t.stop()
    view.finish(run)
    out = capsys.readouterr().out
    assert out.startswith("carbon: text run  ok")
    assert "nvml-energy (measured)" in out


def test_html_mode_updates_while_running_then_leaves_a_static_plot(
    shell: InteractiveShell,
) -> None:
    t = tracker().start()
    with capture_output() as cap:
        view = live.LiveView(t, mode="html", min_update_s=0.0).start()
        wait_for(lambda: view.updates >= 2)
        run = t.stop()
        view.finish(run)
    assert len(bokehjs_loads(cap.outputs)) == 1, "BokehJS was not loaded once"
    shown = [o for o in cap.outputs if o.transient and not o.update]
    updates = [o for o in cap.outputs if o.update]
    display_id = shown[-1].transient["display_id"]
    assert all(o.transient["display_id"] == display_id for o in updates)
    assert len(updates) >= 3  # at least two live updates and the final one
    assert "data-root-id" in updates[0].data["text/html"]
    final = updates[-1].data
    assert "data-root-id" in final["text/html"]
    assert "carbon-jupyter-summary" in final["text/html"]
    assert "Fake GPU &lt;b&gt;" in final["text/html"]
    assert final["text/plain"].startswith("carbon: fine-tune  ok")


def test_colab_mode_sends_self_contained_pages(shell: InteractiveShell) -> None:
    t = tracker().start()
    with capture_output() as cap:
        view = live.LiveView(t, mode="colab", min_update_s=0.0).start()
        wait_for(lambda: view.updates >= 1)
        run = t.stop()
        view.finish(run)
    assert not outputs_with(cap.outputs, LOAD_MIME)  # each page loads BokehJS itself
    pages = [o.data["text/html"] for o in cap.outputs if o.transient]
    assert all("cdn.bokeh.org" in page and "</html>" in page for page in pages)
    final = pages[-1]
    assert final.index("carbon-jupyter-summary") < final.index("</body>")
    assert cap.outputs[-1].update


class RecordingComm(BaseComm):
    """A comm that keeps what the kernel would send to the browser."""

    sent: ClassVar[list[tuple[str, dict[str, Any], str]]] = []

    def publish_msg(self, msg_type: str, data: Any = None, *args: Any, **kwargs: Any) -> None:
        RecordingComm.sent.append((msg_type, data or {}, threading.current_thread().name))


def test_widget_mode_streams_from_the_sampler_then_leaves_a_static_plot(
    shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch
) -> None:
    RecordingComm.sent = []
    monkeypatch.setattr(comm, "create_comm", RecordingComm)
    t = tracker().start()

    def streamed_live() -> bool:
        return any(
            kind == "comm_msg"
            and "ColumnsStreamed" in str(data.get("content", {}).get("payload", ""))
            and name == "carbon-sampler"
            for kind, data, name in RecordingComm.sent
        )

    with capture_output() as cap:
        view = live.LiveView(t, mode="widgets", min_update_s=0.0).start()
        wait_for(streamed_live)
        run = t.stop()
        view.finish(run)
    assert view.updates >= 1
    widget = outputs_with(cap.outputs, WIDGET_MIME)
    assert len(widget) == 1 and widget[0].transient
    # Frontends without widgets show a line of text, not the widget's internals.
    assert widget[0].data["text/plain"] == "carbon: measuring fine-tune"
    final = cap.outputs[-1]
    assert final.update and final.transient == widget[0].transient
    assert "data-root-id" in final.data["text/html"]
    assert "carbon-jupyter-summary" in final.data["text/html"]
    # The page's queued messages to the widget arrive after the cell: it stays open till then,
    # through plain cells, which run with nothing of ours on them ...
    shell.run_cell("next_cell = 1")
    assert not any(kind == "comm_close" for kind, _, _ in RecordingComm.sent)
    assert shell.events.callbacks["pre_run_cell"] == []
    # ... and the next live view closes it.
    t2 = tracker("next").start()
    with capture_output():
        view2 = live.LiveView(t2, mode="widgets").start()
        view2.finish(t2.stop())
    assert [kind for kind, _, _ in RecordingComm.sent].count("comm_close") == 1


def test_a_broken_live_view_says_so_once_and_falls_back_to_text(
    shell: InteractiveShell,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setitem(sys.modules, "jupyter_bokeh", None)  # not installed
    monkeypatch.delitem(sys.modules, "carbon_jupyter.show.livewidget", raising=False)
    t = tracker().start()
    with caplog.at_level(logging.WARNING, logger="carbon_jupyter"), capture_output() as cap:
        view = live.LiveView(t, mode="widgets").start()
        run = t.stop()
        view.finish(run)
    assert view.mode == "terminal"
    assert "the live plot stopped" in caplog.text
    assert cap.stdout.startswith("carbon: fine-tune  ok")


def test_none_mode_shows_only_the_summary(shell: InteractiveShell) -> None:
    t = tracker().start()
    with capture_output() as cap:
        view = live.LiveView(t, mode="none").start()
        run = t.stop()
        view.finish(run)
    assert len(cap.outputs) == 1
    assert "carbon-jupyter-summary" in cap.outputs[0].data["text/html"]
    assert "data-root-id" not in cap.outputs[0].data["text/html"]


def test_show_comparison_displays_the_figure_and_returns_it(shell: InteractiveShell) -> None:
    runs = [make_run("a"), make_run("b", items=None)]
    with capture_output() as cap:
        figure = display.show_comparison(runs, mode="html")
    assert figure.select_one({"name": "carbon-groups"}) is not None
    html = cap.outputs[-1].data["text/html"]
    assert "data-root-id" in html
    assert "a (n=1)" in cap.outputs[-1].data["text/plain"]


def test_show_run_in_a_terminal_prints_text(capsys: pytest.CaptureFixture[str]) -> None:
    display.show_run(make_run("stored"), mode="text")
    assert capsys.readouterr().out.startswith("carbon: stored  ok")


def test_bad_view_settings_are_said_once_and_never_stop_the_cell(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CARBON_JUPYTER_BOKEH_RESOURCES", "internet")
    t = tracker().start()
    with caplog.at_level(logging.WARNING, logger="carbon_jupyter"):
        view = live.LiveView(t, mode="hologram").start()
    run = t.stop()
    view.finish(run)
    assert view.mode == "terminal" and view.resources == "inline"
    assert "'hologram' is not one of" in caplog.text
    assert "CARBON_JUPYTER_BOKEH_RESOURCES='internet'" in caplog.text
    assert capsys.readouterr().out.startswith("carbon: fine-tune  ok")


def test_a_run_as_a_cells_value_shows_its_summary() -> None:
    run = make_run()
    html = run._repr_html_()
    assert html == display.summary_html(run)
    assert "&lt;script&gt;" in html and "<script>alert" not in html


def test_a_view_shown_after_the_run_started_plots_the_earlier_samples(
    shell: InteractiveShell,
) -> None:
    t = tracker().start()
    seen: list[Any] = []
    t.subscribe(seen.extend)
    wait_for(lambda: len(seen) >= 3)  # ticks taken before the view exists
    with capture_output():
        view = live.LiveView(t, mode="html", min_update_s=0.0).start()
        wait_for(lambda: view.updates >= 1)
        plotted = list(view.plot.source.data["t_s"])
        view.finish(t.stop())
    assert seen[0].t_s in plotted


def test_the_live_view_is_still_found_where_it_was() -> None:
    assert display.LiveView is live.LiveView
    assert display.close_finished_widgets is live.close_finished_widgets
    with pytest.raises(AttributeError):
        display.no_such_thing  # noqa: B018
