"""The sidebar's server extension, through a real Jupyter server with authentication on.

Runs are written to a real SQLite file (``$CARBON_JUPYTER_DB``, set per test by
conftest) with the store's own writer, then read back through the REST routes
with the server's token (``jp_fetch``). The machine's power comes from a fake
powercap tree; the switch test starts a real kernel.

The pytest-jupyter fixtures are imported into this module rather than enabled
as a plugin, so their autouse fixtures (an event loop and a server clean-up per
test) stay out of the other test files. Tests are plain functions that drive
the server's event loop with ``run_until_complete``.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_jupyter.jupyter_server import *  # noqa: F403  (fixtures for this module only)
from tornado.httpclient import HTTPClientError, HTTPResponse
from traitlets import TraitError
from traitlets.config import Config

from carbon_jupyter import sensors
from carbon_jupyter.model import DeviceInfo
from carbon_jupyter.sensors.base import Reading
from carbon_jupyter.serverext.app import CarbonJupyterApp
from carbon_jupyter.serverext.handlers import ROUTES
from carbon_jupyter.serverext.machine import MachinePower
from carbon_jupyter.store import Store, open_store
from tests.fake_powercap import CounterWriter, build_tree
from tests.test_store_support import REPO, make_run, make_samples

KERNEL_CODE = json.loads((REPO / "labextension" / "src" / "kernel-code.json").read_text())
API = "carbon-jupyter/api"


@pytest.fixture
def jp_server_config() -> Config:
    return Config(
        {
            "ServerApp": {"jpserver_extensions": {"carbon_jupyter": True}},
            "CarbonJupyterApp": {
                "machine_interval_s": 0.2,
                "machine_idle_s": 60.0,
                "max_samples": 6,
            },
        }
    )


Get = Callable[..., Any]


@pytest.fixture
def get(jp_fetch: Any, jp_asyncio_loop: Any) -> Get:
    """GET a route of the extension with the server's token; returns the decoded JSON."""

    def fetch(path: str, **params: Any) -> Any:
        response = jp_asyncio_loop.run_until_complete(jp_fetch(API, path, params=params))
        return json.loads(response.body)

    return fetch


@pytest.fixture
def get_error(jp_fetch: Any, jp_asyncio_loop: Any) -> Callable[..., tuple[int, str]]:
    """GET a route expected to fail; returns the status code and the JSON message."""

    def fetch(path: str, **params: Any) -> tuple[int, str]:
        with pytest.raises(HTTPClientError) as failed:
            jp_asyncio_loop.run_until_complete(jp_fetch(API, path, params=params))
        response = failed.value.response
        assert response is not None
        return failed.value.code, json.loads(response.body)["message"]

    return fetch


@pytest.fixture
def store() -> Iterator[Store]:
    s = open_store()  # $CARBON_JUPYTER_DB, the file the server reads
    yield s
    s.close()


def _registered_patterns(router: Any) -> Iterator[str]:
    for rule in getattr(router, "rules", []):
        regex = getattr(rule.matcher, "regex", None)
        if regex is not None:
            yield regex.pattern
        yield from _registered_patterns(rule.target)


def _example_path(pattern: str) -> str:
    return pattern.replace("([^/]+)", "x").replace("/?", "")


# -- authentication -------------------------------------------------------------------
def test_every_route_refuses_requests_without_a_valid_token(
    jp_serverapp: Any, http_server_client: Any, jp_base_url: str, jp_asyncio_loop: Any
) -> None:
    router = jp_serverapp.web_app.default_router
    registered = sorted(
        p[p.index("/carbon-jupyter") :].removesuffix("$")
        for p in _registered_patterns(router)
        if "carbon-jupyter" in p
    )
    assert registered == sorted(p for p, _ in ROUTES)  # nothing registered outside ROUTES

    token = jp_serverapp.identity_provider.token
    for pattern, _ in ROUTES:
        url = jp_base_url.rstrip("/") + _example_path(pattern)
        for headers in ({}, {"Authorization": "token not-the-token"}):
            response: HTTPResponse = jp_asyncio_loop.run_until_complete(
                http_server_client.fetch(url, headers=headers, raise_error=False)
            )
            assert response.code == 403, f"{url} with {headers} answered {response.code}"
        allowed = jp_asyncio_loop.run_until_complete(
            http_server_client.fetch(
                url, headers={"Authorization": f"token {token}"}, raise_error=False
            )
        )
        assert allowed.code in (200, 404), f"{url} with the token answered {allowed.code}"
        if allowed.code == 404:  # only an unknown run id, never an unknown route
            assert "No run with id 'x'" in json.loads(allowed.body)["message"]


# -- runs -----------------------------------------------------------------------------
def _finished(store: Store, **fields: Any) -> str:
    run = make_run(**fields)
    store.finish_run(run)
    return run.id


