"""A rank's share of its host's CPU: kept per rank part, without reading the CPU counters.

The host part measures the host's CPU packages once; each rank keeps its
process tree's CPU seconds and the machine's busy CPU seconds over its run
(:mod:`carbon_jupyter.jobs.share`), and grouping gives it its share of the
host's CPU energy (:mod:`carbon_jupyter.jobs.group`). Real rank processes are
launched with ``torchrun``'s environment on one fake host (see
:mod:`tests.test_jobs`): one burns CPU itself, one through a child process
still running when the rank stops (a data loader's worker), one sleeps.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import carbon_jupyter as cj
from carbon_jupyter.cli.main import main
from carbon_jupyter.jobs.group import group
from carbon_jupyter.jobs.share import (
    CPU_TIME_TAG,
    HOST_BUSY_TAG,
    POLL_PERIOD_S,
    RankCpuShare,
    read_share,
)
from carbon_jupyter.measure.tracker import build_run
from carbon_jupyter.model import DeviceEnergy, DeviceInfo, Intensity, Run
from carbon_jupyter.store import open_store
from tests.test_jobs import CPU_W, REPO, Host, launch

#: CPU seconds the busy rank, and the busy rank's child, each burn.
CPU_S = 1.0

SCRIPT = """
import os, subprocess, sys, time
sys.path.insert(0, {repo!r})
from tests.fake_nvml import FakeGpu, FakeNvml
import carbon_jupyter.sensors.nvml as nvml_module

fake = FakeNvml([FakeGpu(uuid="GPU-" + os.environ["RANK"], power_w=100.0)], clock=time.monotonic)
nvml_module._import_pynvml = lambda: fake
import carbon_jupyter as cj

mode, cpu_s, stop_file = os.environ["MODE"], float(os.environ["CPU_S"]), os.environ["STOP_FILE"]
burn = "import time\\nwhile time.process_time() < {{}}:\\n    pass\\n"
child = None
with cj.track("train", phase="train", interval=0.25):
    print("started", flush=True)
    if mode == "busy":
        exec(burn.format(time.process_time() + cpu_s))
    elif mode == "child":  # the work is a child's, still running when the rank stops
        child = subprocess.Popen(
            [sys.executable, "-c", burn.format(cpu_s) + "print('burnt', flush=True)\\n"
             "time.sleep(600)"], stdout=subprocess.PIPE, text=True,
        )
        assert child.stdout.readline() == "burnt\\n"
    print("done", flush=True)
    while not os.path.exists(stop_file):  # every rank stops at about the same time
        time.sleep(0.02)
if child is not None:
    child.kill()
    child.wait()
