"""Sweeps handed to a real team server: run by its local executor or a real Dask cluster.

Every test starts ``carbon-jupyter serve`` on 127.0.0.1 and submits real
sweeps of a small script (with ``carbon-jupyter sweep --server`` or the HTTP
API); each configuration runs in a fresh process, is measured where it runs
and reaches the server like any client's run.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from carbon_jupyter.server.sweeps.executor import check_executor, scheduler_address
from carbon_jupyter.server.sweeps.on_dask import resources_for
from carbon_jupyter.sweeps.task import ConfigTask
from tests.server_fixtures import ServerHandle, bearer, make_token, server_env, start_server

SCRIPT = """
import argparse, os, time
import carbon_jupyter as cj
p = argparse.ArgumentParser()
p.add_argument("--n", type=int)
p.add_argument("--sleep", type=float, default=0.0)
args = p.parse_args()
time.sleep(args.sleep)
total = sum(i * i for i in range(20000))
cj.log_metric("cpus", len(os.sched_getaffinity(0)))
cj.log_metric("ppid", os.getppid())
cj.log_metric("score", 1.0 / args.n)   # n=0 fails here
"""

TWO_CPUS = pytest.mark.skipif(
    len(os.sched_getaffinity(0)) < 2, reason="the thread axis 1,2 needs two CPUs"
)
FINISHED = ("done", "cancelled", "failed")


@pytest.fixture
def sweep_env(tmp_path: Path) -> dict[str, str]:
    """Where the server's executor and the CLI keep their files: all under tmp_path."""
    return {
        "CARBON_JUPYTER_DB": str(tmp_path / "local.db"),
        "CARBON_JUPYTER_EXECUTOR_DB": str(tmp_path / "executor.db"),
    }


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "train.py"
    path.write_text(SCRIPT)
    return path


def cli(
    args: list[str], cwd: Path, env: dict[str, str], timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "carbon_jupyter", *args],
        cwd=cwd,
        env=server_env(env),
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def wait_for(
    server: ServerHandle, sweep_id: str, done: Any, headers: dict[str, str] | None = None,
    timeout_s: float = 90.0,
) -> dict[str, Any]:  # fmt: skip
    deadline = time.monotonic() + timeout_s
    while True:
        detail = httpx.get(f"{server.url}/api/v1/sweeps/{sweep_id}", headers=headers).json()
        if done(detail):
            return dict(detail)
        if time.monotonic() > deadline:
            raise AssertionError(f"sweep never got there: {detail}\n{server.output()}")
        time.sleep(0.2)


def submit(
    server: ServerHandle, body: dict[str, Any], headers: dict[str, str] | None = None
) -> httpx.Response:
    return httpx.post(f"{server.url}/api/v1/sweeps", json=body, headers=headers, timeout=10)


def body_of(script: Path, **changes: Any) -> dict[str, Any]:
    return {
        "target": {"kind": "script", "name": "train.py", "content": script.read_text()},
        **changes,
    }