def test_runs_are_listed_newest_first_with_the_filters_the_store_knows(
    get: Get, get_error: Any, store: Store
) -> None:
    old = _finished(store, kernel="k1", label="bert-base", started_at="2024-05-01T10:00:00+00:00")
    new = _finished(
        store, kernel="k1", label="bert-large", status="error", error="ValueError: bad",
        started_at="2024-05-01T11:00:00+00:00",
    )  # fmt: skip
    other = _finished(store, kernel="k2", label="gpt", started_at="2024-05-01T12:00:00+00:00")

    assert [r["id"] for r in get("runs")["runs"]] == [other, new, old]
    assert [r["id"] for r in get("runs", kernel="k1")["runs"]] == [new, old]
    assert [r["id"] for r in get("runs", status="ok,lost")["runs"]] == [other, old]
    assert [r["id"] for r in get("runs", label="bert-*", limit=1)["runs"]] == [new]
    assert [r["id"] for r in get("runs", tag="dataset=imdb", kernel="k2")["runs"]] == [other]

    first = get("runs", kernel="k1")["runs"][0]
    assert first["status"] == "error"
    assert first["error"] == "ValueError: bad"
    assert first["energy_j"] == pytest.approx(3000.0 + 800.0 + 100.0)
    assert first["intensity"]["intensity_g_per_kwh"] == 380.0
    assert first["intensity"]["key"] == "DEU"
    assert [d["method"] for d in first["devices"]] == ["nvml-energy", "rapl", "ram-model"]
    assert [d["quality"] for d in first["devices"]] == ["measured", "measured", "estimated"]
    assert first["estimated"] is True

    # the parts of a distributed job are listed as one run with its hosts
    for host in ("node-a", "node-b"):
        for part, rank in (("rank", "0" if host == "node-a" else "1"), ("host", None)):
            tags = {"job": "ddp-7", "part": part}
            if rank is not None:
                tags["rank"] = rank
            _finished(
                store, kernel="k3", host=host, tags=tags, gpu_j=3000.0 if rank else 0.0,
                started_at="2024-05-01T13:00:00+00:00",
            )  # fmt: skip
    listed = get("runs", kernel="k3")["runs"]
    assert len(listed) == 1
    (job,) = listed
    assert job["id"] == "ddp-7" and job["tags"]["hosts"] == "2" and job["tags"]["parts"] == "4"
    assert job["host"] == "node-a, node-b"
    # each host's CPU and RAM once (from its host part), each rank's GPU once
    assert job["cpu_energy_j"] == pytest.approx(2 * 800.0)
    assert job["ram_energy_j"] == pytest.approx(2 * 100.0)
    assert job["gpu_energy_j"] == pytest.approx(2 * 3000.0)
    assert {d["device_id"].split("/")[0] for d in job["devices"]} == {"node-a", "node-b"}
    assert get("runs/ddp-7")["run"]["energy_j"] == pytest.approx(job["energy_j"])

    code, message = get_error("runs", limit="many")
    assert code == 400
    assert "limit='many' is not a whole number" in message
    code, message = get_error("runs", since="last tuesday")
    assert code == 400
    assert "'24h'" in message


def test_one_run_is_found_by_id_prefix_with_its_samples(
    get: Get, get_error: Any, store: Store
) -> None:
    lost = "gpu:1 (Tesla V100) stopped answering <b>2 s</b> into the run"
    run = make_run(status="running", kernel="k1", warnings=(lost,))
    store.begin_run(run)
    store.add_samples(run.id, make_samples(1, 3))

    found = get(f"runs/{run.id[:8]}")
    assert found["run"]["id"] == run.id
    assert found["run"]["warnings"] == [lost]  # the sidebar marks the row with them
    assert found["run"]["status"] == "running"
    assert len(found["samples"]) == 6
    assert found["samples"][0] == {
        "t_s": 1.0, "device_id": "gpu:0", "power_w": 300.0, "energy_j": 300.0,
        "utilization_pct": 95.0, "memory_used_b": 40 * 2**30, "process_energy_j": 150.0,
    }  # fmt: skip
    assert "samples" not in get(f"runs/{run.id}", samples="0")

    code, message = get_error("runs/ffffffff")
    assert code == 404
    assert "No run with id 'ffffffff'" in message


