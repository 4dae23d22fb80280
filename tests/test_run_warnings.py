"""A run that is not clean says so everywhere it is shown: CLI, exports, summaries, the sidebar API.

The faulty run is real: ``carbon-jupyter measure`` runs in a subprocess on a fake
powercap tree whose second package's counter turns to garbage halfway through.
"""

from __future__ import annotations

import csv
import json
import threading
import time
from dataclasses import replace
from pathlib import Path

from carbon_jupyter.model import DeviceEnergy, DeviceInfo
from carbon_jupyter.show import format as fmt
from carbon_jupyter.show.display import summary_html
from tests.fake_powercap import CounterWriter, FakePowercap, write_atomic
from tests.test_cli import cli
from tests.test_store_support import make_run


def test_a_sensor_lost_mid_run_shows_in_runs_show_and_every_export(tmp_path: Path) -> None:
    tree = FakePowercap(tmp_path / "powercap")
    first, second = tree.add_package(0), tree.add_package(1)
    env = {
        "CARBON_JUPYTER_DB": str(tmp_path / "c.db"),
        "CARBON_JUPYTER_POWERCAP_ROOT": str(tree.root),
    }
    with CounterWriter(first / "energy_uj", 20.0), CounterWriter(second / "energy_uj", 20.0) as w:

        def garble() -> None:
            time.sleep(1.5)  # the interpreter has started and the run is under way
            w.stop()
            write_atomic(second / "energy_uj", "garbage\n")

        garbler = threading.Thread(target=garble)
        garbler.start()
        measured = cli("measure", "faulty", "--seconds", "2.5", "--intensity", "100", env=env)
        garbler.join()
    assert measured.returncode == 0, measured.stderr
    assert "cpu:1" in measured.stdout and "stopped answering" in measured.stdout

    listed = cli("runs", env=env).stdout
    assert "faulty" in listed and "ok (1 warning)" in listed

    exported = cli("export", str(tmp_path / "runs.json"), env=env)
    assert exported.returncode == 0, exported.stderr
    (run,) = json.loads((tmp_path / "runs.json").read_text())["runs"]
    (warning,) = run["warnings"]
    assert warning.startswith("cpu:1 ") and "not a count of microjoules" in warning

    shown = cli("show", run["id"][:8], env=env).stdout
    assert f"warning {warning}" in shown

    assert cli("export", str(tmp_path / "runs.csv"), env=env).returncode == 0
    with open(tmp_path / "runs.csv", newline="") as f:
        (row,) = csv.DictReader(f)
    assert json.loads(row["warnings"]) == [warning]

    # A JSON export brings its warnings along into another store.
    other = {"CARBON_JUPYTER_DB": str(tmp_path / "other.db")}
    assert cli("import", str(tmp_path / "runs.json"), env=other).returncode == 0
    assert "ok (1 warning)" in cli("runs", env=other).stdout


def test_summaries_mark_warnings_and_sampled_gpus_and_escape_them() -> None:
    gpu = DeviceInfo("gpu:0", "gpu", "Tesla T4", "nvml-power")
    clean = make_run()
    run = replace(
        clean,
        devices=(DeviceEnergy(gpu, 100.0),),
        warnings=("gpu:0 (<b>T4</b>) stopped answering",),
    )
    assert "GPU sampled" in fmt.one_line(run) and "1 warning" in fmt.one_line(run)
    assert "warning" not in fmt.one_line(replace(clean, warnings=()))
    assert "warning gpu:0 (<b>T4</b>) stopped answering" in fmt.summary(run)
    assert "warnings=1" in repr(run)
    html = summary_html(run)
    assert "&lt;b&gt;T4&lt;/b&gt;" in html and "<b>T4</b>" not in html
    assert "[1 warning]" in html and "GPU sampled" in html
    assert "(1 warning)" in fmt.runs_table_text([run])
