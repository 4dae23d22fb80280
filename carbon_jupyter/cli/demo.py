"""``carbon-jupyter demo``: the quick-start notebook run headless, its runs in a table and a report.

::

    carbon-jupyter demo                                  # writes ./carbon-jupyter-demo/report.html
    carbon-jupyter demo --output-dir /tmp/demo --keep-notebook

The demo executes ``quickstart.ipynb`` (shipped inside the package as
``carbon_jupyter/examples/quickstart.ipynb``; ``examples/quickstart.ipynb`` in
a checkout) top to bottom in a fresh kernel of this Python: a small neural
network is trained (``%%carbon train --phase train``), then serves 60000
predictions (``%%carbon predict --phase inference --items 60000``). It takes a
few seconds, needs no GPU and no network, and uses the embedded carbon-intensity
tables. Then it

* prints a table of the notebook's runs: label, phase, energy, CO2e, time,
  energy per item, and how each figure was obtained (``rapl (measured)``,
  ``cpu-model (estimated)``...);
* writes ``DIR/report.html``, one self-contained page (BokehJS inside it, so it
  opens offline and can be mailed): each run's power per device above its
  cumulative CO2e, and the runs compared side by side;
* says how to open the same notebook live in JupyterLab: the checkout's
  ``examples/quickstart.ipynb``, or after a wheel install a copy it puts in
  ``DIR/quickstart.ipynb``; with ``--keep-notebook`` that file is the executed
  notebook, outputs and all.

Where the runs go: a store of the demo's own, ``DIR/carbon.db``, so the history
in your own store (``CARBON_JUPYTER_DB``, or the default that ``carbon-jupyter
doctor`` names) is left untouched; ``--db PATH`` stores them elsewhere, your
own store included. Running the demo again into the same folder adds its runs
to that file, and the table and report show the new ones only. The kernel keeps
your settings of where the power comes from and how this machine is measured
(``CARBON_JUPYTER_COUNTRY``, ``..._CLOUD_REGION``, ``..._INTENSITY``,
``..._PUE``, ``..._POWERCAP_ROOT``, ``..._GPUS``...) and drops those that
would send the runs anywhere else (``CARBON_JUPYTER_SERVER``: nothing is
forwarded to a team server).

Running a notebook needs nbclient and ipykernel, which come with the ``lab``
extra: without them the command says ``pip install 'carbon-jupyter[lab]'`` and
exits with 2.
"""

from __future__ import annotations

import argparse
import html
import importlib.util
import json
import os
import shlex
import shutil
import sys
import tempfile
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from carbon_jupyter.errors import ConfigError
from carbon_jupyter.model import Run, method_quality
from carbon_jupyter.show import format as fmt

NOTEBOOK_NAME = "quickstart.ipynb"
#: Where the notebook is looked for: inside the installed package, then in a checkout.
NOTEBOOK_PLACES = (
    Path(__file__).resolve().parents[1] / "examples" / NOTEBOOK_NAME,
    Path(__file__).resolve().parents[2] / "examples" / NOTEBOOK_NAME,
)
DEFAULT_OUTPUT_DIR = "carbon-jupyter-demo"
REPORT_NAME = "report.html"
STORE_NAME = "carbon.db"
#: The longest one cell of the notebook may take, in seconds.
CELL_TIMEOUT_S = 120
#: The modules running a notebook takes; the ``lab`` extra installs them.
NOTEBOOK_MODULES = ("nbclient", "nbformat", "ipykernel", "jupyter_client")
MISSING_LAB = "carbon-jupyter demo runs a notebook: pip install 'carbon-jupyter[lab]'"
#: Settings the kernel keeps: where the power comes from and how this machine is measured.
KEPT_SETTINGS = frozenset(
    f"CARBON_JUPYTER_{name}"
    for name in (
        "COUNTRY", "CLOUD_REGION", "INTENSITY", "PUE", "ATTRIBUTION", "GPUS",
        "POWERCAP_ROOT", "CPU_TDP_W", "VIRTUAL", "RAM_W_PER_GB", "REPLAY",
    )
)  # fmt: skip
KERNEL_NAME = "carbon-jupyter-demo"
_COLUMNS = ("label", "phase", "energy", "CO2e", "time", "per item", "method")


