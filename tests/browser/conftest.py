"""A real JupyterLab driven in headless Chromium: the harness for the browser tests.

Fixtures
--------
``jupyter_lab`` (package: every test in tests/browser) -> :class:`JupyterLab`
    ``jupyter lab`` on 127.0.0.1 at a free port with a token, its own notebook
    folder, settings, workspaces and run store (``CARBON_JUPYTER_DB``), news
    and update checks off, and ``CARBON_JUPYTER_REPLAY=a100-train`` so every
    kernel measures a replayed A100 next to the real CPU. Stopped after the
    last browser test (terminate, then kill); its log stays in
    ``test-artifacts/jupyter-lab.log``.
``jupyter_notebook7`` (module) -> :class:`JupyterLab`
    The same for Notebook 7 (``jupyter notebook``, the ``notebook`` package
    7.x, on JupyterLab's server and extensions): notebooks open at
    ``/notebooks/<path>``, the home page is ``/tree``. One per test module
    that asks for it; its log is ``test-artifacts/jupyter-notebook7.log``.
    Skipped (failed on CI) when ``notebook>=7`` is not installed.
``lab`` (function) -> :class:`LabPage`
    A page in Debian's Chromium with a fresh profile, logged in to that
    server. :func:`open_lab_page` gives the same for fixtures of a wider
    scope (a module that drives one notebook through several tests); given
    the Notebook 7 server it drives Notebook 7's pages instead.

Typical use::

    def test_something(jupyter_lab: JupyterLab, lab: LabPage) -> None:
        jupyter_lab.write_notebook("t.ipynb", ["%load_ext carbon_jupyter", "1 + 1"])
        lab.open_notebook("t.ipynb")
        lab.run_cell(0)
        lab.run_cell(1)
        assert "2" in lab.output(1).inner_text()
        lab.screenshot("after-run")          # test-artifacts/<test>-after-run.png

Reading the page
----------------
* :meth:`LabPage.bokeh_state` - the Bokeh documents rendered in one cell:
  their ColumnDataSources (name, rows) and glyph renderers (glyph type, rows),
  read from BokehJS (``Bokeh.index`` roots whose element sits in the cell).
* :meth:`LabPage.bokeh_column` - the values of one column of a named source.
* :meth:`LabPage.start_bokeh_recorder` / :meth:`LabPage.bokeh_recording` -
  every change of a source while a cell runs, timed by the page's own clock.
* :class:`KernelFrames` - the kernel websocket frames the page receives,
  decoded (channel, msg_type, content, size in bytes).
* :meth:`LabPage.prompt`, :meth:`LabPage.is_running`, :meth:`LabPage.output`.

Chromium or Playwright missing: the tests are skipped with the reason, except
on CI (``CI=true``), where they fail. Playwright cannot download browsers on
these machines; CI installs Debian's ``chromium`` package.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts"
REPLAY_TRACE = "a100-train"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
NEWS_SETTINGS = "@jupyterlab/apputils-extension/notification.jupyterlab-settings"
SERVER_START_TIMEOUT_S = 90.0
PAGE_TIMEOUT_S = 90.0

T = TypeVar("T")


@dataclass(frozen=True)
class JupyterApp:
    """Which Jupyter frontend a server runs, and where its pages are."""

    title: str  # for messages: "jupyter lab"
    module: str  # started as ``python -m <module>``
    home_path: str  # the page that logs in: /<home_path>?token=...
    notebook_path: str  # a notebook opens at /<notebook_path>/<name>
    shell_selector: str  # present once the page's application has started
    log_name: str  # test-artifacts/<log_name>
    extra_args: tuple[str, ...] = ()


# No news and no update checks (the machines running the tests are offline).
LAB_QUIET = (
    "--LabApp.news_url=None",
    "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
)
JUPYTER_LAB = JupyterApp(
    title="jupyter lab",
    module="jupyterlab",
    home_path="lab",
    notebook_path="lab/tree",
    shell_selector="#jp-main-dock-panel",
    log_name="jupyter-lab.log",
    extra_args=LAB_QUIET,
)
NOTEBOOK_7 = JupyterApp(
    title="jupyter notebook",
    module="notebook",
    home_path="tree",
    notebook_path="notebooks",
    shell_selector="#main-panel",
    log_name="jupyter-notebook7.log",
    extra_args=LAB_QUIET,  # Notebook 7 runs JupyterLab's server extension too
)


# -- small helpers ------------------------------------------------------------------------
def on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def unavailable(reason: str) -> NoReturn:
    """Skip (printing why), or fail on CI, where the browser tests must run."""
    if on_ci():
        pytest.fail(f"{reason} (CI=true: the browser tests must run here)", pytrace=False)
    print(f"\nbrowser tests skipped: {reason}")
    pytest.skip(reason)


def chromium_path() -> str | None:
    found = shutil.which("chromium")
    if found:
        return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None


def poll(
    check: Callable[[], T | None],
    *,
    timeout_s: float,
    what: str,
    interval_s: float = 0.1,
    diagnose: Callable[[], str] | None = None,
) -> T:
    """Call ``check`` until it returns something truthy; fail naming ``what`` after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = f"\n{diagnose()}" if diagnose is not None else ""
            pytest.fail(f"timed out after {timeout_s:g} s waiting for {what}{detail}")
        time.sleep(interval_s)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def artifact_name(text: str) -> str:
    """A file-name-safe form of a test id or step name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:120]


def _nbformat() -> Any:
    import nbformat

    return nbformat


def notebook_json(cells: Sequence[str | tuple[str, str]]) -> Any:
    """An nbformat v4 notebook of ``cells`` (code text, or ``("markdown", text)``)."""
    nbformat = _nbformat()
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    for cell in cells:
        if isinstance(cell, tuple):
            kind, source = cell
            markdown = kind == "markdown"
            maker = nbformat.v4.new_markdown_cell if markdown else nbformat.v4.new_code_cell
            nb.cells.append(maker(source))
        else:
            nb.cells.append(nbformat.v4.new_code_cell(cell))
    return nb


# -- the server ---------------------------------------------------------------------------
@dataclass
class JupyterLab:
    """A running ``jupyter lab`` (or, with ``app=NOTEBOOK_7``, ``jupyter notebook``) server."""

    url: str
    token: str
    root_dir: Path
    db_path: Path
    log_path: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes] = field(repr=False)
    app: JupyterApp = JUPYTER_LAB

    def lab_url(self, notebook: str) -> str:
        return f"{self.url}/lab/tree/{notebook}?token={self.token}"

    def home_url(self) -> str:
        """The page that logs in: ``/lab`` in JupyterLab, ``/tree`` in Notebook 7."""
        return f"{self.url}/{self.app.home_path}?token={self.token}"

    def notebook_url(self, notebook: str) -> str:
        """The page of ``notebook``: ``/lab/tree/<path>``; ``/notebooks/<path>`` in Notebook 7."""
        return f"{self.url}/{self.app.notebook_path}/{notebook}?token={self.token}"

    def write_notebook(self, name: str, cells: Sequence[str | tuple[str, str]]) -> Path:
        """Write a notebook of ``cells`` into the server's root folder; returns its path."""
        nbformat = _nbformat()
        path = self.root_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook_json(cells), str(path))
        return path

    def read_notebook(self, name: str) -> Any:
        """The notebook ``name`` as saved on disk (nbformat v4)."""
        return _nbformat().read(str(self.root_dir / name), as_version=4)

    def api(self, path: str, *, timeout_s: float = 10.0) -> Any:
        """GET ``/api/<path>`` with the token; the decoded JSON."""
        request = urllib.request.Request(
            f"{self.url}/api/{path.lstrip('/')}",
            headers={"Authorization": f"token {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.loads(response.read().decode("utf-8"))

    def kernel_for(self, notebook: str) -> dict[str, Any] | None:
        """The kernel model (id, execution_state, ...) of the session of ``notebook``."""
        for session in self.api("sessions"):
            if session.get("path") == notebook and session.get("kernel"):
                return dict(session["kernel"])
        return None

    def log_tail(self, chars: int = 4000) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no server log)"
        return f"--- end of {self.log_path} ---\n{text[-chars:]}"


def _server_env(base: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARBON_JUPYTER_")}
    for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR"):
        env.pop(name, None)
    settings = base / "lab-settings"
    news = settings / NEWS_SETTINGS
    news.parent.mkdir(parents=True)
    news.write_text(json.dumps({"fetchNews": "false"}), encoding="utf-8")
    env.update(
        {
            "CARBON_JUPYTER_DB": str(base / "store" / "carbon.db"),
            "CARBON_JUPYTER_REPLAY": REPLAY_TRACE,
            "JUPYTERLAB_SETTINGS_DIR": str(settings),
            "JUPYTERLAB_WORKSPACES_DIR": str(base / "lab-workspaces"),
            "JUPYTER_CONFIG_DIR": str(base / "jupyter-config"),
            "JUPYTER_DATA_DIR": str(base / "jupyter-data"),
            "JUPYTER_RUNTIME_DIR": str(base / "jupyter-runtime"),
            "IPYTHONDIR": str(base / "ipython"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    (base / "store").mkdir()
    return env


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@contextlib.contextmanager
def start_server(app: JupyterApp, base: Path) -> Iterator[JupyterLab]:
    """Run ``app`` with its folders under ``base`` until the block ends (see the module docs)."""
    root = base / "notebooks"
    root.mkdir()
    env = _server_env(base)
    token = secrets.token_hex(16)
    port = free_port()
    ARTIFACTS.mkdir(exist_ok=True)
    log_path = ARTIFACTS / app.log_name
    command = [
        sys.executable,
        "-m",
        app.module,
        "--no-browser",
        "--allow-root",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        *app.extra_args,
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT)
    server = JupyterLab(
        url=f"http://127.0.0.1:{port}",
        token=token,
        root_dir=root,
        db_path=Path(env["CARBON_JUPYTER_DB"]),
        log_path=log_path,
        env=env,
        process=process,
        app=app,
    )

    def ready() -> bool:
        if process.poll() is not None:
            pytest.fail(f"{app.title} exited with {process.returncode}\n{server.log_tail()}")
        try:
            return bool(server.api("status", timeout_s=2.0))
        except (OSError, urllib.error.URLError, ValueError):
            return False

    try:
        poll(
            ready,
            timeout_s=SERVER_START_TIMEOUT_S,
            what=f"{app.title} to answer /api/status",
            interval_s=0.25,
            diagnose=server.log_tail,
        )
        yield server
    finally:
        _stop(process)


@pytest.fixture(scope="package")
def jupyter_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterLab]:
    """A JupyterLab server for the browser tests (see the module docs).

    Package-scoped: it stops when the last test of tests/browser is done, so
    the tests after them see no server or kernel among their child processes.
    """
    with start_server(JUPYTER_LAB, tmp_path_factory.mktemp("jupyter-lab")) as server:
        yield server


def notebook7_version() -> str | None:
    """The installed ``notebook`` package's version when it is 7.x, else None."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("notebook")
    except PackageNotFoundError:
        return None
    return found if found.split(".")[0] == "7" else None


@pytest.fixture(scope="module")
def jupyter_notebook7(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterLab]:
    """A Notebook 7 server for one test module (see the module docs)."""
    if notebook7_version() is None:
        unavailable("Notebook 7 is not installed (pip install 'notebook>=7,<8')")
    with start_server(NOTEBOOK_7, tmp_path_factory.mktemp("jupyter-notebook7")) as server:
        yield server


# -- the browser --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def playwright_driver() -> Iterator[Any]:
    """Playwright's sync driver, started once per test module."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed (pip install playwright)")
    if chromium_path() is None:
        unavailable("chromium is not installed (apt-get install chromium)")
    with sync_playwright() as driver:
        yield driver


# Bokeh models rendered in one cell's output, read from BokehJS in the page: for every root
# view whose element sits in the cell, its document's data sources (rows per source) and
# glyph renderers (glyph type, rows of their source).
_BOKEH_STATE_JS = """
(index) => {
  const cells = document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell');
  const cell = cells[index];
  const B = window.Bokeh;
  const state = {bokeh: !!B, documents: 0, roots: 0, sources: [], renderers: [],
                 now_ms: performance.now()};
  if (!cell || !B || !B.index) return state;
  const rowsOf = (data) => {
    const keys = data instanceof Map ? [...data.keys()] : Object.keys(data);
    if (!keys.length) return [0, keys];
    const first = data instanceof Map ? data.get(keys[0]) : data[keys[0]];
    return [first ? first.length : 0, keys];
  };
  const docs = new Set();
  for (const view of B.index.roots) {
    if (view.el && cell.contains(view.el) && view.model.document) {
      docs.add(view.model.document);
      state.roots += 1;
    }
  }
  state.documents = docs.size;
  for (const doc of docs) {
    for (const m of doc.all_models) {
      if (m.type === 'ColumnDataSource') {
        const [rows, columns] = rowsOf(m.data);
        state.sources.push({id: m.id, name: m.name, rows: rows, columns: columns});
      } else if (m.type === 'GlyphRenderer' && m.glyph && m.data_source) {
        const [rows] = m.data_source.data ? rowsOf(m.data_source.data) : [0];
        state.renderers.push({id: m.id, glyph: m.glyph.type, source: m.data_source.id,
                              source_name: m.data_source.name, rows: rows});
      }
    }
  }
  return state;
}
"""


@dataclass(frozen=True)
class KernelFrame:
    """One websocket frame from the server to the page on a kernel's channels."""

    received_s: float  # time.monotonic() when this process handled it (not when it arrived)
    size_b: int
    channel: str
    msg_type: str
    parent_msg_type: str
    content: dict[str, Any] | None  # None for frames over the parse limit


def parse_kernel_frame(payload: bytes | str, *, parse_limit_b: int = 256_000) -> KernelFrame:
    """Decode a kernel websocket frame: the binary v1 protocol, or the older JSON text one."""
    now = time.monotonic()
    if isinstance(payload, str):
        size = len(payload.encode("utf-8"))
        try:
            message = json.loads(payload)
        except ValueError:
            return KernelFrame(now, size, "", "", "", None)
        return KernelFrame(
            now,
            size,
            str(message.get("channel", "")),
            str(message.get("header", {}).get("msg_type", "")),
            str(message.get("parent_header", {}).get("msg_type", "")),
            message.get("content") if size <= parse_limit_b else None,
        )
    size = len(payload)
    count = int.from_bytes(payload[:8], "little")
    offsets = [int.from_bytes(payload[8 * (i + 1) : 8 * (i + 2)], "little") for i in range(count)]
    parts = [payload[offsets[i] : offsets[i + 1]] for i in range(count - 1)]
    if len(parts) < 5:
        return KernelFrame(now, size, "", "", "", None)

    def decoded(part: bytes) -> Any:
        try:
            return json.loads(part.decode("utf-8"))
        except ValueError:
            return {}

    header, parent = decoded(parts[1]), decoded(parts[2])
    content = decoded(parts[4]) if len(parts[4]) <= parse_limit_b else None
    return KernelFrame(
        now,
        size,
        parts[0].decode("utf-8", errors="replace"),
        str(header.get("msg_type", "")),
        str(parent.get("msg_type", "") if isinstance(parent, dict) else ""),
        content,
    )


class KernelFrames:
    """Every frame the page receives on kernel websockets, decoded (see :func:`parse_kernel_frame`).

    Attach before the page opens the notebook: ``frames = KernelFrames(lab.page)``.
    """

    def __init__(self, page: Any) -> None:
        self.frames: list[KernelFrame] = []
        page.on("websocket", self._on_websocket)

    def _on_websocket(self, ws: Any) -> None:
        if "/api/kernels/" in ws.url:
            ws.on("framereceived", lambda payload: self.frames.append(parse_kernel_frame(payload)))

    def since(self, start_s: float, end_s: float | None = None) -> list[KernelFrame]:
        """Frames handled between two ``time.monotonic()`` readings."""
        return [
            f
            for f in self.frames
            if f.received_s >= start_s and (end_s is None or f.received_s <= end_s)
        ]


class LabPage:
    """One Chromium page on the server (JupyterLab or Notebook 7), with the steps a user takes."""

    def __init__(self, page: Any, server: JupyterLab, artifact_prefix: str) -> None:
        self.page = page
        self.server = server
        self.artifact_prefix = artifact_name(artifact_prefix)
        self.notebook: str | None = None
        self.console: list[str] = []
        page.on("console", lambda message: self.console.append(f"{message.type}: {message.text}"))
        page.on("pageerror", lambda error: self.console.append(f"pageerror: {error}"))

    # -- artefacts ----------------------------------------------------------------------
    def screenshot(self, step: str) -> Path:
        """Save a screenshot as ``test-artifacts/<test>-<step>.png``; returns its path."""
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{self.artifact_prefix}-{artifact_name(step)}.png"
        with contextlib.suppress(Exception):
            self.page.screenshot(path=str(path), full_page=True)
        return path

    def diagnose(self) -> str:
        console = "\n".join(self.console[-20:])
        return f"browser console (last lines):\n{console}\n{self.server.log_tail(2000)}"

    # -- locators -----------------------------------------------------------------------
    @property
    def panel(self) -> Any:
        return self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")

    def cells(self) -> Any:
        return self.panel.locator(".jp-Cell")

    def cell(self, index: int) -> Any:
        return self.cells().nth(index)

    def output(self, index: int) -> Any:
        """The output area of cell ``index``."""
        return self.cell(index).locator(".jp-OutputArea").first

    def prompt(self, index: int) -> str:
        """The input prompt of cell ``index``: '[ ]:', '[*]:' while running, '[3]:' after."""
        text = self.cell(index).locator(".jp-InputPrompt").first.inner_text()
        return str(text).strip()

    def is_running(self, index: int) -> bool:
        return "[*]" in self.prompt(index)

    def execution_count(self, index: int) -> int | None:
        match = re.search(r"\[(\d+)\]", self.prompt(index))
        return int(match.group(1)) if match else None

    # -- steps --------------------------------------------------------------------------
    def login(self) -> None:
        """Open the home page with the token (sets the login cookie)."""
        self.page.goto(self.server.home_url())
        self.page.wait_for_selector(self.server.app.shell_selector, timeout=PAGE_TIMEOUT_S * 1000)

    def open_notebook(self, name: str, *, timeout_s: float = PAGE_TIMEOUT_S) -> None:
        """Open ``name`` (relative to the server's root) and wait for its kernel to be idle."""
        self.notebook = name
        self.page.goto(self.server.notebook_url(name))
        self._wait_notebook_shown(timeout_s)
        self.wait_kernel_idle(timeout_s=timeout_s)

    def _wait_notebook_shown(self, timeout_s: float) -> None:
        poll(
            lambda: self.cells().count() > 0,
            timeout_s=timeout_s,
            what=f"the notebook {self.notebook} to show its cells",
            interval_s=0.2,
            diagnose=self.diagnose,
        )

    def wait_kernel_idle(self, *, timeout_s: float = PAGE_TIMEOUT_S) -> None:
        """Wait until the server says the notebook's kernel is idle and the page agrees."""
        assert self.notebook is not None, "open a notebook first"
        notebook = self.notebook

        def idle() -> bool:
            kernel = self.server.kernel_for(notebook)
            if kernel is None or kernel.get("execution_state") != "idle":
                return False
            return bool(self.page.evaluate(_KERNEL_IDLE_JS))

        poll(
            idle,
            timeout_s=timeout_s,
            what=f"the kernel of {notebook} to be idle",
            interval_s=0.25,
            diagnose=self.diagnose,
        )

    def run_cell(self, index: int, *, wait: bool = True, timeout_s: float = 120.0) -> None:
        """Click into cell ``index`` and press Shift+Enter; by default wait until it ran."""
        before = self.execution_count(index)
        self.cell(index).locator(".jp-InputArea-editor").first.click()
        self.page.keyboard.press("Shift+Enter")
        if wait:
            self.wait_cell_done(index, after=before, timeout_s=timeout_s)

    def wait_cell_started(self, index: int, *, timeout_s: float = 30.0) -> None:
        poll(
            lambda: self.is_running(index) or self.execution_count(index) is not None,
            timeout_s=timeout_s,
            what=f"cell {index} to start",
            diagnose=self.diagnose,
        )

    def wait_cell_done(
        self, index: int, *, after: int | None = None, timeout_s: float = 120.0
    ) -> int:
        """Wait until cell ``index`` shows an execution count (newer than ``after``)."""

        def done() -> int | None:
            count = self.execution_count(index)
            if count is None or (after is not None and count <= after):
                return None
            return count

        return poll(
            done,
            timeout_s=timeout_s,
            what=f"cell {index} to finish running",
            interval_s=0.2,
            diagnose=self.diagnose,
        )

    def run_all(self, *, wait: bool = True, timeout_s: float = 180.0) -> None:
        """Run > Run All Cells; by default wait until every code cell ran."""
        self.page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        self.page.locator(
            ".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")
        ).first.click()
        if not wait:
            return
        deadline = time.monotonic() + timeout_s
        for index in range(self.cells().count()):
            if "jp-CodeCell" not in (self.cell(index).get_attribute("class") or ""):
                continue
            self.wait_cell_done(index, timeout_s=max(1.0, deadline - time.monotonic()))
        self.wait_kernel_idle(timeout_s=max(1.0, deadline - time.monotonic()))

    def save(self, *, timeout_s: float = 30.0) -> None:
        """Ctrl+S, then wait until the file is written and the notebook no longer dirty."""
        assert self.notebook is not None, "open a notebook first"
        path = self.server.root_dir / self.notebook
        before = path.stat().st_mtime_ns if path.exists() else 0
        self.panel.locator(".jp-Notebook").first.click(position={"x": 5, "y": 5})
        self.page.keyboard.press("Control+s")

        def saved() -> bool:
            written = path.exists() and path.stat().st_mtime_ns != before
            dirty = self.page.locator(".jp-mod-dirty").count() > 0
            return written and not dirty

        poll(saved, timeout_s=timeout_s, what=f"{self.notebook} to be saved", interval_s=0.2)

    def reload(self, *, timeout_s: float = PAGE_TIMEOUT_S) -> None:
        """Reload the page and wait for the notebook and its kernel again."""
        self.page.reload()
        self._wait_notebook_shown(timeout_s)
        self.wait_kernel_idle(timeout_s=timeout_s)

    # -- reading Bokeh ------------------------------------------------------------------
    def bokeh_state(self, index: int) -> dict[str, Any]:
        """The Bokeh documents rendered in cell ``index``: their sources and glyph renderers.

        ``{"bokeh": bool, "documents": n, "roots": n, "now_ms": page time,
        "sources": [{"id", "name", "rows", "columns"}],
        "renderers": [{"id", "glyph", "source", "source_name", "rows"}]}``
        """
        return dict(self.page.evaluate(f"({_BOKEH_STATE_JS})({index})"))

    def bokeh_column(self, index: int, source_name: str, column: str) -> list[Any]:
        """The values of ``column`` in the first source named ``source_name`` in cell ``index``."""
        return list(self.page.evaluate(_BOKEH_COLUMN_JS, [index, source_name, column]))

    def start_bokeh_recorder(self, index: int, source_name: str, interval_ms: int = 50) -> None:
        """Record, in the page, every change of the rows of ``source_name`` in cell ``index``.

        Only while the cell runs (its prompt shows ``[*]``): the live view, not the final plot.

        Read with :meth:`bokeh_recording`; the page's own clock times each
        change, so the figures do not depend on how fast this process polls.
        """
        self.page.evaluate(_RECORDER_JS, [index, source_name, interval_ms])

    def bokeh_recording(self, *, stop: bool = True) -> list[tuple[float, int, str]]:
        """``[(page time in ms, rows, source model id), ...]``: one entry per change.

        A new source id means a new plot (a replaced output), not new data.
        """
        entries = self.page.evaluate(
            "(stop) => { if (stop) clearInterval(window.__carbonRecorder);"
            " return window.__carbonRecording || []; }",
            stop,
        )
        return [(float(t_ms), int(rows), str(model)) for t_ms, rows, model in entries]


_BOKEH_COLUMN_JS = f"""
([index, name, column]) => {{
  const state = ({_BOKEH_STATE_JS})(index);
  const found = state.sources.find((s) => s.name === name);
  if (!found) return [];
  for (const doc of window.Bokeh.documents) {{
    const model = doc.get_model_by_id(found.id);
    if (model) {{
      const data = model.data;
      const values = data instanceof Map ? data.get(column) : data[column];
      return values ? Array.from(values) : [];
    }}
  }}
  return [];
}}
"""

_RECORDER_JS = f"""
([index, name, interval]) => {{
  const cellState = ({_BOKEH_STATE_JS});
  if (window.__carbonRecorder) clearInterval(window.__carbonRecorder);
  window.__carbonRecording = [];
  const seen = new Set();
  window.__carbonRecorder = setInterval(() => {{
    const cells = document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell');
    const prompt = cells[index] && cells[index].querySelector('.jp-InputPrompt');
    if (!prompt || !prompt.textContent.includes('[*]')) return;
    const state = cellState(index);
    for (const source of state.sources.filter((s) => s.name === name)) {{
      const key = source.id + ':' + source.rows;
      if (!seen.has(key)) {{
        seen.add(key);
        window.__carbonRecording.push([state.now_ms, source.rows, source.id]);
      }}
    }}
  }}, interval);
}}
"""

_KERNEL_IDLE_JS = """
() => {
  const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
  if (!panel) return false;
  const indicator = panel.querySelector('.jp-Notebook-ExecutionIndicator');
  if (indicator && indicator.getAttribute('data-status')) {
    return indicator.getAttribute('data-status') === 'idle';
  }
  const status = document.querySelector('.jp-StatusBar-Widget');
  return !!status && /Idle/.test(document.body.innerText);
}
"""


@contextlib.contextmanager
def open_lab_page(
    driver: Any, server: JupyterLab, profile_dir: Path, artifact_prefix: str
) -> Iterator[LabPage]:
    """A logged-in :class:`LabPage` in a fresh Chromium profile at ``profile_dir``."""
    executable = chromium_path()
    if executable is None:
        unavailable("chromium is not installed (apt-get install chromium)")
    context = driver.chromium.launch_persistent_context(
        str(profile_dir),
        executable_path=executable,
        args=CHROMIUM_ARGS,
        headless=True,
        viewport={"width": 1400, "height": 1000},
    )
    try:
        page = context.pages[0] if context.pages else context.new_page()
        page.set_default_timeout(PAGE_TIMEOUT_S * 1000)
        lab = LabPage(page, server, artifact_prefix)
        lab.login()
        yield lab
    finally:
        context.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the test item, so fixtures can tell a failed test."""
    report = yield
    setattr(item, f"carbon_report_{report.when}", report)
    return report


def failed_test(request: pytest.FixtureRequest) -> bool:
    """True when the test that ``request`` belongs to failed in setup or in its body."""
    node = request.node
    return any(
        getattr(getattr(node, f"carbon_report_{when}", None), "failed", False)
        for when in ("setup", "call")
    )


@pytest.fixture
def lab(
    playwright_driver: Any,
    jupyter_lab: JupyterLab,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[LabPage]:
    """A fresh logged-in JupyterLab page for one test; a screenshot is kept when it fails."""
    with open_lab_page(
        playwright_driver, jupyter_lab, tmp_path / "chromium", request.node.name
    ) as page:
        yield page
        if failed_test(request):
            print(f"\nscreenshot of the failure: {page.screenshot('failed')}")


# -- what the tests read of carbon-jupyter's own output -----------------------------------
SAMPLES_SOURCE = "carbon-samples"
CPU_METHODS = ("cpu-model", "rapl")  # which one depends on whether RAPL is readable here
NUMBER = r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?"
WATTS = re.compile(rf"^{NUMBER} W$")
PANEL = "#carbon-jupyter-panel"


def assert_static_run_output(lab: LabPage, cell: int, *, label: str, min_rows: int) -> None:
    """``cell`` shows one static Bokeh plot of the whole run and the summary under it."""
    output = lab.output(cell)
    state = poll(
        lambda: (
            output.locator(".carbon-jupyter-run").count() == 1
            and (s := lab.bokeh_state(cell))["roots"] >= 1
            and s
        ),
        timeout_s=30,
        what=f"the static plot to render in cell {cell}",
        diagnose=lambda: f"{output.inner_text()}\n{lab.diagnose()}",
    )
    assert state["roots"] == 1, state  # the live widget is gone; only the static plot is left
    rows = [s["rows"] for s in state["sources"] if s["name"] == SAMPLES_SOURCE]
    assert rows and rows[0] >= min_rows, (state, min_rows)
    assert output.locator(".carbon-jupyter-run [data-root-id]").count() == 1
    summary = output.locator(".carbon-jupyter-summary").inner_text()
    assert f"carbon: {label}" in summary, summary
    assert "CO2e" in summary, summary
    assert re.search(r"\d[\d.]* (m|k)?Wh", summary), summary
    assert "replay" in summary and any(m in summary for m in CPU_METHODS), summary


class CarbonPanel:
    """The parts of the Carbon sidebar panel a user reads, by their accessible names."""

    def __init__(self, lab: LabPage) -> None:
        self.lab = lab
        page = lab.page
        self.root = page.locator(PANEL)
        self.switch = page.get_by_role("switch", name="Track every cell")
        self.power = self.root.locator('output[aria-label="Kernel power"]')
        self.chart = self.root.locator('svg[aria-label="Power by device"]')
        self.energy = self.root.locator('output[aria-label="Session energy"]')
        self.co2 = self.root.locator('output[aria-label="Session CO2"]')
        self.intensity = self.root.locator('output[aria-label="Carbon intensity"]')
        self.machine = self.root.locator('output[aria-label="Machine power"]')
        self.rows = self.root.locator('table[aria-label="Latest runs"] tbody tr[data-run-id]')
        self.error = self.root.locator(".cj-error")
        self.status = page.locator('[aria-label="Carbon status"]')  # JupyterLab only

    def text(self, locator: Any) -> str:
        return str(locator.inner_text()).strip()

    def number(self, locator: Any) -> float | None:
        """The leading number of an output ('0.123', '0.05 (estimate)'), None for '–'."""
        match = re.match(NUMBER, self.text(locator))
        return float(match.group(0)) if match else None

    def chart_lines(self) -> list[str]:
        """The ``points`` of every line drawn in the chart."""
        points = self.chart.locator("polyline").evaluate_all(
            "(lines) => lines.map((l) => l.getAttribute('points') || '')"
        )
        return [str(p) for p in points if str(p).strip()]

    def table(self) -> list[dict[str, str]]:
        """The runs table, newest first: run id and the five cells of each row."""
        rows = self.rows.evaluate_all(
            "(rows) => rows.map((r) => [r.getAttribute('data-run-id'),"
            " ...[...r.querySelectorAll('td')].map((td) => td.textContent.trim())])"
        )
        names = ("id", "run", "time", "wh", "co2_g", "status")
        return [dict(zip(names, row, strict=True)) for row in rows]

    def describe(self) -> str:
        shown = self.root.count() and self.root.is_visible()
        parts = {
            "visible": shown,
            "switch checked": self.switch.is_checked() if self.switch.count() else None,
            "switch disabled": self.switch.is_disabled() if self.switch.count() else None,
            "power": self.text(self.power) if shown else None,
            "energy": self.text(self.energy) if shown else None,
            "co2": self.text(self.co2) if shown else None,
            "machine": self.text(self.machine) if shown else None,
            "rows": self.table(),
            "status bar": self.text(self.status) if self.status.count() else None,
            "error": self.text(self.error) if self.error.count() else None,
        }
        return f"panel: {parts}\n{self.lab.diagnose()}"


@contextlib.contextmanager
def headless_chromium() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright (skipped without them, failed on CI)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed (pip install playwright)")
    executable = chromium_path()
    if executable is None:
        unavailable("chromium is not installed (apt-get install chromium)")
    with sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=executable, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            browser.close()