# -- a kernel's live run and session ------------------------------------------------------
def test_live_samples_follow_the_kernels_current_run_by_cursor(get: Get, store: Store) -> None:
    assert get("kernels/k1/live") == {
        "kernel": "k1", "run": None, "live": False, "reset": True, "samples": [], "cursor": 0,
    }  # fmt: skip

    first = make_run(status="running", kernel="k1", started_at="2024-05-01T10:00:00+00:00")
    store.begin_run(first)
    store.add_samples(first.id, make_samples(1, 2))
    live = get("kernels/k1/live")
    assert (live["run"]["id"], live["live"], live["reset"]) == (first.id, True, True)
    assert [s["t_s"] for s in live["samples"]] == [1.0, 1.0, 2.0, 2.0]
    assert live["cursor"] == 4

    store.add_samples(first.id, make_samples(3, 1))
    more = get("kernels/k1/live", run=first.id, since=live["cursor"])
    assert (more["reset"], more["cursor"]) == (False, 6)
    assert [(s["t_s"], s["device_id"]) for s in more["samples"]] == [(3.0, "gpu:0"), (3.0, "cpu:0")]
    assert get("kernels/k1/live", run=first.id, since=6)["samples"] == []

    # More than max_samples (6) behind: start over with the latest ones.
    store.add_samples(first.id, make_samples(4, 4))
    behind = get("kernels/k1/live", run=first.id, since=6)
    assert (behind["reset"], behind["cursor"], len(behind["samples"])) == (True, 14, 6)
    assert behind["samples"][-1]["t_s"] == 7.0

    # The cell finished: it stays the current run, no longer live.
    store.finish_run(make_run(first.id, kernel="k1", started_at="2024-05-01T10:00:00+00:00"))
    done = get("kernels/k1/live", run=first.id, since=14)
    assert (done["run"]["status"], done["live"], done["reset"]) == ("ok", False, False)

    # The next cell starts: a new current run, and the client starts over.
    second = make_run(status="running", kernel="k1", started_at="2024-05-01T11:00:00+00:00")
    store.begin_run(second)
    store.add_samples(second.id, make_samples(1, 1))
    switched = get("kernels/k1/live", run=first.id, since=14)
    assert (switched["run"]["id"], switched["reset"], switched["cursor"]) == (second.id, True, 2)


def test_session_totals_add_up_the_kernels_runs_only(get: Get, store: Store) -> None:
    nothing = get("kernels/k1/totals")
    assert (nothing["count"], nothing["energy_j"], nothing["running"]) == (0, 0.0, False)
    assert nothing["intensity_from"] == "server settings"
    assert nothing["intensity"]["key"] == "World"

    a = make_run(kernel="k1", gpu_j=1000.0, cpu_j=200.0, ram_j=0.0)
    b = make_run(kernel="k1", gpu_j=500.0, cpu_j=100.0, ram_j=0.0)
    store.finish_run(a)
    store.finish_run(b)
    store.finish_run(make_run(kernel="k2", gpu_j=9999.0))
    live = make_run(status="running", kernel="k1", started_at="2024-05-02T00:00:00+00:00")
    store.begin_run(live)
    store.add_samples(live.id, make_samples(1, 2))  # 600 J GPU + 160 J CPU flushed so far

    totals = get("kernels/k1/totals")
    assert totals["count"] == 3
    assert totals["running"] is True
    assert totals["energy_j"] == pytest.approx(1200.0 + 600.0 + 760.0)
    assert totals["co2_g"] == pytest.approx(a.co2_g + b.co2_g + 760.0 / 3.6e6 * 1.2 * 380.0)
    assert totals["intensity_from"] == "latest run"
    assert totals["intensity"]["intensity_g_per_kwh"] == 380.0
    assert totals["notebook"] == "/home/ada/project/train.ipynb"