class DemoFailed(Exception):
    """The notebook could not be run to the end; the message says where and why."""


def lab_installed() -> bool:
    """Whether everything running a notebook takes is importable."""
    return all(importlib.util.find_spec(name) is not None for name in NOTEBOOK_MODULES)


def find_notebook() -> Path:
    """The quick-start notebook: the package's copy, else the checkout's."""
    for place in NOTEBOOK_PLACES:
        if place.is_file():
            return place
    raise ConfigError(
        f"{NOTEBOOK_NAME} is neither in the package nor in a checkout "
        f"({NOTEBOOK_PLACES[0]}): reinstall carbon-jupyter"
    )


def output_folder(text: str) -> Path:
    """``--output-dir``, created if need be; a file or a folder that cannot be made is refused."""
    folder = Path(text).expanduser().absolute()
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"--output-dir {text}: this is a file; give a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"--output-dir {text}: cannot create it ({exc.strerror}); give a folder you can write"
        ) from None
    if not os.access(folder, os.W_OK):
        raise ConfigError(f"--output-dir {text}: cannot write there; give a folder you can write")
    return folder


def kernel_env(db_path: Path, notebook: Path) -> dict[str, str]:
    """This process's environment for the kernel: the demo's store, settings of this machine."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("CARBON_JUPYTER_") or key in KEPT_SETTINGS
    }
    env["CARBON_JUPYTER_DB"] = str(db_path)
    env["JPY_SESSION_NAME"] = str(notebook)  # the runs' notebook, as Jupyter Server sets it
    return env


def execute(notebook: Path, env: dict[str, str], work_dir: Path) -> Any:
    """Run ``notebook`` in a fresh kernel of this Python; the executed notebook.

    The kernel is described in a temporary folder (``python -m ipykernel_launcher``
    of ``sys.executable``), so no kernel needs to be installed and the kernel runs
    the carbon_jupyter this command belongs to.
    """
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    nb = _nbformat().read(notebook, as_version=4)
    with tempfile.TemporaryDirectory(prefix="carbon-jupyter-demo-") as kernels:
        log_path = Path(kernels) / "kernel.log"
        spec = Path(kernels) / KERNEL_NAME
        spec.mkdir()
        argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        kernel = {
            "argv": argv,
            "display_name": "Python (carbon-jupyter demo)",
            "language": "python",
        }
        (spec / "kernel.json").write_text(json.dumps(kernel), encoding="utf-8")
        manager = AsyncKernelManager(
            kernel_name=KERNEL_NAME, kernel_spec_manager=KernelSpecManager(kernel_dirs=[kernels])
        )
        client = NotebookClient(
            nb, km=manager, timeout=CELL_TIMEOUT_S, resources={"metadata": {"path": str(work_dir)}}
        )
        with log_path.open("w", encoding="utf-8") as log:  # the kernel's own chatter
            try:
                client.execute(env=env, stdout=log, stderr=log)
            except CellExecutionError as exc:
                said = f"{exc.ename}: {exc.evalue}" if exc.ename else _last_line(str(exc))
                raise DemoFailed(f"a cell of {notebook.name} failed: {said}") from None
            except (CellTimeoutError, DeadKernelError, RuntimeError, OSError) as exc:
                log.flush()
                said = _last_line(log_path.read_text(encoding="utf-8", errors="replace"))
                raise DemoFailed(
                    f"the kernel running {notebook.name} stopped: {exc} (it said: {said})"
                ) from None
    return nb


def _nbformat() -> Any:
    """nbformat, whose functions carry no types."""
    import importlib

    return importlib.import_module("nbformat")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


def demo_runs(db_path: Path, notebook: Path, since: datetime) -> list[Run]:
    """The runs the notebook stored in ``db_path`` since ``since``, oldest first, with samples."""
    from carbon_jupyter.store import open_store

    if not db_path.exists():
        raise DemoFailed(f"{notebook.name} ran, but no store was written at {db_path}")
    store = open_store(db_path, create=False)
    found = store.runs(notebook=str(notebook), since=since, limit=None)
    if not found:
        raise DemoFailed(f"{notebook.name} ran, but stored no runs in {db_path}")
    return [store.get_run(run.id, samples=True) for run in reversed(found)]


def methods(run: Run) -> str:
    """How the run's figures were obtained: ``rapl (measured), ram-model (estimated)``."""
    seen = dict.fromkeys(d.method for d in run.devices)
    return ", ".join(f"{method} ({method_quality(method)})" for method in seen) or "-"


