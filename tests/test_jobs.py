"""Distributed jobs: real rank processes launched the way torchrun and srun launch them.

Two "hosts" (``CARBON_JUPYTER_HOST``), each with its own fake powercap tree
(a package at a known power, a DRAM domain) and its own fake NVML GPUs, two
ranks each; every process is a real Python process with the launcher's
environment, tracking with ``carbon_jupyter.track``. The job's CPU and RAM
must be counted once per host, each GPU once, and the measuring rank's death
must hand the host over to another rank without a gap.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import carbon_jupyter as cj
from carbon_jupyter.cli.main import main
from carbon_jupyter.errors import CarbonError, ConfigError
from carbon_jupyter.jobs.identity import job_identity
from carbon_jupyter.jobs.parts import rank_gpus
from carbon_jupyter.store import open_store
from carbon_jupyter.store.rows import parse_time
from tests.fake_powercap import CounterWriter, build_tree

REPO = Path(__file__).resolve().parents[1]
CPU_W = 40.0
DRAM_W = 5.0
GPU_W = {"host-a": (100.0, 200.0), "host-b": (150.0, 50.0)}
INTERVAL_S = 0.25

RANK = """
import os, sys, time
sys.path.insert(0, {repo!r})
from tests.fake_nvml import FakeGpu, FakeNvml
import carbon_jupyter.sensors.nvml as nvml_module

host = os.environ["CARBON_JUPYTER_HOST"]
watts = [float(w) for w in os.environ["FAKE_GPU_W"].split(",")]
fake = FakeNvml(
    [FakeGpu(uuid=f"GPU-{{host}}-{{i}}", power_w=w) for i, w in enumerate(watts)],
    clock=time.monotonic,
)
nvml_module._import_pynvml = lambda: fake
import carbon_jupyter as cj

with cj.track("train", phase="train", interval={interval}):
    print("started", flush=True)
    time.sleep(float(os.environ["WORK_S"]))
