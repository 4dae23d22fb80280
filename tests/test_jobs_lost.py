"""Lost parts of a job on the team server: told by the surviving ranks, or found silent.

Real processes against a real ``carbon-jupyter serve``: two ranks of one host
forward to the server and the rank holding the host part is killed with SIGKILL;
the other rank takes the host part over and tells the server the dead one's parts
are lost. A rank killed while the other holds the host part is told by the holder
when it ends. A host that dies whole tells nobody: a server started with a short
``--lost-after`` shows its silent parts lost, and running again when they speak.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from carbon_jupyter.forward import wire
from carbon_jupyter.jobs.lost import report_lost_parts
from carbon_jupyter.model import Sample
from carbon_jupyter.server.config import DEFAULT_LOST_AFTER_S
from carbon_jupyter.server.jobs import Heard, silences
from carbon_jupyter.settings import DEFAULT_FORWARD_INTERVAL_S
from carbon_jupyter.store import open_store
from tests.server_fixtures import make_run, server_env, start_server
from tests.test_jobs import _started, cluster, launch  # noqa: F401 (a fixture)

JOB = "ddp-42"


def _wait_for(url: str, done: Callable[[dict[str, Any]], bool], timeout_s: float) -> dict[str, Any]:
    """The job at ``url`` once ``done`` says so; fails with its parts after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        answer = httpx.get(url)
        job: dict[str, Any] = answer.json() if answer.status_code == 200 else {}
        if job and done(job):
            return job
        assert time.monotonic() < deadline, [
            (p["kind"], p["rank"], p["status"]) for p in job.get("parts", [])
        ]
        time.sleep(0.2)


def _nothing_running(job: dict[str, Any]) -> bool:
    return all(p["status"] != "running" for p in job["parts"])


def _status_of(job: dict[str, Any], run_id: str) -> str | None:
    return next((str(p["status"]) for p in job["parts"] if p["run_id"] == run_id), None)


def test_the_surviving_rank_tells_the_server_that_the_killed_holder_was_lost(
    tmp_path: Path,
    cluster: Any,  # noqa: F811
) -> None:
    _, script = cluster
    with start_server(tmp_path) as server:
        forward = {"CARBON_JUPYTER_SERVER": server.url, "CARBON_JUPYTER_FORWARD_INTERVAL": "1"}
        first = launch(tmp_path, script, "host-a", 0, 0, "torchrun", 30.0, forward)
        _started(first)
        time.sleep(0.5)
        second = launch(tmp_path, script, "host-a", 1, 1, "torchrun", 8.0, forward)
        _started(second)
        time.sleep(1.0)
        (holder,) = open_store().iter_runs(tag={"job": JOB, "part": "host"})
        assert holder.tags["holder_pid"] == str(first.pid)
        url = f"{server.url}/api/v1/jobs/{JOB}"
        _wait_for(url, lambda j: _status_of(j, holder.id) == "running", 10)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        # taking the host part over, the second rank tells the server at once
        during = _wait_for(url, lambda j: _status_of(j, holder.id) == "lost", 6)
        assert second.poll() is None, "the takeover did not report the lost holder"
        assert during["status"] != "ok"
        assert second.wait(timeout=60) == 0
        # and when it ends: nothing of the job looks alive on the server any more
        job = _wait_for(url, _nothing_running, timeout_s=15)
        # a rank killed while another holds the host part: the holder tells when it ends
        holder_rank = launch(tmp_path, script, "host-a", 0, 0, "srun", 3.0, forward)
        _started(holder_rank)
        killed = launch(tmp_path, script, "host-a", 1, 1, "srun", 30.0, forward)
        _started(killed)
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=10)
        assert holder_rank.wait(timeout=60) == 0
        other = _wait_for(f"{server.url}/api/v1/jobs/slurm-777.0", _nothing_running, timeout_s=15)
    assert other["status"] == "lost"
    assert {p["rank"]: p["status"] for p in other["parts"] if p["kind"] == "rank"} == {
        0: "ok",
        1: "lost",
    }
    assert job["status"] == "lost"
    parts = {p["run_id"]: p for p in job["parts"]}
    assert {(p["kind"], p["rank"]): p["status"] for p in job["parts"] if p["kind"] == "rank"} == {
        ("rank", 0): "lost",
        ("rank", 1): "ok",
    }
    assert sorted(p["status"] for p in job["parts"] if p["kind"] == "host") == ["lost", "ok"]
    # the lost holder's energy is kept, as the host's own store closed it
    local = open_store().get_run(holder.id)
    assert local.status == "lost"
    lost_part = parts[holder.id]
    assert lost_part["error"] and "ended before the run finished" in lost_part["error"]
    assert lost_part["cpu_energy_j"] > 0
    assert lost_part["cpu_energy_j"] == pytest.approx(local.cpu_energy_j)
    assert lost_part["ram_energy_j"] == pytest.approx(local.ram_energy_j)


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds")


def _post_sample(url: str, run_id: str, seq: int, t_s: float, energy_j: float) -> None:
    body = wire.samples_body(seq, [Sample(t_s=t_s, device_id="cpu:0", power_w=50.0,
                                          energy_j=energy_j)])  # fmt: skip
    answer = httpx.post(f"{url}/api/v1/runs/{run_id}/samples", json=body)
    assert answer.status_code == 200, answer.text


