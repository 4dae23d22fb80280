"""The sidebar as users get it: the TypeScript checks, and the wheel installed without Node.

* The TypeScript of ``labextension/`` is linted (eslint, prettier) and its unit
  tests run (``npm run lint``, ``npm test``) wherever its ``node_modules`` were
  installed, which ``pip install -e .`` does through hatch-jupyter-builder.
* The wheel check (``slow``, about 45 s with a warm pip cache, 1-2 min cold)
  builds the wheel with ``pip wheel . --no-deps --no-build-isolation`` (using
  the labextension already built into ``carbon_jupyter/labextension``),
  installs it with JupyterLab into a fresh virtual environment whose ``PATH``
  holds no Node, and asks ``jupyter labextension list`` and ``jupyter server
  extension list`` whether the sidebar is there and enabled; then runs
  ``carbon-jupyter demo`` there, whose notebook must have come in the package.
  It needs the package index (or a pip cache) for the dependencies.
* A checkout without Node (a copy without ``node_modules`` and without the
  built sidebar, a ``PATH`` without npm) builds the Python package without the
  sidebar, and ``pip wheel -v`` shows one line saying so, not a traceback
  (about 2 s, offline: ``--no-build-isolation``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.test_store_support import REPO

LABEXTENSION = REPO / "labextension"
BUILT = REPO / "carbon_jupyter" / "labextension"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _run(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout_s: float = 300
) -> str:
    done = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    output = ANSI.sub("", done.stdout + done.stderr)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{output[-4000:]}"
    return output


@pytest.mark.skipif(
    not (LABEXTENSION / "node_modules").is_dir() or shutil.which("npm") is None,
    reason="needs npm and labextension/node_modules (pip install -e . installs them)",
)
def test_the_sidebar_typescript_lints_and_passes_its_unit_tests() -> None:
    _run(["npm", "run", "lint"], cwd=LABEXTENSION)
    output = _run(["npm", "test"], cwd=LABEXTENSION)
    assert re.search(r"# fail 0", output), output
    assert not re.search(r"# pass 0\b", output), output


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.skipif(
    not (BUILT / "static" / "style.js").exists(),
    reason="the labextension is not built; pip install -e . builds it",
)
def test_the_wheel_installs_without_node_and_enables_the_sidebar(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    _run(
        [sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation",
         "-w", str(dist)],
        cwd=REPO,
    )  # fmt: skip
    (wheel,) = dist.glob("carbon_jupyter-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shared = "carbon_jupyter-{}.data/data/".format(wheel.name.split("-")[1])
    lab = shared + "share/jupyter/labextensions/carbon-jupyter/"
    assert lab + "package.json" in names
    assert lab + "install.json" in names
    assert any(n.startswith(lab + "static/remoteEntry.") for n in names)
    assert shared + "etc/jupyter/jupyter_server_config.d/carbon_jupyter.json" in names
    assert "carbon_jupyter/examples/quickstart.ipynb" in names  # for carbon-jupyter demo

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    bin_dir = venv / "bin"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "VIRTUAL_ENV"))}
    env.update(PATH=str(bin_dir), HOME=str(tmp_path / "home"), PIP_DISABLE_PIP_VERSION_CHECK="1")
    if "PIP_CACHE_DIR" not in env:  # the new HOME would otherwise start a cold pip cache
        env["PIP_CACHE_DIR"] = str(Path.home() / ".cache" / "pip")
    assert shutil.which("node", path=env["PATH"]) is None
    assert shutil.which("npm", path=env["PATH"]) is None

    python = str(bin_dir / "python")
    _run([python, "-m", "pip", "install", "-q", str(wheel), "jupyterlab>=4,<5"], tmp_path, env)
    labextensions = _run([python, "-m", "jupyter", "labextension", "list"], tmp_path, env)
    line = next(ln for ln in labextensions.splitlines() if "carbon-jupyter" in ln)
    assert re.search(r"carbon-jupyter v\S+ enabled\s+OK", line), labextensions
    assert str(venv / "share" / "jupyter" / "labextensions") in labextensions

    server = _run([python, "-m", "jupyter", "server", "extension", "list"], tmp_path, env)
    assert re.search(r"carbon_jupyter enabled", server), server
    assert re.search(r"carbon_jupyter \S+ OK", server), server

    # The README's first command, from the wheel: the notebook it runs came in the package.
    demo = _run([str(bin_dir / "carbon-jupyter"), "demo", "--output-dir", "demo"], tmp_path, env)
    shipped = (
        r"^Running (?:\S*/)?venv/lib/\S+/site-packages/carbon_jupyter/examples/quickstart.ipynb "
    )
    assert re.search(shipped, demo, re.MULTILINE), demo
    assert re.search(r"^predict\s+inference\s", demo, re.MULTILINE), demo
    assert (tmp_path / "demo" / "report.html").is_file()
    assert "open it live: jupyter lab demo/quickstart.ipynb" in demo  # a copy to edit
    assert (tmp_path / "demo" / "quickstart.ipynb").is_file()


#: What a fresh checkout holds that the build can use: no virtual environment, no Node
#: packages, nothing built (the sidebar in carbon_jupyter/labextension least of all).
NOT_IN_A_CHECKOUT = {
    ".git", ".venv", "node_modules", "__pycache__", ".mypy_cache", ".ruff_cache",
    ".pytest_cache", ".hypothesis", "test-artifacts", "dist", "build",
}  # fmt: skip


def _fresh_checkout(target: Path) -> Path:
    def ignore(folder: str, names: list[str]) -> set[str]:
        left_out = {n for n in names if n in NOT_IN_A_CHECKOUT}
        if Path(folder) == REPO / "carbon_jupyter":
            left_out.add("labextension")
        if Path(folder) == LABEXTENSION:
            left_out.update({"lib", "tsconfig.tsbuildinfo"})
        return left_out

    return Path(shutil.copytree(REPO, target, ignore=ignore))


@pytest.mark.timeout(120)
def test_a_checkout_without_npm_builds_the_package_without_the_sidebar(tmp_path: Path) -> None:
    pytest.importorskip("hatch_jupyter_builder")
    hatch_build = pytest.importorskip("hatch_build")  # the checkout's build hook
    checkout = _fresh_checkout(tmp_path / "checkout")
    assert not (checkout / "carbon_jupyter" / "labextension").exists()
    no_node = tmp_path / "bin"
    no_node.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HATCH_JUPYTER_BUILDER")}
    env.update(PATH=str(no_node), PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INDEX="1")
    assert shutil.which("npm", path=env["PATH"]) is None

    dist = tmp_path / "dist"
    output = _run(
        [sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-v",
         "-w", str(dist)],
        cwd=checkout, env=env, timeout_s=100,
    )  # fmt: skip
    assert "Traceback" not in output and "Could not find cmd" not in output, output
    said = [line.strip() for line in output.splitlines() if "npm" in line]
    assert said == [hatch_build.NO_NPM], output
    assert "no JupyterLab sidebar" in said[0] and "install Node.js" in said[0]

    (wheel,) = dist.glob("carbon_jupyter-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "carbon_jupyter/cli/demo.py" in names
    assert "carbon_jupyter/examples/quickstart.ipynb" in names
    assert not [n for n in names if "labextension" in n], "sidebar files without a sidebar"
    shared = "carbon_jupyter-{}.data/data/".format(wheel.name.split("-")[1])
    assert shared + "etc/jupyter/jupyter_server_config.d/carbon_jupyter.json" in names