"""


class Host:
    """A fake machine: its powercap tree with counters moving at CPU_W and DRAM_W."""

    def __init__(self, root: Path, name: str) -> None:
        self.name = name
        self.tree = build_tree(root / name, sockets=1, dram=True)
        package = root / name / "intel-rapl:0"
        self.writers = [
            CounterWriter(package / "energy_uj", CPU_W, max_range_uj=self.tree.max_range_uj),
            CounterWriter(
                root / name / "intel-rapl:0:0" / "energy_uj", DRAM_W,
                max_range_uj=self.tree.max_range_uj,
            ),
        ]  # fmt: skip
        for writer in self.writers:
            writer.start()

    def stop(self) -> None:
        for writer in self.writers:
            writer.stop()


@pytest.fixture
def cluster(tmp_path: Path) -> Any:
    hosts = {name: Host(tmp_path / "hosts", name) for name in GPU_W}
    script = tmp_path / "rank.py"
    script.write_text(RANK.format(repo=str(REPO), interval=INTERVAL_S))
    try:
        yield hosts, script
    finally:
        for host in hosts.values():
            host.stop()


def launch(
    tmp_path: Path, script: Path, host: str, rank: int, local_rank: int, launcher: str,
    work_s: float, extra_env: dict[str, str] | None = None,
) -> subprocess.Popen[str]:  # fmt: skip
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("SLURM_", "TORCHELASTIC", "CARBON_JUPYTER_"))
    }  # fmt: skip
    env.update(
        CARBON_JUPYTER_HOST=host,
        CARBON_JUPYTER_POWERCAP_ROOT=str(tmp_path / "hosts" / host),
        CARBON_JUPYTER_DB=os.environ["CARBON_JUPYTER_DB"],
        CARBON_JUPYTER_LOCK_DIR=str(tmp_path / "locks"),
        FAKE_GPU_W=",".join(str(w) for w in GPU_W[host]),
        WORK_S=str(work_s),
        PYTHONPATH=str(REPO),
    )
    env.update(extra_env or {})
    if launcher == "torchrun":
        env.update(
            TORCHELASTIC_RUN_ID="ddp-42", RANK=str(rank), LOCAL_RANK=str(local_rank),
            WORLD_SIZE="4", LOCAL_WORLD_SIZE="2", GROUP_RANK=str(rank // 2),
            MASTER_ADDR="host-a", MASTER_PORT="29500",
        )  # fmt: skip
    else:
        env.update(
            SLURM_JOB_ID="777", SLURM_STEP_ID="0", SLURM_PROCID=str(rank),
            SLURM_LOCALID=str(local_rank), SLURM_NTASKS="4", SLURM_NODEID=str(rank // 2),
        )  # fmt: skip
    return subprocess.Popen(
        [sys.executable, str(script)], env=env, stdout=subprocess.PIPE, text=True
    )


def _start(part: Any) -> float:
    return parse_time(part.started_at).timestamp()


def _end(part: Any) -> float:
    return _start(part) + part.duration_s


def _started(process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "started"


@pytest.mark.parametrize(("launcher", "job_id"), [("torchrun", "ddp-42"), ("srun", "slurm-777.0")])
def test_each_host_counts_its_cpu_and_ram_once_and_each_gpu_once(
    tmp_path: Path, cluster: Any, launcher: str, job_id: str
) -> None:
    _, script = cluster
    began = time.time()
    ranks = [
        launch(tmp_path, script, host, rank, rank % 2, launcher, work_s=2.0)
        for rank, host in enumerate(["host-a", "host-a", "host-b", "host-b"])
    ]
    for process in ranks:
        assert process.wait(timeout=60) == 0
    job = cj.job(job_id)
    assert job.status == "ok"
    assert sorted(job.hosts) == ["host-a", "host-b"]
    assert job.world_size == 4
    ranks_parts = [p for p in job.parts if p.kind == "rank"]
    assert sorted(p.rank for p in ranks_parts) == [0, 1, 2, 3]
    for name, host in job.hosts.items():
        host_parts = sorted(
            (p for p in job.parts if p.kind == "host" and p.host == name),
            key=lambda p: p.started_at,
        )
        # one rank measured the host at a time: a holder that ends hands over to another
        for before, after in itertools.pairwise(host_parts):
            assert before.ended_at is not None and before.ended_at <= after.started_at
        span_s = sum(p.duration_s for p in host_parts)
        on_host = [p for p in ranks_parts if p.host == name]
        union_s = max(_end(p) for p in on_host) - min(_start(p) for p in on_host)
        assert span_s == pytest.approx(union_s, abs=2 * INTERVAL_S)
        # the host's CPU and RAM once: not once per rank (that would be twice this)
        assert host.cpu_energy_j == pytest.approx(CPU_W * span_s, rel=0.1)
        assert host.ram_energy_j == pytest.approx(DRAM_W * span_s, rel=0.1)
        # each GPU once, measured by the rank whose local rank it is
        gpus = {k: d for k, d in host.devices.items() if d["kind"] == "gpu"}
        assert len(gpus) == 2
        for rank_part in (p for p in ranks_parts if p.host == name):
            (device,) = rank_part.devices
            watts = GPU_W[name][rank_part.rank % 2]
            assert device[3] == pytest.approx(watts * rank_part.duration_s, rel=0.1)
        assert host.energy_j == pytest.approx(
            host.cpu_energy_j + host.ram_energy_j + host.gpu_energy_j
        )
        # each rank keeps its share of the host's CPU (tests/test_jobs_share.py)
        shares = [p.cpu_share for p in on_host]
        assert all(s is not None for s in shares) and sum(s or 0.0 for s in shares) <= 1.02
        assert host.cpu_process_energy_j <= host.cpu_energy_j + 1e-6
    assert job.energy_j == pytest.approx(sum(h.energy_j for h in job.hosts.values()))
    assert job.cpu_energy_j == pytest.approx(sum(h.cpu_energy_j for h in job.hosts.values()))
    assert job.co2_g == pytest.approx(sum(h.co2_g for h in job.hosts.values()))
    assert 2.0 <= job.duration_s <= time.time() - began
    # the command line shows the job as one run with its hosts
    assert main(["show", job_id]) == 0


def test_when_the_measuring_rank_dies_another_takes_the_host_over_without_a_gap(
    tmp_path: Path, cluster: Any
) -> None:
    _, script = cluster
    first = launch(tmp_path, script, "host-a", 0, 0, "torchrun", work_s=30.0)
    _started(first)
    time.sleep(2 * INTERVAL_S)
    second = launch(tmp_path, script, "host-a", 1, 1, "torchrun", work_s=3.0)
    _started(second)
    time.sleep(1.0)
    store = open_store()
    (holder,) = list(store.iter_runs(tag={"job": "ddp-42", "part": "host"}))
    assert holder.tags["holder_pid"] == str(first.pid)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    assert second.wait(timeout=60) == 0

    job = cj.job("ddp-42")  # the dead rank's parts are found lost now
    host_parts = sorted(
        (r for r in open_store().iter_runs(tag={"job": "ddp-42", "part": "host"})),
        key=lambda r: r.started_at,
    )
    assert [r.status for r in host_parts] == ["lost", "ok"]
    assert host_parts[1].tags["holder_pid"] == str(second.pid)
    # the dead holder's last stored sample and the new holder's start: at most one interval
    samples = open_store().samples(host_parts[0].id)
    last_s = parse_time(host_parts[0].started_at).timestamp() + max(s.t_s for s in samples)
    gap_s = parse_time(host_parts[1].started_at).timestamp() - last_s
    assert gap_s <= INTERVAL_S + 0.1, gap_s
    # the lost rank is shown as such, the job with it
    assert job.status == "lost"
    assert {p.rank: p.status for p in job.parts if p.kind == "rank"} == {0: "lost", 1: "ok"}
    host = job.hosts["host-a"]
    covered_s = sum(r.duration_s for r in host_parts)
    assert host.cpu_energy_j == pytest.approx(CPU_W * covered_s, rel=0.1)


def test_run_tracks_a_program_stores_its_failure_and_passes_its_exit_code(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "train.py"
    script.write_text("import sys, time\ntime.sleep(0.3)\nsys.exit('diverged: loss is nan')\n")
    code = main(["run", "--label", "finetune", "--phase", "train", "--", sys.executable,
                 str(script)])  # fmt: skip
    assert code == 1
    err = capfd.readouterr().err
    assert "diverged: loss is nan" in err and "carbon: finetune  error" in err
    (run,) = open_store().runs(label="finetune")
    assert run.status == "error" and run.error == "exit status 1"
    assert run.phase == "train" and run.duration_s >= 0.3
    ok = subprocess.run(
        [sys.executable, "-m", "carbon_jupyter", "run", "--tag", "team=vision", "--",
         sys.executable, "-c", "print('hello')"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert ok.returncode == 0 and ok.stdout == "hello\n"
    assert "carbon: python" in ok.stderr
    assert open_store().runs(label=Path(sys.executable).name)[0].tags == {"team": "vision"}
    assert main(["run", "--", "no-such-program-carbon"]) == 127
    assert main(["run"]) == 2
    assert "give the program after --" in capfd.readouterr().err


def test_run_passes_a_signal_exit_code_through_as_the_shell_does(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "carbon_jupyter", "run", "--label", "killed", "--",
         sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert done.returncode == 128 + signal.SIGTERM
    (run,) = open_store().runs(label="killed")
    assert run.status == "interrupted"


def test_the_job_identity_comes_from_the_launcher() -> None:
    torch_env = {"TORCHELASTIC_RUN_ID": "abc", "RANK": "5", "LOCAL_RANK": "1", "WORLD_SIZE": "8"}
    found = job_identity(environ=torch_env)
    assert found is not None
    assert (found.job_id, found.rank, found.local_rank, found.world_size, found.launcher) == (
        "abc", 5, 1, 8, "torchrun"
    )  # fmt: skip
    slurm = {"SLURM_JOB_ID": "12", "SLURM_STEP_ID": "3", "SLURM_PROCID": "2",
             "SLURM_LOCALID": "0", "SLURM_NTASKS": "4"}  # fmt: skip
    found = job_identity(environ=slurm)
    assert found is not None and (found.job_id, found.rank, found.world_size) == (
        "slurm-12.3",
        2,
        4,
    )
    # an allocation's shell (no step, no task) is not a job: cells stay runs of their own
    assert job_identity(environ={"SLURM_JOB_ID": "12"}) is None
    assert job_identity(environ={}) is None
    explicit = job_identity("exp-1", environ=torch_env)
    assert explicit is not None and explicit.job_id == "exp-1" and explicit.rank == 5
    with pytest.raises(ConfigError, match="job id"):
        job_identity("has space", environ={})
    with pytest.raises(ConfigError, match="RANK"):
        job_identity(environ={"CARBON_JUPYTER_JOB": "x", "RANK": "first"})


def test_a_rank_measures_the_gpu_at_its_local_rank() -> None:
    from carbon_jupyter.sensors import nvml
    from tests.fake_nvml import FakeGpu, FakeNvml

    fake = FakeNvml([FakeGpu(uuid=f"GPU-{i}") for i in range(4)])
    sensors = list(nvml.probe("all", nvml=fake).sensors)
    identity = job_identity(environ={"TORCHELASTIC_RUN_ID": "j", "LOCAL_RANK": "2"})
    assert identity is not None
    assert [s.info.device_id for s in rank_gpus(sensors, identity, False)] == [
        sensors[2].info.device_id
    ]
    assert rank_gpus(sensors, identity, True) == sensors  # chosen with gpus=: all of them
    assert rank_gpus(sensors[:1], identity, False) == sensors[:1]  # srun --gpus-per-task
    far = job_identity(environ={"TORCHELASTIC_RUN_ID": "j", "LOCAL_RANK": "9"})
    assert far is not None and rank_gpus(sensors, far, False) == []


def test_an_unknown_job_is_one_line() -> None:
    with pytest.raises(CarbonError, match="no run store"):
        cj.job("never-ran")
    open_store(create=True)
    with pytest.raises(ConfigError, match="no runs of job 'never-ran'"):
        cj.job("never-ran")
