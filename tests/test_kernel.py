"""%%carbon in a real Jupyter kernel (ipykernel, driven by nbclient), storing into a real file.

The kernel is started the way Jupyter Server starts one (its connection file
is ``kernel-<id>.json``), with ``CARBON_JUPYTER_DB`` pointing at a file under
the test's folder through the kernel's environment. No browser: outputs are
read from the executed notebook, runs from the SQLite file.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sqlite3
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
if importlib.util.find_spec("ipykernel") is None:  # not imported: this process is no kernel
    pytest.skip("ipykernel is not installed (pip install ipykernel)", allow_module_level=True)

from jupyter_client.manager import KernelManager  # noqa: E402

from carbon_jupyter.store.sqlite import Store  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


KERNEL_NAME = "carbon-test-python"


def install_test_kernel(folder: Path) -> str:
    """A kernel spec running this very Python, found through JUPYTER_PATH; returns its name.

    The kernel then runs the carbon_jupyter under test. Naming it other than
    ``python3`` also keeps jupyter_client from importing ipykernel into the
    test process, which would make later tests look as if they ran in a kernel.
    """
    spec = folder / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Python (carbon-jupyter tests)",
                "language": "python",
            }
        )
    )
    return KERNEL_NAME


@pytest.fixture
def kernel_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    jupyter_path = tmp_path / "jupyter-path"
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter_path))
    return install_test_kernel(jupyter_path)


def kernel_env(db_path: Path) -> dict[str, str]:
    """The test process's (isolated) environment with the kernel's own store; display detected."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARBON_JUPYTER_")}
    env["CARBON_JUPYTER_DB"] = str(db_path)
    return env


def notebook(*sources: str) -> Any:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    return nb


@contextmanager
def running_kernel(
    nb: Any, tmp_path: Path, db_path: Path, kernel_name: str, **options: Any
) -> Iterator[Any]:
    """An nbclient client with a started kernel, as Jupyter Server would name it."""
    kernel_id = str(uuid.uuid4())
    runtime = tmp_path / "runtime"
    runtime.mkdir(exist_ok=True)
    km = KernelManager(
        kernel_name=kernel_name,
        kernel_id=kernel_id,
        connection_file=str(runtime / f"kernel-{kernel_id}.json"),
    )
    client = nbclient.NotebookClient(
        nb,
        km=km,
        timeout=120,
        kernel_name=kernel_name,
        resources={"metadata": {"path": str(tmp_path)}},
        **options,
    )
    with client.setup_kernel(env=kernel_env(db_path), cleanup_kc=True):
        assert client.km.kernel_id == kernel_id
        yield client


def outputs_of(cell: Any, mime: str) -> list[str]:
    return [str(o["data"][mime]) for o in cell.outputs if mime in o.get("data", {})]


def test_tracked_cells_are_stored_with_the_kernel_id_and_shown_in_the_notebook(
    tmp_path: Path, kernel_name: str
) -> None:
    db_path = tmp_path / "kernel.db"
    nb = notebook(
        "%load_ext carbon_jupyter",
        "%%carbon nb-run --phase inference --items 100 --interval 0.2\n"
        "import time\ntime.sleep(1.0)\n",
        "%%carbon nb-fail\nraise ValueError('bad batch')\n",
        "%carbon runs",
    )
    with running_kernel(nb, tmp_path, db_path, kernel_name, allow_errors=True) as client:
        kernel_id = client.km.kernel_id
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)

    by_label = {r.label: r for r in Store(db_path).runs(limit=10)}
    assert set(by_label) == {"nb-run", "nb-fail"}
    ok, failed = by_label["nb-run"], by_label["nb-fail"]
    assert ok.kernel == kernel_id and failed.kernel == kernel_id
    assert ok.status == "ok" and ok.phase == "inference"
    assert failed.status == "error" and failed.error == "ValueError: bad batch"
    assert ok.items == 100
    assert ok.duration_s >= 1.0 and ok.energy_j > 0
    assert ok.energy_per_item_j == pytest.approx(ok.energy_j / 100)
    assert ok.co2_per_item_g == pytest.approx(ok.co2_g / 100)

    tracked = nb.cells[1]
    html = outputs_of(tracked, "text/html")
    assert any("carbon-jupyter-summary" in h and "nb-run" in h for h in html), html
    assert any("per item" in h and "100 items" in h for h in html), html
    plain = outputs_of(tracked, "text/plain")
    assert any("carbon: nb-run" in p and "CO2e" in p for p in plain), plain
    # the live widget was replaced by the final plot and summary
    assert not outputs_of(tracked, "application/vnd.jupyter.widget-view+json")

    errors = [o for o in nb.cells[2].outputs if o["output_type"] == "error"]
    assert [e["ename"] for e in errors] == ["ValueError"]
    failed_html = " ".join(outputs_of(nb.cells[2], "text/html"))
    assert "[error]" in failed_html and "ValueError: bad batch" in failed_html

    runs_table = " ".join(outputs_of(nb.cells[3], "text/html"))
    assert "nb-run" in runs_table and "nb-fail" in runs_table


