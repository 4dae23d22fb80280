"""Every edge answered: bad input gets one line naming the fix, and nothing stored is lost.

What a user sees, at each front door: the command line as a real subprocess
(``cli``), the Python readers over real SQLite files, and the sidebar's routes
through a real Jupyter server with its token (the pytest-jupyter fixtures are
imported into this module only, as in ``test_serverext``). A CLI error is one
line on stderr with exit code 2, never a traceback; a route answers a 4xx
naming the field, never a 500.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pytest_jupyter.jupyter_server import *  # noqa: F403  (fixtures for this module only)
from tornado.httpclient import HTTPClientError
from traitlets.config import Config

import carbon_jupyter as cj
from carbon_jupyter import store as store_module
from carbon_jupyter.errors import ConfigError, StoreError
from carbon_jupyter.sensors import nvml
from carbon_jupyter.store import Store, open_store, pending
from carbon_jupyter.store.query import since_iso
from tests.fake_nvml import NVML_ERROR_LIBRARY_NOT_FOUND, FakeGpu, FakeNvml
from tests.test_cli import cli
from tests.test_store_support import make_run, make_samples

API = "carbon-jupyter/api"
HUGE_SPANS = ("99999999d", "100000000h", "9999999999999w", "9" * 400 + "d")


def one_line_error(result: Any) -> str:
    """The single stderr line of a refused CLI call (exit code 2, no traceback)."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert ".." not in lines[0].replace("...", "")
    return lines[0]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A store file with two finished runs (one with samples)."""
    path = tmp_path / "carbon.db"
    with open_store(path) as s:
        s.finish_run(make_run(label="old", started_at="2024-05-01T10:00:00.000+00:00"))
        live = make_run(status="running", label="new")
        s.begin_run(live)
        s.add_samples(live.id, make_samples(1, 3))
        s.finish_run(make_run(live.id, label="new"))
    return path


# -- 1. a lookback too long for the calendar means every run -----------------------------
@pytest.mark.parametrize("since", HUGE_SPANS)
def test_a_lookback_beyond_the_calendar_means_every_run(db: Path, since: str) -> None:
    with open_store(db) as s:
        assert len(s.runs(since=since)) == 2
        assert sum(row["count"] for row in s.totals(since=since)) == 2


def test_a_lookback_beyond_the_calendar_from_the_python_api(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CARBON_JUPYTER_DB", str(db))
    assert len(cj.runs(since="99999999d")) == 2
    assert len(cj.runs(since=timedelta.max)) == 2
    assert len(cj.runs(since=datetime.min)) == 2
    assert cj.runs(since=datetime.max) == []
    assert len(cj.runs(since="0001-01-01")) == 2
    assert cj.runs(since="9999-12-31T23:59:59") == []
    assert sum(row["count"] for row in cj.totals(since="100000000h")) == 2


def test_since_that_is_not_a_time_is_still_one_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"since='yesterday-ish' is neither"):
        since_iso("yesterday-ish")


@pytest.mark.parametrize("command", ["runs", "totals", "export"])
def test_the_cli_takes_any_since(db: Path, tmp_path: Path, command: str) -> None:
    extra = [str(tmp_path / "out.json")] if command == "export" else []
    result = cli(command, *extra, "--since", "99999999d", "--db", str(db))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    if command == "runs":
        assert "old" in result.stdout and "new" in result.stdout


# -- 2. --seconds that is not a duration ------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [
        ("measure", "--seconds", "-1"),
        ("measure", "--seconds", "nan"),
        ("measure", "--seconds", "inf"),
        ("measure", "--seconds", "0"),
        ("measure", "--seconds", "soon"),
        ("measure", "--seconds", "1e300"),
        ("doctor", "--seconds", "-1"),
        ("doctor", "--seconds", "0"),
        ("doctor", "--seconds", "nan"),
    ],
)
def test_seconds_that_are_not_a_duration_are_refused_before_anything_is_stored(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    target = tmp_path / "store" / "carbon.db"
    result = cli(*args, env={"CARBON_JUPYTER_DB": str(target)})
    line = one_line_error(result)
    assert "--seconds" in line and "such as 5" in line
    assert not target.parent.exists()


def test_an_interval_that_is_not_a_duration_is_refused_before_anything_is_stored(
    tmp_path: Path,
) -> None:
    target = tmp_path / "store" / "carbon.db"
    result = cli("measure", "--interval", "nan", "--db", str(target))
    assert "interval" in one_line_error(result)
    assert not target.parent.exists()


# -- 4. reading never creates ---------------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [("runs",), ("show", "3f2a"), ("totals",), ("export", "OUT"), ("store", "check")],
)
def test_reading_a_store_that_does_not_exist_creates_nothing(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    target = tmp_path / "no" / "such" / "dir" / "x.db"
    argv = [str(tmp_path / "out.csv") if a == "OUT" else a for a in args]
    line = one_line_error(cli(*argv, "--db", str(target)))
    assert str(target) in line
    assert "no run store" in line and "any tracked run creates it" in line
    assert not (tmp_path / "no").exists()
    assert not (tmp_path / "out.csv").exists()


def test_the_python_readers_do_not_create_a_store(tmp_path: Path) -> None:
    target = Path(os.environ["CARBON_JUPYTER_DB"])
    assert not target.exists()
    for read in (
        cj.runs,
        cj.totals,
        lambda: cj.samples("3f2a"),
        store_module.runs,
        store_module.totals,
        lambda: store_module.get_run("3f2a"),
        lambda: store_module.samples("3f2a"),
    ):
        with pytest.raises(StoreError, match="any tracked run creates it") as caught:
            read()
        assert str(target) in str(caught.value)
    assert list(target.parent.iterdir()) == []  # no store, no -wal, nothing
    with pytest.raises(StoreError, match="no run store"):
        open_store(tmp_path / "missing.db", create=False)
    assert not (tmp_path / "missing.db").exists()


def test_a_tracked_run_still_creates_the_store_that_readers_then_find() -> None:
    target = Path(os.environ["CARBON_JUPYTER_DB"])
    with cj.track("first", sensors=(), intensity=100) as handle:
        pass
    assert handle.run is not None
    assert target.exists()
    assert [r.id for r in cj.runs()] == [handle.run.id]


# -- 6. small ones ------------------------------------------------------------------------
@pytest.mark.parametrize("last", ["0", "-1", "1000000001", "many"])
def test_runs_last_outside_its_range_is_refused_naming_the_range(db: Path, last: str) -> None:
    line = one_line_error(cli("runs", "--last", last, "--db", str(db)))
    assert "--last" in line and "1 to 1000000000" in line


def test_runs_that_match_nothing_are_not_called_an_empty_store(db: Path) -> None:
    result = cli("runs", "--label", "nothing-like-this", "--db", str(db))
    assert result.returncode == 0, result.stderr
    assert "no runs stored yet" not in result.stdout
    assert "no stored run matches" in result.stdout and "2 runs stored" in result.stdout
    totals = cli("totals", "--since", "9999-12-31", "--db", str(db))
    assert totals.returncode == 0, totals.stderr
    assert "no stored run matches" in totals.stdout


def test_an_empty_store_says_so(tmp_path: Path) -> None:
    open_store(tmp_path / "empty.db").close()
    result = cli("runs", "--db", str(tmp_path / "empty.db"))
    assert result.returncode == 0, result.stderr
    assert "no runs stored yet" in result.stdout


@pytest.mark.parametrize("command", ["measure", "doctor"])
def test_a_gpu_that_is_not_here_is_refused_naming_the_gpus_that_are(
    tmp_path: Path, command: str
) -> None:
    target = tmp_path / "store" / "carbon.db"
    extra = ["--seconds", "0.1"]
    result = cli(command, "--gpus", "7", *extra, env={"CARBON_JUPYTER_DB": str(target)})
    line = one_line_error(result)
    assert "--gpus" in line or "gpus=" in line
    # This machine either has no NVIDIA GPU at all, or has GPUs other than 7.
    assert "no NVIDIA GPU here" in line or "GPUs here:" in line
    assert not target.parent.exists()


def test_selecting_gpus_without_a_driver_says_there_is_no_gpu_here() -> None:
    fake = FakeNvml(init_error=NVML_ERROR_LIBRARY_NOT_FOUND)
    with pytest.raises(ConfigError) as caught:
        nvml.probe("7", nvml=fake)
    message = str(caught.value)
    assert "no NVIDIA GPU here" in message
    assert "leave --gpus out" in message
    # Every GPU (of none) is still fine, and so is the default.
    assert nvml.probe("all", nvml=fake).sensors == ()
    assert nvml.probe(nvml=fake).sensors == ()


def test_selecting_a_gpu_of_a_machine_without_any_names_none() -> None:
    with pytest.raises(ConfigError, match=r"there is no GPU 0 \(GPUs here: none"):
        nvml.probe("0", nvml=FakeNvml([]))


def test_selecting_a_missing_gpu_names_the_ones_there() -> None:
    fake = FakeNvml([FakeGpu(), FakeGpu(uuid="GPU-22222222-0000-0000-0000-000000000000")])
    with pytest.raises(ConfigError, match=r"there is no GPU 7 \(GPUs here: 0, 1"):
        nvml.probe("7", nvml=fake)


def test_a_damaged_store_is_said_in_sentences_that_end_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "carbon.db"
    with open_store(path) as s:
        s.finish_run(make_run())
    with open(path, "r+b") as f:
        f.write(b"\0" * 100)  # the header is gone
    line = one_line_error(cli("runs", "--db", str(path)))
    assert "carbon-jupyter store recover" in line

    monkeypatch.setenv("CARBON_JUPYTER_DB", str(path))
    try:
        with cj.track("x", sensors=(), intensity=100) as handle:
            pass
    finally:
        pending.forget()  # the run waits in memory for a store that is never repaired here
    assert handle.run is not None and handle.run.status == "ok"
    said = [r.getMessage() for r in caplog.records if "carbon-jupyter" in r.getMessage()]
    assert said, "the damaged store was not mentioned"
    for message in said:
        assert ".." not in message.replace("...", ""), message
        assert "carbon-jupyter store recover" in message


# -- the server extension -----------------------------------------------------------------
@pytest.fixture
def jp_server_config() -> Config:
    return Config({"ServerApp": {"jpserver_extensions": {"carbon_jupyter": True}}})


@pytest.fixture
def get(jp_fetch: Any, jp_asyncio_loop: Any) -> Callable[..., Any]:
    def fetch(path: str, **params: Any) -> Any:
        response = jp_asyncio_loop.run_until_complete(jp_fetch(API, path, params=params))
        return json.loads(response.body)

    return fetch


@pytest.fixture
def get_error(jp_fetch: Any, jp_asyncio_loop: Any) -> Callable[..., tuple[int, str]]:
    def fetch(path: str, **params: Any) -> tuple[int, str]:
        with pytest.raises(HTTPClientError) as failed:
            jp_asyncio_loop.run_until_complete(jp_fetch(API, path, params=params))
        response = failed.value.response
        assert response is not None
        return failed.value.code, json.loads(response.body)["message"]

    return fetch


@pytest.fixture
def server_store() -> Iterator[Store]:
    s = open_store()  # $CARBON_JUPYTER_DB, the file the server reads
    yield s
    s.close()


@pytest.mark.parametrize("since", HUGE_SPANS)
def test_the_sidebar_takes_any_since(get: Any, server_store: Store, since: str) -> None:
    run = make_run(kernel="k1")
    server_store.finish_run(run)
    assert [r["id"] for r in get("runs", since=since)["runs"]] == [run.id]


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("runs", {"since": "yesterday-ish"}, "since"),
        ("runs", {"limit": "0"}, "limit"),
        ("runs", {"limit": "1e3"}, "limit"),
        ("runs", {"status": "finished"}, "status"),
        ("runs", {"phase": "training"}, "phase"),
        ("kernels/k1/live", {"since": "99999999999999999999999"}, "since"),
        ("kernels/k1/live", {"since": "-1"}, "since"),
    ],
)
def test_bad_parameters_answer_400_naming_the_field(
    get_error: Any, server_store: Store, path: str, params: dict[str, Any], field: str
) -> None:
    server_store.finish_run(make_run(kernel="k1"))
    code, message = get_error(path, **params)
    assert code == 400, message
    assert field in message


def test_a_huge_limit_is_capped_not_refused(get: Any, server_store: Store) -> None:
    server_store.finish_run(make_run(kernel="k1"))
    assert len(get("runs", limit="99999999999999999999999")["runs"]) == 1


def test_before_any_run_the_sidebar_shows_no_runs_not_an_error(get: Any, get_error: Any) -> None:
    target = Path(os.environ["CARBON_JUPYTER_DB"])
    assert get("runs") == {"runs": []}
    assert get("runs", label="x", since="7d") == {"runs": []}
    live = get("kernels/k1/live")
    assert (live["run"], live["samples"], live["cursor"]) == (None, [], 0)
    totals = get("kernels/k1/totals")
    assert (totals["count"], totals["energy_j"], totals["running"]) == (0, 0.0, False)
    assert get("")["store"] == str(target)
    code, message = get_error("runs/3f2a")
    assert code == 404
    assert "No run with id '3f2a'" in message and "any tracked run creates it" in message
    code, message = get_error("runs", since="yesterday-ish")
    assert code == 400 and "since" in message
    assert not target.exists()

    # The first run creates the store; the sidebar then shows it.
    with open_store() as s:
        s.finish_run(make_run(kernel="k1"))
    assert len(get("runs")["runs"]) == 1