def test_an_unusable_store_answers_503_naming_the_fix(
    get_error: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CARBON_JUPYTER_DB", str(tmp_path))  # a folder, not a file
    code, message = get_error("runs")
    assert code == 503
    assert "is a folder" in message
    assert "CARBON_JUPYTER_DB" in message


# -- the machine's power ------------------------------------------------------------------
@pytest.fixture
def powercap_50w(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    tree = build_tree(tmp_path / "powercap")
    monkeypatch.setenv("CARBON_JUPYTER_POWERCAP_ROOT", str(tree.root))
    with CounterWriter(tree.root / "intel-rapl:0" / "energy_uj", power_w=50.0):
        yield
    sensors.reset()


@pytest.mark.usefixtures("powercap_50w")
def test_machine_power_is_read_from_the_machines_sensors(get: Get) -> None:
    deadline = time.monotonic() + 10
    machine = get("machine")
    assert machine["running"] is True
    while machine["power_w"] is None and time.monotonic() < deadline:
        time.sleep(0.05)
        machine = get("machine")
    package = next(d for d in machine["devices"] if d["method"] == "rapl")
    assert (package["device_id"], package["kind"]) == ("cpu:0", "cpu")
    assert package["quality"] == "measured"
    assert package["power_w"] == pytest.approx(50.0, rel=0.25)
    assert machine["power_w"] >= package["power_w"]


class _Fixed:
    """A sensor at the hardware boundary: always ``power_w``."""

    def __init__(self, power_w: float) -> None:
        self.info = DeviceInfo("gpu:0", "gpu", "Test GPU", "nvml-power")
        self.power_w = power_w

    def read(self) -> Reading:
        return Reading(power_w=self.power_w)

    def close(self) -> None:
        pass


def _sampler_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "carbon-sampler" and t.is_alive()]


def test_machine_sampling_runs_only_while_someone_polls() -> None:
    now = [100.0]
    machine = MachinePower(
        interval_s=0.05, idle_s=10.0, sensors=lambda: [_Fixed(42.0)], clock=lambda: now[0]
    )
    try:
        assert not machine.running
        assert machine.poll().running
        assert len(_sampler_threads()) == 1
        deadline = time.monotonic() + 10
        while machine.poll().power_w is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert machine.poll().power_w == 42.0

        now[0] += 9.0
        assert machine.stop_if_idle() is False  # polled 9 s ago: keep going
        machine.poll()
        now[0] += 10.5
        assert machine.stop_if_idle() is True
        assert not machine.running
        assert _sampler_threads() == []
        assert machine.stop_if_idle() is False

        assert machine.poll().running  # the next client starts it again
        assert len(_sampler_threads()) == 1
    finally:
        machine.close()
    assert _sampler_threads() == []


def test_settings_out_of_range_are_refused_with_the_range() -> None:
    with pytest.raises(TraitError, match=r"0\.05 to 60"):
        CarbonJupyterApp(machine_interval_s=0.0)
    with pytest.raises(TraitError, match="max_runs must be positive"):
        CarbonJupyterApp(max_runs=0)


# -- the "Track every cell" switch, in a real kernel ----------------------------------------
def _execute(loop: Any, client: Any, code: str, *, silent: bool) -> dict[str, Any]:
    reply = loop.run_until_complete(
        client.execute_interactive(
            code,
            silent=silent,
            store_history=not silent,
            user_expressions=KERNEL_CODE["state"] if silent else None,
            stop_on_error=False,
            timeout=120,
            output_hook=lambda msg: None,
        )
    )
    content: dict[str, Any] = reply["content"]
    assert content["status"] == "ok", content
    return content


def _state(content: dict[str, Any]) -> dict[str, bool]:
    found = content["user_expressions"]
    return {k: v["status"] == "ok" and v["data"]["text/plain"] == "True" for k, v in found.items()}


@pytest.fixture
def python_kernelspec(jp_kernel_dir: Path) -> str:
    """A Python kernel spec on disk under its own name.

    Asking for the native ``python3`` spec imports ipykernel into the test process, which
    other test files read as "running inside a kernel".
    """
    spec = jp_kernel_dir / "carbon-test-python"
    spec.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec.joinpath("kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "Python 3", "language": "python"})
    )
    return spec.name


@pytest.mark.slow
def test_the_switch_tracks_later_cells_of_that_kernel_and_is_not_tracked_itself(
    jp_serverapp: Any, jp_asyncio_loop: Any, get: Get, python_kernelspec: str
) -> None:
    loop = jp_asyncio_loop
    kernels = jp_serverapp.kernel_manager
    kernel_id = loop.run_until_complete(kernels.start_kernel(kernel_name=python_kernelspec))
    client = kernels.get_kernel(kernel_id).client()
    client.start_channels()
    try:
        loop.run_until_complete(client.wait_for_ready(timeout=60))
        assert _state(_execute(loop, client, "", silent=True)) == {"available": True, "auto": False}

        switched_on = _execute(loop, client, KERNEL_CODE["on"], silent=True)
        assert _state(switched_on) == {"available": True, "auto": True}
        assert get("runs", kernel=kernel_id)["runs"] == []  # the switch is not a tracked cell

        cell = _execute(loop, client, "total = sum(range(100_000))", silent=False)
        assert cell["execution_count"] == 1  # the silent runs took no execution count
        runs = get("runs", kernel=kernel_id)["runs"]
        assert len(runs) == 1
        assert runs[0]["kernel"] == kernel_id  # the tracker's kernel id is the server's
        assert runs[0]["status"] == "ok"
        assert get(f"kernels/{kernel_id}/totals")["count"] == 1

        switched_off = _execute(loop, client, KERNEL_CODE["off"], silent=True)
        assert _state(switched_off) == {"available": True, "auto": False}
        _execute(loop, client, "total += 1", silent=False)
        assert len(get("runs", kernel=kernel_id)["runs"]) == 1
    finally:
        client.stop_channels()
        loop.run_until_complete(kernels.shutdown_kernel(kernel_id, now=True))
