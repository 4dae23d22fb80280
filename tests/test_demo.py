"""``carbon-jupyter demo``, run as a newcomer runs it: the README's first command.

The demo is run as a subprocess with its own (empty) environment of settings
and a user store of its own (``CARBON_JUPYTER_DB`` under the test's folder),
which it must leave untouched. Figures are checked by shape (a number of Wh, a
CO2e mass), never by value: watts and grams differ from machine to machine.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from carbon_jupyter.cli.demo import MISSING_LAB, REPORT_NAME, STORE_NAME
from carbon_jupyter.cli.main import main
from carbon_jupyter.store.sqlite import Store

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
if importlib.util.find_spec("ipykernel") is None:  # not imported: this process is no kernel
    pytest.skip("ipykernel is not installed (pip install ipykernel)", allow_module_level=True)

#: What the README promises for the first command, in seconds.
DEMO_MAX_S = 60
ENERGY = r"\d[\d.]*(?:e[+-]?\d+)? (?:m|k)?Wh"
MASS = r"\d[\d.]*(?:e[+-]?\d+)? (?:mg|g|kg)"
PER_ITEM = r"\d[\d.]*(?:e[+-]?\d+)? (?:µJ|mJ|J)"
METHOD = r"[a-z-]+ \((?:measured|sampled|estimated|replayed)\)"


def demo(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "carbon_jupyter", "demo", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=DEMO_MAX_S * 2,
        check=False,
    )


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_the_demo_runs_the_quickstart_and_writes_a_self_contained_report(tmp_path: Path) -> None:
    own_store = tmp_path / "my-history.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARBON_JUPYTER_")}
    env["CARBON_JUPYTER_DB"] = str(own_store)

    started = time.monotonic()
    done = demo("--output-dir", "out", "--keep-notebook", cwd=tmp_path, env=env)
    elapsed_s = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    assert elapsed_s < DEMO_MAX_S, elapsed_s
    out = done.stdout

    # The table: a training and an inference run, each with energy, CO2e, time and method.
    train = re.search(
        rf"^train\s+train\s+{ENERGY}\s+{MASS}\s+[\d.]+ m?s\s+{METHOD}", out, re.MULTILINE
    )
    assert train, out
    predict = re.search(
        rf"^predict\s+inference\s+{ENERGY}\s+{MASS}\s+[\d.]+ m?s\s+{PER_ITEM}\s+{METHOD}",
        out,
        re.MULTILINE,
    )
    assert predict, out
    assert "gCO2e/kWh" in out

    # The report: where it says, whole without the network, with the runs' Bokeh documents.
    (report_line,) = re.findall(r"^report: (.+)$", out, re.MULTILINE)
    report = Path(report_line)
    assert report == tmp_path / "out" / REPORT_NAME and report.is_file()
    page = report.read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]*\bsrc=", page), "a script loaded from elsewhere"
    assert not re.search(r"<link[^>]*\bhref=[\"']?(?:https?:)?//", page), "a linked resource"
    assert len(page) > 1_000_000 and "Bokeh" in page  # BokehJS itself is inside
    assert page.count("data-root-id=") == 3  # train's and predict's power, the comparison
    for source in ("carbon-samples", "carbon-groups", "carbon-items"):
        assert source in page, source
    assert "<h2>train</h2>" in page and "<h2>predict</h2>" in page

    # The runs went to the demo's own store; the user's history was not touched.
    assert not own_store.exists()
    runs = {r.label: r for r in Store(tmp_path / "out" / STORE_NAME).runs()}
    assert set(runs) == {"train", "predict"}
    assert runs["train"].phase == "train" and runs["predict"].phase == "inference"
    assert runs["predict"].items == 60000 and "accuracy" in runs["predict"].metrics
    assert all(r.status == "ok" and r.energy_j > 0 and r.co2_g > 0 for r in runs.values())

    # --keep-notebook: the executed notebook, its outputs in it, to open live.
    nb = nbformat.read(tmp_path / "out" / "quickstart.ipynb", as_version=4)
    trained = [
        c for c in nb.cells if c.cell_type == "code" and c.source.startswith("%%carbon train")
    ]
    assert trained and any("carbon: train" in str(o) for o in trained[0].outputs)
    assert "open it live: jupyter lab out/quickstart.ipynb" in out


def test_without_the_lab_extra_the_demo_names_it(tmp_path: Path) -> None:
    """Where nbclient is not installed: one line naming the extra, exit code 2, nothing written."""
    hide_nbclient = (  # None in sys.modules: Python's own mark of a module that cannot be imported
        "import sys\n"
        "sys.modules['nbclient'] = None\n"
        "from carbon_jupyter.cli import main\n"
        "sys.exit(main(['demo', '--output-dir', 'out']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", hide_nbclient],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr == MISSING_LAB + "\n"
    assert done.stdout == ""
    assert not (tmp_path / "out").exists()


def test_an_output_dir_that_is_a_file_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    taken = tmp_path / "report.html"
    taken.write_text("not a folder")
    assert main(["demo", "--output-dir", str(taken)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "this is a file; give a folder" in err, err
