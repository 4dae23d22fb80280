"""The notebooks in examples/ run top to bottom in a real kernel and show what they promise.

Each is executed with nbclient in a fresh ipykernel, with its own run store
(``CARBON_JUPYTER_DB`` under the test's folder) and the display chosen as a
user's kernel would choose it (``CARBON_JUPYTER_DISPLAY`` unset; the Colab
notebook runs with ``colab``, the display Colab gets). Outputs are checked by
shape (a summary with a CO2e figure and a number of Wh, a Bokeh plot, the
sweep's one-line answer), never by value: watts and grams differ from machine
to machine.
"""

from __future__ import annotations

import csv
import html
import importlib.util
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
if importlib.util.find_spec("ipykernel") is None:  # not imported: this process is no kernel
    pytest.skip("ipykernel is not installed (pip install ipykernel)", allow_module_level=True)

from carbon_jupyter.store.sqlite import Store  # noqa: E402
from tests.test_kernel import bokehjs_copies, install_test_kernel  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

#: What the executed quickstart may weigh on disk: BokehJS once (about 1.3 MB) and its plots.
QUICKSTART_MAX_BYTES = 1_400_000

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NOTEBOOKS = sorted(p.name for p in EXAMPLES.glob("*.ipynb"))
ENERGY = re.compile(r"\d[\d.]*(?:e[+-]?\d+)? (?:m|k)?Wh")
#: A sweep's one-line answer (``carbon_jupyter.sweeps.compare.answer``).
ANSWER = re.compile(
    r"(?:threads|gpus)=\S+: (?:\d+ % less CO2, -?\d+ % slower than (?:threads|gpus)=\S+"
    r"|the lowest CO2 and the fastest \(-?\d+ % less CO2 than (?:threads|gpus)=\S+\)"
    r"|the only configuration that finished)"
)


@pytest.fixture
def kernel_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    jupyter_path = tmp_path / "jupyter-path"
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter_path))
    return install_test_kernel(jupyter_path)


def execute(
    name: str, tmp_path: Path, kernel_name: str, env: dict[str, str] | None = None, nb: Any = None
) -> tuple[Any, Store]:
    """Run examples/<name> (or ``nb``) in a fresh kernel; the executed notebook and its run store.

    ``env``: CARBON_JUPYTER_* settings for the kernel, besides its own store.
    """
    nb = nbformat.read(EXAMPLES / name, as_version=4) if nb is None else nb
    db_path = tmp_path / "carbon.db"
    kernel_env = {k: v for k, v in os.environ.items() if not k.startswith("CARBON_JUPYTER_")}
    kernel_env.update(env or {})
    kernel_env["CARBON_JUPYTER_DB"] = str(db_path)
    work = tmp_path / "work"
    work.mkdir()
    client = nbclient.NotebookClient(
        nb, timeout=120, kernel_name=kernel_name, resources={"metadata": {"path": str(work)}}
    )
    client.execute(env=kernel_env)
    return nb, Store(db_path)


def cell(nb: Any, prefix: str) -> Any:
    """The code cell whose source starts with ``prefix``."""
    found = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith(prefix)]
    assert len(found) == 1, f"expected one cell starting {prefix!r}, found {len(found)}"
    return found[0]


def data(c: Any, mime: str) -> str:
    return "\n".join(str(o["data"][mime]) for o in c.outputs if mime in o.get("data", {}))


def stream(c: Any) -> str:
    return "".join(o["text"] for o in c.outputs if o["output_type"] == "stream")


def assert_bokeh_plot(html: str) -> None:
    """A Bokeh root (div with data-root-id) and the script that renders it."""
    assert "data-root-id" in html and "<script" in html and "Bokeh" in html, html[:500]


def assert_tracked(c: Any, label: str) -> str:
    """A %%carbon cell ended with a static plot and a summary (HTML and text); the HTML."""
    html = data(c, "text/html")
    assert "carbon-jupyter-summary" in html and f"carbon: {label}" in html, html[:500]
    assert "CO2e" in html and ENERGY.search(html), html[:500]
    assert_bokeh_plot(html)
    plain = data(c, "text/plain")
    assert f"carbon: {label}" in plain and "CO2e" in plain, plain
    assert not data(c, "application/vnd.jupyter.widget-view+json")  # the live view was replaced
    return html


