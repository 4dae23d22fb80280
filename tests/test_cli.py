"""The carbon-jupyter command line, run as a user runs it: a real subprocess, a real SQLite file."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from carbon_jupyter.cli.main import build_parser

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "carbon_jupyter", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def test_doctor_explains_this_machine() -> None:
    result = cli("doctor", "--seconds", "0.1", "--country", "FR")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Sensors in use:" in out and "Findings:" in out
    assert re.search(r"^  cpu\S*\s", out, re.M)  # a CPU source, measured or modelled
    assert "nvml:" in out  # says what it found, or why there is no GPU
    assert "for FRA" in out and "chosen by argument" in out
    assert "Store:" in out


def test_measure_stores_a_run_that_runs_and_export_show(tmp_path: Path) -> None:
    env = {"CARBON_JUPYTER_DB": str(tmp_path / "c.db")}
    measured = cli("measure", "smoke", "--seconds", "0.3", "--intensity", "200", env=env)
    assert measured.returncode == 0, measured.stderr
    assert "carbon: smoke  ok" in measured.stdout
    listed = cli("runs", "--label", "smoke", env=env)
    assert "smoke" in listed.stdout and "ok" in listed.stdout
    exported = cli("export", str(tmp_path / "runs.json"), env=env)
    assert exported.returncode == 0
    (run,) = json.loads((tmp_path / "runs.json").read_text())["runs"]
    assert run["label"] == "smoke" and run["intensity_g_per_kwh"] == 200
    shown = cli("show", run["id"][:8], env=env)
    assert "carbon: smoke" in shown.stdout
    totals = cli("totals", "--by", "label", env=env)
    assert re.search(r"^smoke\s+1\s", totals.stdout, re.M)


def test_codecarbon_history_comes_over_once(tmp_path: Path) -> None:
    src = {"CARBON_JUPYTER_DB": str(tmp_path / "a.db")}
    dst = {"CARBON_JUPYTER_DB": str(tmp_path / "b.db")}
    assert cli("measure", "old-run", "--seconds", "0.2", env=src).returncode == 0
    target = tmp_path / "emissions.csv"
    assert cli("export", str(target), env=src).returncode == 0
    first = cli("import", str(target), env=dst)
    second = cli("import", str(target), env=dst)
    assert "imported 1 new runs" in first.stdout
    assert "imported 0 new runs" in second.stdout
    assert "old-run" in cli("runs", env=dst).stdout


def test_bad_input_is_a_clear_error_not_a_traceback() -> None:
    result = cli("intensity", "--country", "Germny")
    assert result.returncode == 2
    assert "did you mean" in result.stderr and "Germany" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "command",
    sorted(build_parser()._subparsers._group_actions[0].choices),  # type: ignore[union-attr]
)
def test_every_command_is_documented_in_the_readme(command: str) -> None:
    assert f"carbon-jupyter {command}" in (ROOT / "README.md").read_text()