@TWO_CPUS
def test_the_server_runs_a_submitted_sweep_and_the_cli_prints_its_comparison(
    tmp_path: Path, script: Path, sweep_env: dict[str, str]
) -> None:
    with start_server(tmp_path, env=sweep_env) as server:
        done = cli(
            ["sweep", "train.py", "-p", "n=0,1,2", "--threads", "1,2", "--phase", "train",
             "--metric", "score", "--server", server.url],
            tmp_path, sweep_env,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr + server.output()
        sweep_id = done.stdout.split()[1]
        detail = wait_for(server, sweep_id, lambda d: d["status"] in FINISHED)
    assert detail["status"] == "done"
    assert detail["executor"] == "local"
    assert detail["total"] == 6 and detail["finished"] == 6
    assert detail["counts"] == {"ok": 4, "error": 2}
    runs = detail["runs"]
    # every configuration measured once, tagged with the sweep and its configuration
    assert Counter(r["tags"]["config"] for r in runs) == {
        f"n={n} threads={t}": 1 for n in (0, 1, 2) for t in (1, 2)
    }
    for run in runs:
        assert run["tags"]["sweep"] == sweep_id
        assert run["phase"] == "train"
        if run["tags"]["param.n"] == "0":
            assert run["status"] == "error"
            assert "exit status 1" in run["error"] and "ZeroDivisionError" in run["error"]
        else:
            assert run["status"] == "ok", run
            assert run["energy_j"] > 0 and run["duration_s"] > 0
            # the thread axis is the CPU affinity the configuration's process had
            assert run["metrics"]["cpus"] == float(run["tags"]["threads"])
            assert run["metrics"]["score"] == pytest.approx(1 / int(run["tags"]["param.n"]))
    comparison = detail["comparison"]
    assert comparison["metric"] == "score"
    assert {row["config"] for row in comparison["configurations"]} >= {
        "n=1 threads=1", "n=2 threads=2"
    }  # fmt: skip
    # the CLI printed the server's comparison: the same answer, every configuration
    assert comparison["answer"] in done.stdout
    for n in (0, 1, 2):
        assert f"n={n} threads=1" in done.stdout


def test_cancel_stops_after_the_current_configuration_and_resume_runs_what_is_missing(
    tmp_path: Path, script: Path, sweep_env: dict[str, str]
) -> None:
    with start_server(tmp_path, env=sweep_env) as server:
        answer = submit(server, body_of(script, params=["n=1,2,3,4", "sleep=1.5"]))
        assert answer.status_code == 201, answer.text
        sweep_id = answer.json()["id"]
        assert answer.json()["total"] == 4
        wait_for(server, sweep_id, lambda d: d["current"])
        cancelled = httpx.post(f"{server.url}/api/v1/sweeps/{sweep_id}/cancel")
        assert cancelled.status_code == 200
        detail = wait_for(server, sweep_id, lambda d: d["status"] in FINISHED)
        assert detail["status"] == "cancelled"
        # the configuration running when the cancel came finished and was kept
        assert 1 <= detail["finished"] < 4
        assert all(r["status"] == "ok" for r in detail["runs"])
        first = {r["id"] for r in detail["runs"]}

        # resuming from the command line runs only what is missing
        done = cli(["sweep", "--resume", sweep_id, "train.py", "--server", server.url],
                   tmp_path, sweep_env)  # fmt: skip
        assert done.returncode == 0, done.stderr
        detail = wait_for(server, sweep_id, lambda d: d["status"] in FINISHED)
    assert detail["status"] == "done"
    assert detail["finished"] == 4
    assert Counter(r["tags"]["config"] for r in detail["runs"]) == {
        f"n={n} sleep=1.5": 1 for n in (1, 2, 3, 4)
    }
    assert first <= {r["id"] for r in detail["runs"]}


def test_a_bad_sweep_gets_one_line_naming_the_field_and_nothing_is_queued(
    tmp_path: Path, script: Path, sweep_env: dict[str, str]
) -> None:
    cases = [
        (body_of(script, params=["n"]), ["body", "params", 0]),
        (body_of(script, params=["n=1", "n=2"]), ["body", "params", 1]),
        (body_of(script, threads="two"), ["body", "threads"]),
        (body_of(script, gpus="a:b"), ["body", "gpus"]),
        (body_of(script, repeat=0), ["body", "repeat"]),
        (body_of(script, executor="ftp://x"), ["body", "executor"]),
        (body_of(script, params=["a=" + ",".join(map(str, range(40))),
                                 "b=" + ",".join(map(str, range(40)))]), ["body", "params"]),
        ({"target": {"kind": "script", "name": "t.py"}}, ["body", "target", "content"]),
        ({"target": {"kind": "script", "name": "../t.py", "content": ""}},
         ["body", "target", "name"]),
        ({"target": {"kind": "notebook", "name": "a.ipynb", "content": "{"}},
         ["body", "target", "content"]),
        ({"target": {"kind": "command"}}, ["body", "target", "argv"]),
        ({"target": {"kind": "rocket"}}, ["body", "target", "kind"]),
    ]  # fmt: skip
    with start_server(tmp_path, env=sweep_env) as server:
        for body, loc in cases:
            answer = submit(server, body)
            assert answer.status_code == 422, (body, answer.text)
            detail = answer.json()["detail"]
            assert detail[0]["loc"][: len(loc)] == loc, (loc, detail)
            assert detail[0]["msg"]
        missing = httpx.get(f"{server.url}/api/v1/sweeps/0123456789ab")
        assert missing.status_code == 404
        assert httpx.get(f"{server.url}/api/v1/sweeps").json()["sweeps"] == []
        # the command line says what the server said, in one line
        done = cli(["sweep", "train.py", "-p", "n=1", "--gpus", "x", "--server", server.url],
                   tmp_path, sweep_env)  # fmt: skip
        assert done.returncode != 0
        assert "Traceback" not in done.stderr and "--gpus" in done.stderr
    down = cli(["sweep", "train.py", "-p", "n=1", "--server", server.url], tmp_path, sweep_env)
    assert down.returncode != 0 and "Traceback" not in down.stderr
    assert "did not answer" in down.stderr


def test_a_server_started_without_an_executor_refuses_sweeps(
    tmp_path: Path, script: Path, sweep_env: dict[str, str]
) -> None:
    with start_server(tmp_path, env=sweep_env, args=["--executor", "none"]) as server:
        answer = submit(server, body_of(script, params=["n=1"]))
        assert answer.status_code == 409
        assert "--executor none" in answer.json()["detail"][0]["msg"]
    bad = cli(["serve", "--executor", "ftp://x", "--db", str(tmp_path / "x.db")], tmp_path, {})
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "dask://HOST:PORT" in bad.stderr


def test_with_tokens_a_sweep_runs_as_its_submitter_and_its_token_is_revoked(
    tmp_path: Path, script: Path, sweep_env: dict[str, str]
) -> None:
    db = str(tmp_path / "server.db")
    reader = make_token(db, "bob", "vision", "read")
    alice = make_token(db, "alice", "vision", "ingest")
    other = make_token(db, "carol", "audio", "ingest")
    with start_server(tmp_path, db=db, env=sweep_env) as server:
        assert submit(server, body_of(script, params=["n=1"])).status_code == 401
        assert submit(server, body_of(script, params=["n=1"]), bearer(reader)).status_code == 403
        answer = submit(server, body_of(script, params=["n=1,2"]), bearer(alice))
        assert answer.status_code == 201, answer.text
        sweep_id = answer.json()["id"]
        detail = wait_for(
            server, sweep_id, lambda d: d["status"] in FINISHED, headers=bearer(reader)
        )
        assert detail["status"] == "done" and detail["finished"] == 2, detail
        assert (detail["user"], detail["project"]) == ("alice", "vision")
        runs = httpx.get(f"{server.url}/api/v1/runs", headers=bearer(reader)).json()["runs"]
        assert len(runs) == 2
        assert {(r["user"], r["project"]) for r in runs} == {("alice", "vision")}
        # another project sees neither the sweep nor may it cancel it
        hidden = httpx.get(f"{server.url}/api/v1/sweeps/{sweep_id}", headers=bearer(other))
        assert hidden.status_code == 404
        refused = httpx.post(f"{server.url}/api/v1/sweeps/{sweep_id}/cancel", headers=bearer(other))
        assert refused.status_code == 404
    # the token minted for the sweep's runs was revoked when it ended
    listing = cli(["serve", "token", "list", "--db", db], tmp_path, {})
    assert listing.returncode == 0, listing.stderr
    lines = [ln for ln in listing.stdout.splitlines() if "alice" in ln]
    assert len(lines) == 2, listing.stdout
    # columns: ... created, revoked (a time when it was)
    assert sorted(len(re.findall(r"\d{4}-\d\d-\d\dT", ln)) for ln in lines) == [1, 2]


def test_executor_names_and_dask_resources() -> None:
    assert check_executor("local") == "local"
    assert scheduler_address("dask://10.0.0.5:8786") == "tcp://10.0.0.5:8786"
    with pytest.raises(ValueError, match="dask://HOST:PORT"):
        check_executor("http://x")
    spec = {
        "target": {"kind": "script", "name": "t.py", "content": "", "argv": []},
        "params": ["n=1"], "threads": "1,4", "gpus": "none,0:1",
    }  # fmt: skip
    task = ConfigTask("s", spec, 1, "n=1 threads=4 gpus=0,1", 1, 4, "http://x")
    assert resources_for(task, {"GPU", "threads"}) == {"GPU": 2.0, "threads": 4.0}
    assert resources_for(task, {"CPU"}) == {"CPU": 4.0}
    assert resources_for(task, set()) is None
    no_gpu = ConfigTask("s", spec, 1, "n=1 threads=1 gpus=none", 1, 4, "http://x")
    assert resources_for(no_gpu, {"GPU"}) is None


@pytest.fixture
def dask_cluster(sweep_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """A real Dask LocalCluster of two worker processes (they inherit ``sweep_env``)."""
    distributed = pytest.importorskip("distributed")
    for name, value in sweep_env.items():
        monkeypatch.setenv(name, value)
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
        resources={"threads": 2},
    )  # fmt: skip
    client = distributed.Client(cluster)
    try:
        yield cluster, client
    finally:
        client.close()
        cluster.close()


@TWO_CPUS
def test_a_sweep_on_a_dask_cluster_measures_every_configuration_once_on_the_workers(
    tmp_path: Path, script: Path, sweep_env: dict[str, str], dask_cluster: Any
) -> None:
    cluster, client = dask_cluster
    worker_pids = set(client.run(os.getpid).values())
    address = cluster.scheduler_address.replace("tcp://", "dask://")
    with start_server(tmp_path, env=sweep_env, args=["--executor", address]) as server:
        done = cli(
            ["sweep", "train.py", "-p", "n=1,2", "--threads", "1,2", "--metric", "score",
             "--server", server.url],
            tmp_path, sweep_env,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr + server.output()
        sweep_id = done.stdout.split()[1]
        detail = wait_for(server, sweep_id, lambda d: d["status"] in FINISHED)
    assert detail["status"] == "done", detail
    assert detail["executor"] == address
    assert detail["counts"] == {"ok": 4}
    assert Counter(r["tags"]["config"] for r in detail["runs"]) == {
        f"n={n} threads={t}": 1 for n in (1, 2) for t in (1, 2)
    }
    # measured on the Dask workers: each configuration's process was a worker's child
    assert {int(r["metrics"]["ppid"]) for r in detail["runs"]} <= worker_pids
    for run in detail["runs"]:
        assert run["metrics"]["cpus"] == float(run["tags"]["threads"])
        assert run["energy_j"] > 0
    assert detail["comparison"]["answer"] in done.stdout


def test_a_worker_lost_mid_run_is_retried_and_its_partial_run_kept_as_lost(
    tmp_path: Path, script: Path, sweep_env: dict[str, str], dask_cluster: Any
) -> None:
    cluster, client = dask_cluster
    address = cluster.scheduler_address.replace("tcp://", "dask://")
    with start_server(tmp_path, env=sweep_env, args=["--executor", address]) as server:
        answer = submit(server, body_of(script, params=["n=1", "sleep=4"]))
        assert answer.status_code == 201, answer.text
        sweep_id = answer.json()["id"]
        # once its run is on the server, kill the worker running it (the nanny restarts it)
        wait_for(server, sweep_id, lambda d: d["current"])
        busy = [w for w, keys in client.processing().items() if keys]
        assert len(busy) == 1
        (pid,) = client.run(os.getpid, workers=busy).values()
        os.kill(pid, signal.SIGKILL)
        detail = wait_for(server, sweep_id, lambda d: d["status"] in FINISHED, timeout_s=120)
    assert detail["status"] == "done", json.dumps(detail, indent=1) + server.output()
    statuses = sorted(r["status"] for r in detail["runs"])
    assert statuses == ["lost", "ok"], statuses
    lost = next(r for r in detail["runs"] if r["status"] == "lost")
    assert "lost" in lost["error"]
    assert detail["finished"] == 1


def test_a_sweep_run_here_and_forwarded_is_compared_on_the_server_too(
    tmp_path: Path, script: Path, sweep_env: dict[str, str]
) -> None:
    with start_server(tmp_path, env=sweep_env) as server:
        env = {**sweep_env, "CARBON_JUPYTER_SERVER": server.url}
        done = cli(["sweep", "train.py", "-p", "n=1,2", "--metric", "score"], tmp_path, env)
        assert done.returncode == 0, done.stderr
        sweep_id = done.stdout.split()[1]
        detail = wait_for(server, sweep_id, lambda d: d.get("finished") == 2)
        listed = httpx.get(f"{server.url}/api/v1/sweeps").json()["sweeps"]
        page = httpx.get(f"{server.url}/sweeps/{sweep_id}")
        cancel = httpx.post(f"{server.url}/api/v1/sweeps/{sweep_id}/cancel")
    assert detail["executor"] == "client" and detail["status"] == "done"
    assert detail["total"] == 2 and detail["params"] == ["n=1,2"]
    assert Counter(r["tags"]["config"] for r in detail["runs"]) == {"n=1": 1, "n=2": 1}
    # the same comparison as the command line printed, from the forwarded runs
    assert detail["comparison"]["answer"] in done.stdout
    assert [s["id"] for s in listed] == [sweep_id]
    assert page.status_code == 200 and "cancel-button" not in page.text
    assert cancel.status_code == 409 and "--resume" in cancel.json()["detail"][0]["msg"]