def _flushed_samples(db_path: Path, label: str) -> int:
    """Samples stored so far for the run called ``label`` (read without opening a Store)."""
    if not db_path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5) as conn:
            row = conn.execute(
                "SELECT COUNT(*) FROM samples JOIN runs ON runs.id = samples.run_id "
                "WHERE runs.label = ? AND runs.status = 'running'",
                (label,),
            ).fetchone()
    except sqlite3.OperationalError:  # not created yet
        return 0
    return int(row[0])


def test_a_killed_kernel_leaves_its_run_lost_with_the_flushed_samples(
    tmp_path: Path, kernel_name: str
) -> None:
    db_path = tmp_path / "kernel.db"
    nb = notebook("%load_ext carbon_jupyter")
    with running_kernel(nb, tmp_path, db_path, kernel_name) as client:
        client.execute_cell(nb.cells[0], 0)
        pid, kernel_id = client.km.provisioner.pid, client.km.kernel_id
        client.kc.execute("%%carbon doomed --no-plot --interval 0.1\nimport time\ntime.sleep(60)\n")
        deadline = time.monotonic() + 30
        while _flushed_samples(db_path, "doomed") < 10:  # at least one flush of the sampler
            assert time.monotonic() < deadline, "no samples were flushed within 30 s"
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while client.km.provisioner.process.poll() is None:
            assert time.monotonic() < deadline, "the kernel did not die"
            time.sleep(0.05)
        flushed = _flushed_samples(db_path, "doomed")

    store = Store(db_path)  # the next open marks runs of dead processes lost
    (run,) = store.runs(label="doomed")
    assert run.status == "lost"
    assert run.kernel == kernel_id
    samples = store.samples(run.id)
    assert len(samples) == flushed >= 10
    assert run.energy_j > 0
    last_t_s = max(s.t_s for s in samples)
    assert run.duration_s == pytest.approx(last_t_s, abs=0.01)


def bokehjs_copies(nb: Any) -> int:
    """How many outputs in ``nb`` carry the BokehJS library (each about 1.3 MB)."""
    return sum(
        1
        for cell in nb.cells
        for output in cell.get("outputs", [])
        for value in output.get("data", {}).values()
        if len(str(value)) > 1_000_000 and "Bokeh" in str(value)
    )


def test_a_plotted_cell_is_measured_without_its_plot(tmp_path: Path, kernel_name: str) -> None:
    """The run of a %%carbon cell is the cell's code: the plots are drawn outside its window.

    The first plotted cell of a kernel imports Bokeh, sends BokehJS and builds the
    figure (about a second), all before its tracker starts. The cell before it is
    the kernel's first tracked one, whose run pays the store's first write.
    """
    db_path = tmp_path / "kernel.db"
    nb = notebook(
        "%load_ext carbon_jupyter",
        "%%carbon store-warm-up --quiet\npass",
        "%%carbon first-plot\nimport time\ntime.sleep(0.6)",
        "%%carbon second-plot\nimport time\ntime.sleep(0.6)",
        "x = 1",
    )
    with running_kernel(nb, tmp_path, db_path, kernel_name) as client:
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)

    runs = {r.label: r for r in Store(db_path).runs(limit=10)}
    for label in ("first-plot", "second-plot"):
        assert runs[label].status == "ok"
        assert 0.6 <= runs[label].duration_s <= 0.63, (label, runs[label].duration_s)
    for cell in nb.cells[2:4]:  # the live widget became the static plot and summary
        html = " ".join(outputs_of(cell, "text/html"))
        assert "carbon-jupyter-summary" in html and "data-root-id" in html
        assert not outputs_of(cell, "application/vnd.jupyter.widget-view+json")
    assert bokehjs_copies(nb) == 1
    assert not nb.cells[4].outputs  # nothing of ours under a plain cell
