"""A job spread over machines with their own stores, grouped by the team server.

Two "hosts" x two ranks launched as torchrun launches them, each host with its
own fake powercap tree, fake NVML GPUs and its own store file (as separate
machines have), all forwarding to one real ``carbon-jupyter serve``: the
server's ``/api/v1/jobs/{id}`` adds the parts up as the hosts' own stores do.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from carbon_jupyter.jobs.group import load
from tests.server_fixtures import start_server
from tests.test_jobs import cluster, launch  # noqa: F401 (a fixture)


def test_the_server_groups_a_job_sent_from_every_host(
    tmp_path: Path,
    cluster: Any,  # noqa: F811
) -> None:
    _, script = cluster
    with start_server(tmp_path) as server:
        stores = {host: str(tmp_path / f"{host}.db") for host in ("host-a", "host-b")}
        ranks = [
            launch(
                tmp_path, script, host, rank, rank % 2, "torchrun", work_s=1.5,
                extra_env={
                    "CARBON_JUPYTER_DB": stores[host],
                    "CARBON_JUPYTER_SERVER": server.url,
                    "CARBON_JUPYTER_FORWARD_INTERVAL": "1",
                },
            )
            for rank, host in enumerate(["host-a", "host-a", "host-b", "host-b"])
        ]  # fmt: skip
        for process in ranks:
            assert process.wait(timeout=60) == 0
        deadline = time.monotonic() + 30
        while True:
            answer = httpx.get(f"{server.url}/api/v1/jobs/ddp-42")
            job = answer.json() if answer.status_code == 200 else {}
            done = [p for p in job.get("parts", []) if p["status"] != "running"]
            if job and len(done) == len(job["parts"]) and job["status"] == "ok":
                break
            assert time.monotonic() < deadline, [
                (p["kind"], p["host"], p["status"]) for p in job.get("parts", [])
            ]
            time.sleep(0.3)
        listed = httpx.get(f"{server.url}/api/v1/jobs").json()["jobs"]
        missing = httpx.get(f"{server.url}/api/v1/jobs/no-such-job")
        # the dashboard shows the job as one run, with its hosts and parts
        jobs_page = httpx.get(f"{server.url}/jobs")
        job_page = httpx.get(f"{server.url}/jobs/ddp-42")
        part_page = httpx.get(f"{server.url}/runs/{job['parts'][0]['run_id']}")
        no_page = httpx.get(f"{server.url}/jobs/no-such-job")
    assert jobs_page.status_code == 200 and 'href="/jobs/ddp-42"' in jobs_page.text
    assert job_page.status_code == 200
    for host in ("host-a", "host-b"):
        assert f'data-host="{host}"' in job_page.text
    assert job_page.text.count("host (CPU, RAM)") >= 2
    assert all(f'href="/runs/{p["run_id"]}"' in job_page.text for p in job["parts"])
    assert 'http-equiv="refresh"' not in job_page.text  # finished: no reloading
    assert 'href="/jobs/ddp-42"' in part_page.text
    assert no_page.status_code == 404
    assert missing.status_code == 404
    assert [j["job"] for j in listed] == ["ddp-42"] and listed[0]["hosts"] == 2
    assert sorted(job["hosts"]) == ["host-a", "host-b"]
    assert sorted(p["rank"] for p in job["parts"] if p["kind"] == "rank") == [0, 1, 2, 3]
    # each host's own store holds its parts; the server adds up the same figures
    local = {host: load("ddp-42", path) for host, path in stores.items()}
    for host, found in local.items():
        on_server = job["hosts"][host]
        assert on_server["cpu_energy_j"] == pytest.approx(found.cpu_energy_j)
        assert on_server["gpu_energy_j"] == pytest.approx(found.gpu_energy_j)
        assert on_server["ram_energy_j"] == pytest.approx(found.ram_energy_j)
        assert on_server["cpu_energy_j"] > 0 and on_server["gpu_energy_j"] > 0
    assert job["energy_j"] == pytest.approx(sum(j.energy_j for j in local.values()))
    assert job["co2_g"] == pytest.approx(sum(j.co2_g for j in local.values()))
    # each rank's share of its host's CPU, the same on the server and in its host's store
    for part in (p for p in job["parts"] if p["kind"] == "rank"):
        (mine,) = (p for p in local[part["host"]].parts if p.run_id == part["run_id"])
        assert part["cpu_share"] == pytest.approx(mine.cpu_share)
        assert part["cpu_process_energy_j"] == pytest.approx(mine.cpu_process_energy_j)
        assert f"{part['cpu_share'] * 100:.0f} %" in job_page.text