"""


# -- real ranks -------------------------------------------------------------------------------
@pytest.fixture
def host_a(tmp_path: Path) -> Iterator[Path]:
    host = Host(tmp_path / "hosts", "host-a")
    script = tmp_path / "share_rank.py"
    script.write_text(SCRIPT.format(repo=str(REPO)))
    try:
        yield script
    finally:
        host.stop()


def test_each_rank_keeps_its_share_of_the_hosts_cpu(
    tmp_path: Path, host_a: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    modes = {0: "busy", 1: "child", 2: "idle"}
    stop_file = tmp_path / "stop"
    ranks = [
        launch(tmp_path, host_a, "host-a", rank, rank, "torchrun", work_s=0.0,
               extra_env={"MODE": mode, "CPU_S": str(CPU_S), "STOP_FILE": str(stop_file)})
        for rank, mode in modes.items()
    ]  # fmt: skip
    for process in ranks:
        assert process.stdout is not None
        assert [process.stdout.readline() for _ in range(2)] == ["started\n", "done\n"]
    stop_file.touch()
    for process in ranks:
        assert process.wait(timeout=60) == 0

    stored = {int(r.tags["rank"]): r for r in open_store().iter_runs(tag={"part": "rank"})}
    cpu_s = {rank: float(run.tags[CPU_TIME_TAG]) for rank, run in stored.items()}
    busy_s = {rank: float(run.tags[HOST_BUSY_TAG]) for rank, run in stored.items()}
    assert cpu_s[0] >= CPU_S
    # the child's CPU time counts, though it still ran at the stop: the rank itself waited
    assert cpu_s[1] >= CPU_S
    assert cpu_s[2] < 0.2, cpu_s
    for rank in modes:  # the machine was busy at least while the rank was
        assert busy_s[rank] >= 0.9 * cpu_s[rank], (cpu_s, busy_s)
    assert all(CPU_TIME_TAG not in r.tags for r in open_store().iter_runs(tag={"part": "host"}))

    job = cj.job("ddp-42")
    parts = {p.rank: p for p in job.parts if p.kind == "rank"}
    shares = {rank: parts[rank].cpu_share for rank in modes}
    assert all(s is not None for s in shares.values()), shares
    busy, child, idle = (shares[r] or 0.0 for r in modes)
    # the machine's CPUs were at most all busy: a burning rank's share is at least its CPU
    # time over that (about half the busy time on an idle 2-CPU machine; less when loaded)
    for rank in (0, 1):
        least = min(1.0, cpu_s[rank] / ((os.cpu_count() or 1) * parts[rank].duration_s))
        assert (shares[rank] or 0.0) >= 0.9 * least, (shares, cpu_s, busy_s)
    assert idle < 0.1 and busy > 5 * idle and child > 5 * idle, shares
    assert sum(s or 0.0 for s in shares.values()) <= 1.0 + 0.02

    host = job.hosts["host-a"]
    energies = [parts[r].cpu_process_energy_j for r in modes]
    assert all(e is not None and e >= 0 for e in energies)
    assert sum(e or 0.0 for e in energies) <= host.cpu_energy_j + 1e-6
    assert host.cpu_process_energy_j == pytest.approx(sum(e or 0.0 for e in energies))
    # the host's CPU draws a steady CPU_W: a rank's part is its share of that over its span
    for rank in modes:
        expected_j = (shares[rank] or 0.0) * CPU_W * parts[rank].duration_s
        assert parts[rank].cpu_process_energy_j == pytest.approx(expected_j, rel=0.1, abs=0.5)

    as_json = job.to_json()
    assert {p["rank"]: p["cpu_share"] for p in as_json["parts"] if p["kind"] == "rank"} == shares
    assert all(p["cpu_share"] is None for p in as_json["parts"] if p["kind"] == "host")
    json.dumps(as_json)
    assert main(["show", "ddp-42"]) == 0
    assert "CPU share" in capsys.readouterr().out


# -- the counters ----------------------------------------------------------------------------
class Counters:
    """Hand-moved counters: the process tree's CPU seconds, the machine's busy seconds, a clock."""

    def __init__(self) -> None:
        self.tree_s = 100.0
        self.busy_s = 5000.0
        self.now_s = 0.0
        self.tree_reads = 0

    def tree(self) -> float:
        self.tree_reads += 1
        return self.tree_s

    def share(self) -> RankCpuShare:
        return RankCpuShare(
            tree_seconds=self.tree, machine_busy_s=lambda: self.busy_s, clock=lambda: self.now_s
        )


def test_the_share_is_the_trees_cpu_time_over_the_machines_busy_time() -> None:
    counters = Counters()
    share = counters.share().start()
    counters.tree_s += 1.25
    counters.busy_s += 5.0
    tags = share.stop()
    assert tags == {CPU_TIME_TAG: "1.250", HOST_BUSY_TAG: "5.000"}
    assert share.stop() == tags  # stopping again changes nothing
    assert read_share(tags) == pytest.approx(0.25)


def test_the_tree_is_polled_at_most_every_poll_period() -> None:
    counters = Counters()
    share = counters.share().start()
    reads = counters.tree_reads
    share.poll()
    counters.now_s += POLL_PERIOD_S / 2
    share.poll()
    assert counters.tree_reads == reads
    counters.now_s += POLL_PERIOD_S
    share.poll()
    assert counters.tree_reads == reads + 1


def test_an_unreadable_counter_leaves_the_tags_out() -> None:
    def broken() -> float:
        raise OSError("no /proc")

    assert RankCpuShare(tree_seconds=broken).start().stop() == {}
    assert RankCpuShare(machine_busy_s=broken).start().stop() == {}
    assert RankCpuShare().stop() == {}  # never started


def test_read_share_takes_only_sound_figures() -> None:
    assert read_share({}) is None
    assert read_share({CPU_TIME_TAG: "1", HOST_BUSY_TAG: "0"}) is None
    assert read_share({CPU_TIME_TAG: "x", HOST_BUSY_TAG: "2"}) is None
    assert read_share({CPU_TIME_TAG: "nan", HOST_BUSY_TAG: "2"}) is None
    assert read_share({CPU_TIME_TAG: "-1", HOST_BUSY_TAG: "2"}) is None
    assert read_share({CPU_TIME_TAG: "3", HOST_BUSY_TAG: "2"}) == 1.0  # clocks differ: at most 1
    assert read_share({CPU_TIME_TAG: "0", HOST_BUSY_TAG: "2"}) == 0.0


def test_a_rank_part_stores_its_figures_and_a_run_of_its_own_does_not() -> None:
    with cj.track("rank", job="exp-share", sensors=(), interval=0.05) as handle:
        sum(i * i for i in range(1_000_000))
    run = handle.run
    assert run is not None and run.tags["part"] == "rank"
    assert float(run.tags[CPU_TIME_TAG]) > 0
    assert float(run.tags[HOST_BUSY_TAG]) >= float(run.tags[CPU_TIME_TAG]) * 0.5
    (stored,) = open_store().runs(label="rank")
    assert stored.tags[CPU_TIME_TAG] == run.tags[CPU_TIME_TAG]
    with cj.track("alone", sensors=(), interval=0.05) as handle:
        pass
    assert handle.run is not None and CPU_TIME_TAG not in handle.run.tags


# -- grouping ------------------------------------------------------------------------------
INTENSITY = Intensity(400.0, "test", 2024, 1.0, "test")
CPU = DeviceInfo("cpu:0", "cpu", "Test CPU", "rapl")
RAM = DeviceInfo("ram", "ram", "RAM", "rapl")
GPU = DeviceInfo("gpu:0", "gpu", "Test GPU", "nvml-energy")


def _run(
    run_id: str, host: str, start_s: float, duration_s: float, tags: dict[str, str],
    devices: tuple[DeviceEnergy, ...] = (),
) -> Run:  # fmt: skip
    minutes, seconds = divmod(start_s, 60)
    return build_run(
        run_id=run_id, label="train", phase="train", items=None, status="ok",
        started_at=f"2025-01-02T03:{int(minutes):02d}:{seconds:06.3f}+00:00",
        ended_at=None, duration_s=duration_s, attribution="device", devices=devices,
        intensity=INTENSITY, tags={"job": "j", **tags}, host=host,
    )  # fmt: skip


def _rank(
    rank: int, host: str, start_s: float, duration_s: float, cpu_s: str | None, busy_s: str
) -> Run:  # fmt: skip
    tags = {"part": "rank", "rank": str(rank)}
    if cpu_s is not None:
        tags.update({CPU_TIME_TAG: cpu_s, HOST_BUSY_TAG: busy_s})
    gpu = (DeviceEnergy(GPU, 100.0 * duration_s),)
    return _run(f"rank-{rank}", host, start_s, duration_s, tags, gpu)


def _host_part(name: str, host: str, start_s: float, duration_s: float, cpu_j: float) -> Run:
    devices = (DeviceEnergy(CPU, cpu_j), DeviceEnergy(RAM, 10.0))
    return _run(name, host, start_s, duration_s, {"part": "host"}, devices)


def _parts(runs: list[Run]) -> dict[Any, Any]:
    job = group("j", runs)
    return {p.rank if p.kind == "rank" else p.run_id: p for p in job.parts}


def test_group_gives_each_rank_its_share_of_the_hosts_cpu_energy() -> None:
    runs = [
        _host_part("host-1", "a", 0.0, 4.0, cpu_j=160.0),  # handed over after 4 s
        _host_part("host-2", "a", 4.0, 6.0, cpu_j=240.0),
        _rank(0, "a", 0.0, 10.0, "6.0", "10.0"),
        _rank(1, "a", 0.0, 10.0, "1.0", "10.0"),
        _rank(2, "a", 5.0, 5.0, "12.0", "10.0"),  # half the job; more CPU than busy: 1
        _rank(3, "a", 0.0, 10.0, None, ""),  # lost or running: unknown
        _rank(4, "b", 0.0, 10.0, "2.0", "8.0"),  # no host part on its host
    ]
    job = group("j", runs)
    parts = {p.rank: p for p in job.parts if p.kind == "rank"}
    assert parts[0].cpu_share == pytest.approx(0.6)
    assert parts[1].cpu_share == pytest.approx(0.1)
    assert parts[2].cpu_share == 1.0
    assert parts[3].cpu_share is None and parts[3].cpu_process_energy_j is None
    assert parts[4].cpu_share == pytest.approx(0.25) and parts[4].cpu_process_energy_j is None
    assert all(p.cpu_share is None for p in job.parts if p.kind == "host")
    # 0.6 + 0.1 of the whole 400 J, and all of the second host part's last 5 of 6 s (200 J):
    # 480 J in all, more than the host's 400 J, so scaled down to it.
    wanted = {0: 0.6 * 400.0, 1: 0.1 * 400.0, 2: 1.0 * 240.0 * 5 / 6}
    scale = 400.0 / sum(wanted.values())
    for rank, energy_j in wanted.items():
        assert parts[rank].cpu_process_energy_j == pytest.approx(energy_j * scale)
    assert job.hosts["a"].cpu_energy_j == pytest.approx(400.0)
    assert job.hosts["a"].cpu_process_energy_j == pytest.approx(400.0)
    assert job.hosts["b"].cpu_process_energy_j == 0.0
    # the totals themselves do not change
    assert job.cpu_energy_j == pytest.approx(400.0)
    text = repr(job)
    assert "CPU share 60 %" in text and "CPU share 25 %" in text
    assert text.count("CPU share") == 4


def test_group_takes_the_overlapping_part_of_the_host_parts() -> None:
    runs = [
        _host_part("host-1", "a", 0.0, 10.0, cpu_j=400.0),
        _rank(0, "a", 0.0, 10.0, "5.0", "10.0"),
        _rank(1, "a", 2.5, 5.0, "2.0", "4.0"),  # the middle half of the host part
    ]
    parts = _parts(runs)
    assert parts[0].cpu_process_energy_j == pytest.approx(0.5 * 400.0)
    assert parts[1].cpu_process_energy_j == pytest.approx(0.5 * 200.0)
    assert group("j", runs).hosts["a"].cpu_process_energy_j == pytest.approx(300.0)


def test_the_job_json_carries_the_shares() -> None:
    runs = [_host_part("host-1", "a", 0.0, 10.0, 100.0), _rank(0, "a", 0.0, 10.0, "1", "4")]
    as_json = group("j", runs).to_json()
    (rank,) = [p for p in as_json["parts"] if p["kind"] == "rank"]
    assert rank["cpu_share"] == pytest.approx(0.25)
    assert rank["cpu_process_energy_j"] == pytest.approx(25.0)
    assert as_json["hosts"]["a"]["cpu_process_energy_j"] == pytest.approx(25.0)
    json.dumps(as_json)


def test_gpus_that_ranks_each_call_gpu0_are_listed_apart() -> None:
    """``srun --gpus-per-task``: every rank sees its one GPU as gpu:0; each is its own GPU."""
    from dataclasses import replace

    runs = []
    for rank, uuid in enumerate(("GPU-aaaa", "GPU-bbbb")):
        run = _rank(rank, "a", 0.0, 10.0, "1.0", "10.0")
        gpu = replace(GPU, uuid=uuid)
        runs.append(replace(run, devices=(DeviceEnergy(gpu, 100.0 * (rank + 1)),)))
    host = group("j", runs).hosts["a"]
    assert host.devices == {
        "gpu:0 GPU-aaaa": {"kind": "gpu", "method": "nvml-energy", "energy_j": 100.0},
        "gpu:0 GPU-bbbb": {"kind": "gpu", "method": "nvml-energy", "energy_j": 200.0},
    }
    assert host.gpu_energy_j == pytest.approx(300.0)
    # one GPU seen by two ranks (torchrun, each picking its own): named as it is
    same = [replace(r, devices=(DeviceEnergy(replace(GPU, uuid="GPU-aaaa"), 100.0),)) for r in runs]
    assert list(group("j", same).hosts["a"].devices) == ["gpu:0"]