def joules(energy_j: float) -> str:
    """A small energy, such as one prediction's, in J, mJ or µJ (as the comparison plots it)."""
    for factor, unit in ((1.0, "J"), (1e-3, "mJ")):
        if abs(energy_j) >= factor:
            return f"{energy_j / factor:.3g} {unit}"
    return f"{energy_j * 1e6:.3g} µJ"


def table_rows(runs: Sequence[Run]) -> list[tuple[str, ...]]:
    """The demo's table: a heading row, then one row per run."""
    rows: list[tuple[str, ...]] = [_COLUMNS]
    for run in runs:
        per_item = run.energy_per_item_j
        rows.append(
            (
                run.label or run.id[:8],
                run.phase or "",
                fmt.energy(run.energy_j),
                fmt.mass(run.co2_g),
                fmt.duration(run.duration_s),
                "" if per_item is None else joules(per_item),
                methods(run),
            )
        )
    return rows


def table_text(runs: Sequence[Run]) -> str:
    rows = table_rows(runs)
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _table_html(runs: Sequence[Run]) -> str:
    head, *body = table_rows(runs)
    cells = "".join(f"<th>{html.escape(c)}</th>" for c in head)
    lines = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in body
    )
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{lines}</tbody></table>"


_STYLE = (
    "body{font-family:sans-serif;margin:24px auto;max-width:1100px;padding:0 16px;color:#222}"
    "table{border-collapse:collapse;margin:8px 0 16px}"
    "th,td{text-align:left;padding:3px 12px 3px 0;border-bottom:1px solid #ddd}"
    "pre{background:#f6f6f6;padding:8px;overflow-x:auto}"
)


def report_html(runs: Sequence[Run], notebook: Path) -> str:
    """One self-contained page: the runs' table, each run's power plot, their comparison."""
    from carbon_jupyter.show.embed import embed_html, inline_bokehjs_html
    from carbon_jupyter.show.plots import comparison_figure, power_figure

    e = html.escape
    first = runs[0]
    sections = []
    for run in runs:
        figure = power_figure(
            [d.device for d in run.devices],
            run.samples,
            intensity=run.intensity,
            attribution=run.attribution,
            title=run.label or run.id[:8],
        )
        sections.append(
            f"<h2>{e(run.label or run.id[:8])}</h2>\n{embed_html(figure)}\n"
            f"<pre>{e(fmt.summary(run))}</pre>"
        )
    comparison = embed_html(comparison_figure(runs, by="label"))
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>carbon-jupyter demo: {e(notebook.name)}</title>\n<style>{_STYLE}</style>\n"
        f"{inline_bokehjs_html()}\n</head>\n<body>\n"
        f"<h1>carbon-jupyter demo: {e(notebook.name)}</h1>\n"
        f"<p>Run on {e(first.host or 'this machine')}, {e(first.started_at[:19])} UTC. "
        f"CO2e at {e(fmt.intensity_source(first))}.</p>\n"
        f"{_table_html(runs)}\n" + "\n".join(sections) + "\n<h2>The runs compared</h2>\n"
        f"{comparison}\n</body>\n</html>\n"
    )