def assert_no_errors(nb: Any) -> None:
    errors = [
        f"{o['ename']}: {o['evalue']}"
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o["output_type"] == "error"
    ]
    assert not errors, errors


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_examples_are_committed_without_outputs(name: str) -> None:
    nb = nbformat.read(EXAMPLES / name, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    assert any(c.cell_type == "markdown" for c in nb.cells)


def test_examples_are_all_tested() -> None:
    assert NOTEBOOKS == [
        "colab_quickstart.ipynb",
        "python-api.ipynb",
        "quickstart.ipynb",
        "replay-gpu.ipynb",
        "scaling.ipynb",
        "team_server.ipynb",
        "train_vs_inference.ipynb",
    ]


def test_quickstart(tmp_path: Path, kernel_name: str) -> None:
    nb, store = execute("quickstart.ipynb", tmp_path, kernel_name)
    assert_no_errors(nb)
    assert_tracked(cell(nb, "%%carbon train"), "train")
    predict = assert_tracked(cell(nb, "%%carbon predict"), "predict")
    assert "per item" in predict and "60000 items" in predict

    table = data(cell(nb, "%carbon runs"), "text/html")
    assert "train" in table and "predict" in table
    compare = cell(nb, "%carbon compare")
    assert_bokeh_plot(data(compare, "text/html"))
    assert "train (n=1)" in data(compare, "text/plain")

    # Saved as Jupyter saves it: BokehJS travels once, in the first plotted cell.
    saved = tmp_path / "quickstart.ipynb"
    nbformat.write(nb, saved)
    assert saved.stat().st_size <= QUICKSTART_MAX_BYTES, saved.stat().st_size
    assert bokehjs_copies(nb) == 1
    assert bokehjs_copies(nbformat.v4.new_notebook(cells=[cell(nb, "%%carbon train")])) == 1

    runs = {r.label: r for r in store.runs()}
    assert set(runs) == {"train", "predict"}
    assert runs["train"].phase == "train" and runs["predict"].items == 60000
    assert all(r.status == "ok" and r.energy_j > 0 for r in runs.values())


def test_replay_gpu(tmp_path: Path, kernel_name: str) -> None:
    nb, store = execute("replay-gpu.ipynb", tmp_path, kernel_name)
    assert_no_errors(nb)
    assert "synthesised" in stream(cell(nb, "from carbon_jupyter.sensors.replay"))
    for label in ("load-data", "fine-tune"):
        html = assert_tracked(cell(nb, f"%%carbon {label}"), label)
        assert "gpu:replay0" in html and "replay: replayed" in html
        assert re.search(r"gpu [1-9][\d.]* (?:m|k)?Wh", html), html[:800]
    assert_bokeh_plot(data(cell(nb, "%carbon compare"), "text/html"))

    for run in store.runs():
        methods = {d.device.device_id: d.method for d in run.devices}
        assert methods.get("gpu:replay0") == "replay", methods
        assert run.gpu_energy_j > 0


def test_python_api(tmp_path: Path, kernel_name: str) -> None:
    nb, store = execute("python-api.ipynb", tmp_path, kernel_name)
    assert_no_errors(nb)
    block = cell(nb, 'with cj.track("api-train"')
    assert re.search(r"[\d.]+ J, [\d.e-]+ g CO2e in [\d.]+ s", stream(block)), stream(block)
    assert "Run(id=" in data(block, "text/plain")
    frame = data(cell(nb, "frame = cj.runs("), "text/html")
    assert "api-train" in frame and "api-predict" in frame
    assert "mJ per item" in stream(cell(nb, "latest = cj.runs("))
    assert_tracked(cell(nb, "from carbon_jupyter.show.display import show_run"), "api-train")

    labels = sorted(r.label or "" for r in store.runs())
    assert labels == ["api-predict", "api-predict", "api-train"]


def test_train_vs_inference(tmp_path: Path, kernel_name: str) -> None:
    nb, store = execute("train_vs_inference.ipynb", tmp_path, kernel_name)
    assert_no_errors(nb)
    assert "test accuracy: 0." in stream(cell(nb, "%%carbon digits-train"))
    assert_tracked(cell(nb, "%%carbon digits-train"), "digits-train")
    predict = assert_tracked(cell(nb, "%%carbon digits-predict"), "digits-predict")
    assert "per item" in predict and "18000 items" in predict

    costs = stream(cell(nb, "train = carbon_jupyter.runs("))
    assert re.search(r"one prediction: +\d[\d.]* mJ +\d[\d.]* µg CO2e", costs), costs
    assert re.search(r"training costs as much as [\d,]+ predictions", costs), costs
    compare = cell(nb, "%carbon compare")
    assert_bokeh_plot(data(compare, "text/html"))
    assert "digits-train (n=1)" in data(compare, "text/plain")
    assert "digits-predict (n=1)" in data(compare, "text/plain")

    runs = {r.label: r for r in store.runs()}
    assert set(runs) == {"digits-train", "digits-predict"}
    train, served = runs["digits-train"], runs["digits-predict"]
    assert (train.phase, served.phase, served.items) == ("train", "inference", 18000)
    assert all(r.status == "ok" and r.energy_j > 0 for r in runs.values())
    # --metric on the training cell, log_metric in the inference cell: the same test images.
    assert 0.9 <= train.metrics["accuracy"] <= 1.0
    assert served.metrics["accuracy"] == pytest.approx(train.metrics["accuracy"])


def test_scaling(tmp_path: Path, kernel_name: str) -> None:
    nb, store = execute("scaling.ipynb", tmp_path, kernel_name)
    assert_no_errors(nb)
    shown = data(cell(nb, "import carbon_jupyter\n"), "text/html")
    assert_bokeh_plot(shown)
    printed = stream(cell(nb, "print(results.answer())"))
    answer = printed.splitlines()[0]
    assert ANSWER.fullmatch(answer), answer
    assert html.escape(answer) in shown  # the displayed results lead with the same answer
    assert "Pareto front of CO2e against time" in printed

    runs = store.runs()
    assert {r.tags["sweep"] for r in runs} == {runs[0].tags["sweep"]}
    assert all(r.status == "ok" and r.label == "matmul" and r.phase == "train" for r in runs)
    configs = Counter(r.tags["config"] for r in runs)
    assert set(configs.values()) == {2}, configs  # every configuration twice
    if not any(key.startswith("gpus=") for key in configs):
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
        assert set(configs) == ({"threads=1", "threads=2"} if cpus >= 2 else {"threads=1"})
        assert all(key in printed for key in configs)

    found = re.search(r"report (\S+\.html)", stream(cell(nb, "report = results.to_html(")))
    assert found, stream(cell(nb, "report = results.to_html("))
    report = Path(found.group(1)).read_text(encoding="utf-8")
    assert html.escape(answer) in report and "data-root-id" in report


def test_colab_quickstart(tmp_path: Path, kernel_name: str) -> None:
    nb, store = execute(
        "colab_quickstart.ipynb", tmp_path, kernel_name, env={"CARBON_JUPYTER_DISPLAY": "colab"}
    )
    assert_no_errors(nb)
    # Installed already: the guarded %pip cell does nothing (and reaches no network).
    assert "already installed: nothing to install" in stream(cell(nb, "import importlib.util"))
    assert "display chosen here: colab" in stream(cell(nb, "from carbon_jupyter.show import"))
    page = assert_tracked(cell(nb, "%%carbon colab-train"), "colab-train")
    assert "cdn.bokeh.org" in page  # Colab's self-contained page loads BokehJS from the CDN
    assert "colab-train" in data(cell(nb, "%carbon runs"), "text/html")

    exported = tmp_path / "work" / "carbon_runs.csv"
    assert "exported 1 run" in stream(cell(nb, "%carbon export"))
    with exported.open(encoding="utf-8") as f:
        assert [row["label"] for row in csv.DictReader(f)] == ["colab-train"]
    (run,) = store.runs()
    assert run.status == "ok" and run.energy_j > 0
    assert run.intensity is not None and run.intensity.pue > 1.0  # --pue gcp


def _server_url(nb: Any) -> str:
    started = stream(cell(nb, "import atexit"))
    found = re.search(r"team server up at (http://127\.0\.0\.1:\d+)", started)
    assert found, started
    return found.group(1)


def _answers(url: str) -> bool:
    import httpx

    try:
        httpx.get(f"{url}/healthz", timeout=2)
    except httpx.TransportError:
        return False
    return True


def test_team_server(tmp_path: Path, kernel_name: str) -> None:
    nb, store = execute("team_server.ipynb", tmp_path, kernel_name)
    assert_no_errors(nb)
    url = _server_url(nb)
    assert "it answered" in stream(cell(nb, "%carbon server {server_url}"))
    assert_tracked(cell(nb, "%%carbon team-train"), "team-train")

    arrived = stream(cell(nb, "deadline = time.monotonic() + 30"))
    count = re.search(r"runs on the server: (\d+)", arrived)
    assert count and int(count.group(1)) > 0, arrived
    assert "team-train  ok" in arrived
    (run,) = store.runs()  # the run the server holds is the one stored here
    links = stream(cell(nb, "from IPython.display import"))
    assert f"dashboard: {url}/" in links and f"{url}/runs/{run.id}" in links

    assert "server stopped" in stream(cell(nb, "%carbon server off"))
    assert not _answers(url)


def test_team_server_stops_when_a_cell_fails(tmp_path: Path, kernel_name: str) -> None:
    """A failing cell ends the notebook early; the server goes with the kernel all the same."""
    nb = nbformat.read(EXAMPLES / "team_server.ipynb", as_version=4)
    start = cell(nb, "import atexit")
    nb.cells = [start, nbformat.v4.new_code_cell("raise RuntimeError('a cell fails')")]
    with pytest.raises(nbclient.exceptions.CellExecutionError, match="a cell fails"):
        execute("team_server.ipynb", tmp_path, kernel_name, nb=nb)
    assert not _answers(_server_url(nb))