def test_a_part_nobody_hears_from_is_shown_lost_after_the_threshold(tmp_path: Path) -> None:
    started = datetime.now(timezone.utc)
    with start_server(tmp_path, args=["--lost-after", "2"]) as server:
        parts = [
            make_run("silent-host", status="running", host="node-b", started_at=_iso(started),
                     tags={"job": "j-silent", "part": "host"}),
            make_run("silent-rank", status="running", host="node-b", started_at=_iso(started),
                     tags={"job": "j-silent", "part": "rank", "rank": "0"}),
        ]  # fmt: skip
        for run in parts:
            answer = httpx.put(f"{server.url}/api/v1/runs/{run.id}", json=wire.run_body(run))
            assert answer.status_code in (200, 201), answer.text
        _post_sample(server.url, "silent-host", 1, 0.5, 25.0)
        url = f"{server.url}/api/v1/jobs/j-silent"
        before = httpx.get(url).json()
        listed_before = httpx.get(f"{server.url}/api/v1/jobs").json()["jobs"]
        time.sleep(2.6)
        after = httpx.get(url).json()
        listed_after = httpx.get(f"{server.url}/api/v1/jobs").json()["jobs"]
        page = httpx.get(f"{server.url}/jobs/j-silent")
        log = server.output()
        # a part heard from again is running again
        _post_sample(server.url, "silent-host", 2, (datetime.now(timezone.utc) - started)
                     .total_seconds(), 200.0)  # fmt: skip
        again = httpx.get(url).json()
    assert before["status"] == "running"
    assert [p["status"] for p in before["parts"]] == ["running", "running"]
    assert [(j["job"], j["running"], j["lost"]) for j in listed_before] == [("j-silent", 2, 0)]
    assert after["status"] == "lost"
    assert [p["status"] for p in after["parts"]] == ["lost", "lost"]
    for part in after["parts"]:
        assert part["error"].startswith("no word from host node-b for ")
        assert part["ended_at"] is not None
    # the silent host part keeps the energy of its newest sample
    (host_part,) = (p for p in after["parts"] if p["kind"] == "host")
    assert host_part["cpu_energy_j"] == pytest.approx(25.0)
    assert after["ended_at"] is not None
    assert [(j["job"], j["running"], j["lost"]) for j in listed_after] == [("j-silent", 0, 2)]
    assert page.status_code == 200 and "no word from host node-b" in page.text
    assert "parts lost after 2 s without word" in log
    assert 'http-equiv="refresh"' not in page.text
    # the sample speaks for the host part and, through its host, for the rank part without samples
    assert again["status"] == "running"
    assert [p["status"] for p in again["parts"]] == ["running", "running"]


def test_a_part_without_samples_is_heard_through_its_host() -> None:
    now = datetime(2024, 5, 1, 12, 10, tzinfo=timezone.utc)
    start = "2024-05-01T12:00:00.000+00:00"
    put_at = "2024-05-01T12:00:01.000+00:00"
    heard = [
        Heard("gpu-rank", "j", "node-a", start, put_at, 595.0),  # samples until 12:09:55
        Heard("cpu-rank", "j", "node-a", start, put_at, None),  # no device, no samples
        Heard("dead-rank", "j", "node-b", start, put_at, 30.0),  # silent since 12:00:30
        Heard("young", "k", "node-c", start, "2024-05-01T12:09:59.000+00:00", None),
    ]
    silent = {run_id: found.silent_s for run_id, found in silences(heard, now).items()}
    assert silent == pytest.approx(
        {"gpu-rank": 5.0, "cpu-rank": 5.0, "dead-rank": 570.0, "young": 1.0}
    )


def test_the_default_threshold_is_well_above_the_forwarding_interval() -> None:
    assert DEFAULT_LOST_AFTER_S >= 5 * DEFAULT_FORWARD_INTERVAL_S


def test_reporting_does_nothing_without_forwarding() -> None:
    from carbon_jupyter.jobs.identity import job_identity

    identity = job_identity("j-1", environ={})
    assert identity is not None
    assert report_lost_parts(None, identity) == []
    assert report_lost_parts(open_store(), identity) == []


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (["--lost-after", "0"], {}, "--lost-after"),
        (["--lost-after", "soon"], {}, "--lost-after"),
        (["--lost-after", "nan"], {}, "--lost-after"),
        ([], {"CARBON_JUPYTER_SERVER_LOST_AFTER_S": "ten"}, "CARBON_JUPYTER_SERVER_LOST_AFTER_S"),
        ([], {"CARBON_JUPYTER_SERVER_LOST_AFTER_S": "-5"}, "CARBON_JUPYTER_SERVER_LOST_AFTER_S"),
    ],
)
def test_a_bad_lost_after_is_one_line_naming_it(
    tmp_path: Path, args: list[str], env: dict[str, str], named: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "carbon_jupyter", "serve", "--db", str(tmp_path / "s.db"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=server_env(env),
    )
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert named in lines[0] and "seconds" in lines[0]
    assert not (tmp_path / "s.db").exists()  # refused before anything was made


def test_the_threshold_reaches_the_workers_through_the_environment() -> None:
    from carbon_jupyter.server.config import ServerSettings

    settings = ServerSettings(db="x.db", lost_after_s=42.5)
    assert ServerSettings.from_env(settings.to_env()).lost_after_s == 42.5
    assert ServerSettings.from_env({"CARBON_JUPYTER_SERVER_DB": "x.db"}).lost_after_s == (
        DEFAULT_LOST_AFTER_S
    )