def _shown(path: Path) -> str:
    """``path`` for a command line: relative to the current folder when inside it, quoted."""
    try:
        shown = path.relative_to(Path.cwd())
    except ValueError:
        shown = path
    return shlex.quote(str(shown))


def _live_copy(notebook: Path, nb: Any, folder: Path, args: argparse.Namespace) -> Path:
    """The notebook to open live: the executed one if kept, the checkout's, or a copy in DIR.

    The package's own copy is not for editing, so it is copied into DIR (once: a
    copy there may hold the user's changes).
    """
    if args.keep_notebook:
        kept = folder / NOTEBOOK_NAME
        _nbformat().write(nb, kept)
        print(f"executed notebook: {kept}")
        return kept
    if notebook != NOTEBOOK_PLACES[0]:
        return notebook
    copy = folder / NOTEBOOK_NAME
    if not copy.exists():
        shutil.copyfile(notebook, copy)
    return copy


def sidebar_installed() -> bool:
    """Whether JupyterLab would find the sidebar (a package built without Node has none)."""
    from jupyter_core.paths import jupyter_path

    return any(
        (Path(folder) / "carbon-jupyter" / "package.json").is_file()
        for folder in jupyter_path("labextensions")
    )


def cmd_demo(args: argparse.Namespace) -> int:
    from carbon_jupyter.store import default_db_path

    if not lab_installed():
        print(MISSING_LAB, file=sys.stderr)
        return 2
    notebook = find_notebook()
    folder = output_folder(args.output_dir)
    db_path = Path(args.db).expanduser().absolute() if args.db else folder / STORE_NAME
    print(
        f"Running {_shown(notebook)} in a fresh kernel: a small model trained, "
        "then 60000 predictions (a few seconds)...",
        flush=True,
    )
    since = datetime.now(timezone.utc)
    try:
        nb = execute(notebook, kernel_env(db_path, notebook), folder)
        runs = demo_runs(db_path, notebook, since)
    except DemoFailed as exc:
        print(f"carbon-jupyter demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # the kernel is shut down on the way out
        print("carbon-jupyter demo: interrupted", file=sys.stderr)
        return 130
    print(f"\n{table_text(runs)}\n")
    print(f"CO2e at {fmt.intensity_source(runs[0])}")
    report = folder / REPORT_NAME
    report.write_text(report_html(runs, notebook), encoding="utf-8")
    print(f"report: {report}")
    own = "" if args.db else f" (your own store, {default_db_path()}, is untouched)"
    print(f"runs stored in {db_path}{own}: carbon-jupyter runs --db {_shown(db_path)}")
    print(f"open it live: jupyter lab {_shown(_live_copy(notebook, nb, folder, args))}")
    if not sidebar_installed():
        print(
            "(the JupyterLab sidebar is not installed: this copy was built without Node.js; "
            "the magics, the CLI and this demo do not need it)"
        )
    return 0


def register(sub: Any) -> None:
    """Add ``demo`` to the ``carbon-jupyter`` subcommands."""
    p = sub.add_parser(
        "demo",
        help="run the quick-start notebook headless: a table of its runs and an HTML report",
        description="Execute the quick-start notebook (a small model trained, then used for "
        "predictions) in a fresh kernel, print a table of its runs and write a self-contained "
        "HTML report of their power, CO2e and comparison. Needs the lab extra.",
    )
    p.add_argument(
        "--output-dir",
        default=DEFAULT_OUTPUT_DIR,
        metavar="DIR",
        help=f"where report.html and the demo's store go (default: ./{DEFAULT_OUTPUT_DIR})",
    )
    p.add_argument(
        "--keep-notebook",
        action="store_true",
        help="also write the executed notebook, with its outputs, to DIR/quickstart.ipynb",
    )
    p.add_argument(
        "--db",
        default=None,
        help="the SQLite file for the demo's runs (default: DIR/carbon.db, not your own store)",
    )
    p.set_defaults(func=cmd_demo)


__all__ = ["cmd_demo", "register"]
