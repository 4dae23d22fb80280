"""%%carbon and %carbon through a real IPython InteractiveShell, storing into a real SQLite file."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from carbon_jupyter.sensors import reset as reset_sensors
from carbon_jupyter.store import open_store
from tests.fake_powercap import CounterWriter, FakePowercap


@pytest.fixture
def powercap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CounterWriter]:
    """A one-socket RAPL tree drawing 40 W, used by every tracker in the test."""
    tree = FakePowercap(tmp_path / "powercap")
    package = tree.add_package(0)
    monkeypatch.setenv("CARBON_JUPYTER_POWERCAP_ROOT", str(tree.root))
    monkeypatch.setenv("CARBON_JUPYTER_DISPLAY", "text")
    with CounterWriter(
        package / "energy_uj", power_w=40.0, max_range_uj=tree.max_range_uj
    ) as writer:
        yield writer
    reset_sensors()


@pytest.fixture
def ip(powercap: CounterWriter) -> Iterator[InteractiveShell]:
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "carbon_jupyter")
    shell.run_line_magic("config", "CarbonMagics.interval = 0.05")
    shell.run_line_magic("colors", "nocolor")
    yield shell
    shell.run_line_magic("unload_ext", "carbon_jupyter")
    InteractiveShell.clear_instance()


def stored_runs() -> list:  # type: ignore[type-arg]
    return open_store(os.environ["CARBON_JUPYTER_DB"]).runs(limit=100)


def test_load_and_unload_register_and_remove_everything() -> None:
    shell = InteractiveShell.instance()
    try:
        before = {e: list(shell.events.callbacks[e]) for e in ("pre_run_cell", "post_run_cell")}
        shell.run_line_magic("load_ext", "carbon_jupyter")
        assert "carbon" in shell.magics_manager.magics["cell"]
        assert "carbon" in shell.magics_manager.magics["line"]
        # Cells that are not tracked run with nothing of ours on them...
        assert {e: shell.events.callbacks[e] for e in before} == before
        with capture_output():
            shell.run_line_magic("carbon", "auto on")
        # ... until every cell is tracked.
        assert len(shell.events.callbacks["pre_run_cell"]) == len(before["pre_run_cell"]) + 1
        shell.run_line_magic("unload_ext", "carbon_jupyter")
        assert "carbon" not in shell.magics_manager.magics["cell"]
        assert "carbon" not in shell.magics_manager.magics["line"]
        for event, callbacks in before.items():
            assert shell.events.callbacks[event] == callbacks
    finally:
        InteractiveShell.clear_instance()


def test_cell_runs_as_normal_and_the_run_is_stored(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    result = ip.run_cell(
        "%%carbon warmup --phase train --tag model=tiny\n"
        "import time\nx = 6\ntime.sleep(0.2)\nx * 7\n"
    )
    assert result.success, result.error_in_exec
    assert result.result == 42  # the last expression is the cell's output
    assert ip.user_ns["x"] == 6  # the cell ran in the user's namespace
    out = capsys.readouterr().out
    assert "carbon: warmup  ok" in out and "rapl (measured)" in out
    (run,) = stored_runs()
    assert run.label == "warmup" and run.phase == "train" and run.status == "ok"
    assert run.tags["model"] == "tiny"
    assert run.cpu_energy_j == pytest.approx(40.0 * run.duration_s, rel=0.05)
    assert {d.method for d in run.devices} >= {"rapl"}


def test_trailing_semicolon_hides_the_value(ip: InteractiveShell) -> None:
    result = ip.run_cell("%%carbon --quiet\n1 + 1;\n")
    assert result.success and result.result is None


def test_exception_is_recorded_and_reraised_with_a_normal_traceback(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    result = ip.run_cell("%%carbon failing --no-plot\nvalue = 1\nraise ValueError('bad batch')\n")
    assert isinstance(result.error_in_exec, ValueError)
    assert str(result.error_in_exec) == "bad batch"
    out = capsys.readouterr().out
    assert "raise ValueError('bad batch')" in out  # the cell's own line is in the traceback
    assert "cellrun.py" not in out and "magics.py" not in out
    (run,) = stored_runs()
    assert run.status == "error" and run.error == "ValueError: bad batch"


def test_keyboard_interrupt_is_recorded_as_interrupted(ip: InteractiveShell) -> None:
    result = ip.run_cell("%%carbon stopped --quiet\nraise KeyboardInterrupt\n")
    assert isinstance(result.error_in_exec, KeyboardInterrupt)
    (run,) = stored_runs()
    assert run.status == "interrupted"


def test_wrong_option_is_a_usage_error_with_the_usage_line(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    result = ip.run_cell("%%carbon --phase training\npass\n")
    assert isinstance(result.error_in_exec, UsageError)
    assert "usage: %%carbon" in str(result.error_in_exec)
    assert "invalid choice: 'training'" in str(result.error_in_exec)
    result = ip.run_cell("%%carbon --interval 0.001\npass\n")
    assert isinstance(result.error_in_exec, UsageError)
    assert "0.05 to 60" in str(result.error_in_exec)
    assert stored_runs() == []


def test_start_and_stop_span_cells_and_refuse_nesting(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    ip.run_cell("%carbon start epoch --phase train")
    ip.run_cell("import time; time.sleep(0.1)")
    nested = ip.run_cell("%%carbon inner\npass\n")
    assert isinstance(nested.error_in_exec, UsageError)
    assert "%carbon stop it first" in str(nested.error_in_exec)
    again = ip.run_cell("%carbon start other")
    assert isinstance(again.error_in_exec, UsageError)
    ip.run_cell("%carbon status")
    assert "carbon: epoch  running" in capsys.readouterr().out
    result = ip.run_cell("run = %carbon stop -o")
    assert result.success
    run = ip.user_ns["run"]
    assert run.label == "epoch" and run.status == "ok" and run.duration_s >= 0.1
    assert [r.id for r in stored_runs()] == [run.id]
    stop = ip.run_cell("%carbon stop")
    assert isinstance(stop.error_in_exec, UsageError)


def test_auto_mode_tracks_every_cell_until_switched_off(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    ip.run_cell("%carbon auto on")
    ip.run_cell("a = sum(range(1000))")
    ip.run_cell("1/0")
    ip.run_cell("%carbon auto off")
    ip.run_cell("b = 2")
    out = capsys.readouterr().out
    assert out.count("[carbon] ") == 3  # the two cells and the 'auto off' cell itself
    runs = stored_runs()
    assert len(runs) == 3
    assert sorted(r.status for r in runs) == ["error", "ok", "ok"]
    assert all(r.tags.get("execution_count") for r in runs)


def test_config_changes_the_next_run(ip: InteractiveShell) -> None:
    ip.run_line_magic("config", "CarbonMagics.intensity = 123.0")
    ip.run_line_magic("config", "CarbonMagics.pue = 1.4")
    ip.run_cell("%%carbon cfg --quiet\npass\n")
    ip.run_cell("%%carbon arg --quiet --intensity 50\npass\n")
    by_label = {r.label: r for r in stored_runs()}
    assert by_label["cfg"].intensity_g_per_kwh == 123.0 and by_label["cfg"].pue == 1.4
    assert by_label["arg"].intensity_g_per_kwh == 50.0


def test_runs_lists_stored_runs(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    ip.run_cell("%%carbon listed --quiet\npass\n")
    capsys.readouterr()
    ip.run_cell("%carbon runs --last 5")
    out = capsys.readouterr().out
    assert "listed" in out and "energy" in out


def test_export_writes_the_stored_runs(ip: InteractiveShell, tmp_path: Path) -> None:
    ip.run_cell("%%carbon exported --quiet\npass\n")
    target = tmp_path / "runs.csv"
    result = ip.run_cell(f"%carbon export {target}")
    assert result.success, result.error_in_exec
    assert "exported" in target.read_text()


def test_loading_from_the_ipython_configuration(tmp_path: Path) -> None:
    """``c.InteractiveShellApp.extensions = ["carbon_jupyter"]`` loads it in a fresh IPython."""
    import subprocess
    import sys

    profile = tmp_path / "profile_default"
    profile.mkdir()
    (profile / "ipython_config.py").write_text(
        'c.InteractiveShellApp.extensions = ["carbon_jupyter"]\nc.CarbonMagics.interval = 0.5\n'
    )
    code = "%carbon config"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "IPython",
            f"--ipython-dir={tmp_path}",
            "--no-banner",
            "--colors=nocolor",
            "-c",
            code,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "CARBON_JUPYTER_STORE": "off"},
    )
    assert result.returncode == 0, result.stderr
    assert "CarbonMagics.interval      = 0.5" in result.stdout


def test_runs_carry_the_cells_own_execution_count(ip: InteractiveShell) -> None:
    tracked = ip.run_cell("%%carbon counted --quiet\npass\n", store_history=True)
    ip.run_cell("%carbon auto on", store_history=True)
    auto = ip.run_cell("x = 1", store_history=True)
    ip.run_cell("%carbon auto off", store_history=True)
    by_label = {r.label: r for r in stored_runs()}
    assert by_label["counted"].tags["execution_count"] == str(tracked.execution_count)
    counts = {r.tags["execution_count"] for r in stored_runs() if r.label is None}
    assert str(auto.execution_count) in counts
    assert ip.magics_manager.registry["CarbonMagics"].auto is False


def test_show_compare_and_config_in_a_terminal(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    ip.run_cell("%%carbon first --quiet --phase train\nsum(range(10_000))\n")
    ip.run_cell("%%carbon second --quiet --phase inference --items 10\nsum(range(10_000))\n")
    capsys.readouterr()
    first = next(r for r in stored_runs() if r.label == "first")
    assert ip.run_cell(f"%carbon show {first.id[:8]}").success
    assert "carbon: first  ok" in capsys.readouterr().out
    assert ip.run_cell("%carbon compare first second --by label").success
    table = capsys.readouterr().out
    assert "first" in table and "second" in table and "CO2e" in table
    assert ip.run_cell("%carbon config").success
    config = capsys.readouterr().out
    assert "CarbonMagics.interval" in config and "intensity in force" in config
    missing = ip.run_cell("%carbon compare nothing-like-this")
    assert isinstance(missing.error_in_exec, UsageError)
    assert "no finished runs match" in str(missing.error_in_exec)


def test_a_cell_tracked_by_auto_mode_has_its_number_while_it_runs(ip: InteractiveShell) -> None:
    ip.run_cell("%carbon auto on", store_history=True)
    probe = (
        "import os\n"
        "from carbon_jupyter.store import open_store\n"
        "live = open_store(os.environ['CARBON_JUPYTER_DB']).runs(status='running')\n"
        "live_count = live[0].tags['execution_count']\n"
    )
    result = ip.run_cell(probe, store_history=True)
    ip.run_cell("%carbon auto off", store_history=True)
    assert result.success, result.error_in_exec
    assert ip.user_ns["live_count"] == str(result.execution_count)


class FakeKernel:
    """What ipykernel offers a shell: the request being executed (a kernel's display is chosen)."""

    def get_parent(self, channel: str = "shell") -> dict[str, object]:
        return {"header": {"msg_id": "m1"}, "metadata": {"cellId": "c1"}}


def test_the_run_measures_the_cells_code_and_not_its_plot(
    ip: InteractiveShell, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The live plot is shown before the tracker starts, the static plot drawn after it stops."""
    from carbon_jupyter.show import live

    monkeypatch.setenv("CARBON_JUPYTER_DISPLAY", "widgets")
    monkeypatch.setattr(ip, "kernel", FakeKernel(), raising=False)
    slow: list[str] = []

    def slowly(name: str) -> None:
        original = getattr(live.LiveView, name)

        def wrapper(self: live.LiveView, *args: object) -> object:
            slow.append(name)
            time.sleep(0.15)  # a display far slower than it is
            return original(self, *args)

        monkeypatch.setattr(live.LiveView, name, wrapper)

    slowly("show")
    slowly("finish")
    ip.user_ns["stamps"] = stamps = []
    with capture_output() as cap:
        result = ip.run_cell(
            "%%carbon plotted\nimport time\nstamps.append(time.perf_counter())\n"
            "time.sleep(0.3)\nstamps.append(time.perf_counter())\n"
        )
    assert result.success, result.error_in_exec
    assert slow == ["show", "finish"]
    (run,) = stored_runs()
    assert run.duration_s == pytest.approx(stamps[1] - stamps[0], abs=0.03)
    final = cap.outputs[-1]
    assert final.update and "carbon-jupyter-summary" in final.data["text/html"]
    assert "data-root-id" in final.data["text/html"]  # the static plot


def test_a_cell_that_does_not_compile_is_not_run_or_stored(ip: InteractiveShell) -> None:
    result = ip.run_cell("%%carbon broken --no-plot\nx = (1 +\n")
    assert isinstance(result.error_in_exec, SyntaxError)
    assert stored_runs() == []


def test_plain_cells_run_with_nothing_of_ours_after_tracked_ones(ip: InteractiveShell) -> None:
    events = ("pre_run_cell", "post_run_cell", "pre_execute", "post_execute")
    before = {e: list(ip.events.callbacks[e]) for e in events}
    with capture_output():
        ip.run_cell("%%carbon first --no-plot\npass\n")
        ip.run_cell("%carbon auto on")
        ip.run_cell("x = 1")
        ip.run_cell("%carbon auto off")
        ip.run_cell("%%carbon second --no-plot\npass\n")
    assert {e: ip.events.callbacks[e] for e in events} == before
    assert len(stored_runs()) == 4  # the two cells, 'x = 1' and the 'auto off' cell


def test_reading_magics_before_any_run_say_so_and_create_nothing(ip: InteractiveShell) -> None:
    path = Path(os.environ["CARBON_JUPYTER_DB"])
    assert not path.exists()
    for line in ("runs", "show 3f2a", "compare", f"export {path.parent / 'runs.json'}"):
        with pytest.raises(UsageError, match="no run store at"):
            ip.run_line_magic("carbon", line)
    assert not path.exists()
