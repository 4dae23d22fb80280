"""A Dask cluster measured as one job: every host once, whichever of its workers measures it.

A real scheduler (``LocalCluster`` without workers) and real worker processes
(``dask worker``), each told its host by ``CARBON_JUPYTER_HOST``: two on
``host-a`` (so two processes share one machine) and one on ``host-b``, every
host with its own fake powercap tree (a package and a DRAM domain at known
powers), and the test process as the notebook's own machine, with a worker
beside it. The job must
count each host's CPU and RAM once, not once per worker, keep measuring a
host when its measuring worker leaves, and take in workers that join.
"""

from __future__ import annotations

import functools
import itertools
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

import carbon_jupyter as cj
from carbon_jupyter.errors import ConfigError
from carbon_jupyter.jobs.on_dask import PLUGIN_PREFIX, WATCH_PREFIX, start_cluster_job
from carbon_jupyter.notebook import options
from carbon_jupyter.sensors import reset as reset_sensors
from carbon_jupyter.store import open_store
from carbon_jupyter.store.rows import parse_time
from tests.fake_powercap import CounterWriter, build_tree

distributed = pytest.importorskip("distributed")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = "notebook-host"
CPU_W = {"host-a": 40.0, "host-b": 25.0, "host-c": 15.0, NOTEBOOK: 30.0}
DRAM_W = 5.0
INTERVAL_S = 0.25


@dataclass
class Cluster:
    """The scheduler, its client, the worker processes and each fake host's counters."""

    root: Path
    scheduler: Any
    client: Any
    workers: dict[str, list[subprocess.Popen[bytes]]] = field(default_factory=dict)
    writers: list[CounterWriter] = field(default_factory=list)

    def add_host(self, name: str) -> Path:
        """A fake machine's powercap tree, its counters moving at CPU_W[name] and DRAM_W."""
        tree = build_tree(self.root / name, sockets=1, dram=True)
        for zone, power_w in (("intel-rapl:0", CPU_W[name]), ("intel-rapl:0:0", DRAM_W)):
            writer = CounterWriter(
                tree.root / zone / "energy_uj", power_w, max_range_uj=tree.max_range_uj
            )
            self.writers.append(writer.start())
        return tree.root

    def start_worker(self, host: str) -> subprocess.Popen[bytes]:
        """A ``dask worker`` process on ``host`` (its own process, not yet registered)."""
        if host not in self.workers:
            self.add_host(host)
            self.workers[host] = []
        env = {k: v for k, v in os.environ.items() if not k.startswith("CARBON_JUPYTER_")}
        env.update(
            CARBON_JUPYTER_HOST=host,
            CARBON_JUPYTER_POWERCAP_ROOT=str(self.root / host),
            CARBON_JUPYTER_DB=os.environ["CARBON_JUPYTER_DB"],
            CARBON_JUPYTER_LOCK_DIR=os.environ["CARBON_JUPYTER_LOCK_DIR"],
            PYTHONPATH=str(REPO),
        )
        log = open(self.root / f"{host}-{len(self.workers[host])}.log", "wb")  # noqa: SIM115
        process = subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", self.scheduler.scheduler_address,
             "--nworkers", "1", "--nthreads", "1", "--no-dashboard", "--no-nanny"],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        self.workers[host].append(process)
        return process

    def join(self, host: str, workers: int) -> None:
        """A worker on ``host`` joins: returns once the cluster has ``workers`` workers."""
        self.start_worker(host)
        self.client.wait_for_workers(workers, timeout=60)

    def hosts_of_workers(self) -> dict[str, str]:
        """``{worker address: host}`` as each worker sees its host."""
        from carbon_jupyter import context

        return dict(self.client.run(context.host))

    def close(self) -> None:
        """Workers first (each closes as its scheduler still listens), then the scheduler."""
        processes = list(itertools.chain.from_iterable(self.workers.values()))
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.client.close()
        self.scheduler.close()
        for writer in self.writers:
            writer.stop()


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    root = tmp_path / "hosts"
    monkeypatch.setenv("CARBON_JUPYTER_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.setenv("CARBON_JUPYTER_HOST", NOTEBOOK)
    scheduler = distributed.LocalCluster(n_workers=0, processes=True, dashboard_address=None)
    found = Cluster(root, scheduler, distributed.Client(scheduler))
    monkeypatch.setenv("CARBON_JUPYTER_POWERCAP_ROOT", str(found.add_host(NOTEBOOK)))
    found.workers[NOTEBOOK] = []  # a worker beside the notebook shares its machine
    reset_sensors()
    try:
        for host in ("host-a", "host-a", "host-b", NOTEBOOK):
            found.start_worker(host)
        found.client.wait_for_workers(4, timeout=60)
        yield found
    finally:
        found.close()
        reset_sensors()


def _start(part: Any) -> float:
    return parse_time(part.started_at).timestamp()


def _end(part: Any) -> float:
    return _start(part) + part.duration_s


def host_parts(job: Any, host: str) -> list[Any]:
    return sorted((p for p in job.parts if p.kind == "host" and p.host == host), key=_start)


def check_each_host_once(job: Any, notebook_run: Any) -> None:
    """Each host measured by one process at a time, at its own power, within the cell."""
    assert job.status == "ok"
    for name, host in job.hosts.items():
        parts = host_parts(job, name)
        assert parts, name
        for before, after in itertools.pairwise(parts):
            assert _end(before) <= _start(after) + 0.01, (name, before, after)
        span_s = sum(p.duration_s for p in parts)
        # the host's CPU and RAM once: two workers on one host do not make it twice
        assert host.cpu_energy_j == pytest.approx(CPU_W[name] * span_s, rel=0.15), name
        assert host.ram_energy_j == pytest.approx(DRAM_W * span_s, rel=0.15), name
        assert host.energy_j == pytest.approx(
            host.cpu_energy_j + host.ram_energy_j + host.gpu_energy_j
        )
        if name != NOTEBOOK:  # the cluster's parts lie inside the notebook's run
            assert _start(parts[0]) >= _start(notebook_run) - 0.05
            assert _end(parts[-1]) <= _end(notebook_run) + 0.05
    for total in ("energy_j", "cpu_energy_j", "ram_energy_j", "co2_g"):
        assert getattr(job, total) == pytest.approx(
            sum(getattr(h, total) for h in job.hosts.values())
        )
    assert [p.rank for p in job.parts if p.kind == "rank"] == [0]


def no_plugin_left(client: Any) -> bool:
    def names(dask_worker: Any) -> list[str]:
        return list(dask_worker.plugins)

    return not any(
        name.startswith(PLUGIN_PREFIX) for found in client.run(names).values() for name in found
    )


def check_a_kernel_that_leaves_stops_its_workers(cluster: Cluster) -> None:
    """A kernel that dies mid-run never stops its job: its leaving does."""
    kernel = distributed.Client(cluster.scheduler.scheduler_address, set_as_default=False)
    options = {"label": "orphan", "interval": INTERVAL_S, "tags": {}}
    started = start_cluster_job(kernel, "dask-orphan", options)
    assert not no_plugin_left(cluster.client)
    kernel.close()  # as a kernel that died: nobody calls started.stop()
    deadline = time.monotonic() + 20
    while not no_plugin_left(cluster.client) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert no_plugin_left(cluster.client)
    parts = open_store().runs(tag={"job": "dask-orphan"})
    assert sorted(r.host for r in parts) == ["host-a", "host-b", NOTEBOOK]
    assert {r.status for r in parts} == {"ok"}
    assert not started.stopped
    with pytest.raises(ValueError, match="plugin"):  # the scheduler's watch is gone too
        cluster.client.unregister_scheduler_plugin(WATCH_PREFIX + started.name)


def test_track_with_a_cluster_measures_each_host_once_until_its_kernel_leaves(
    cluster: Cluster,
) -> None:
    client = cluster.client
    workers = cluster.hosts_of_workers()
    with cj.track("train", cluster=client, interval=INTERVAL_S, tags={"model": "tiny"}) as t:
        client.submit(time.sleep, 1.5).result()
    run = t.run
    assert run is not None and run.tags["part"] == "rank"
    job_id = run.tags["job"]
    assert job_id.startswith("dask-") and len(job_id) == len("dask-") + 12
    job = cj.job(job_id)
    assert sorted(job.hosts) == ["host-a", "host-b", NOTEBOOK]
    # two workers share host-a: one of them measured it, the whole cell long
    (part_a,) = host_parts(job, "host-a")
    assert len(host_parts(job, "host-b")) == 1
    # the notebook's machine once too: the notebook measured it, its worker waited
    host_runs = open_store().runs(tag={"job": job_id, "part": "host"})
    (mine,) = (r for r in host_runs if r.host == NOTEBOOK)
    assert mine.tags["holder_pid"] == str(os.getpid()) and "worker" not in mine.tags
    check_each_host_once(job, run)
    for name in ("host-a", "host-b"):
        (part,) = host_parts(job, name)
        assert part.duration_s >= 1.5
    # each worker's part says where it came from, and carries the notebook's own tags
    stored = {r.id: r for r in open_store().iter_runs(tag={"job": job_id, "part": "host"})}
    for run_id in (part_a.run_id, host_parts(job, "host-b")[0].run_id):
        tags = stored[run_id].tags
        assert tags["launcher"] == "dask" and tags["model"] == "tiny"
        assert workers[tags["worker"]] == tags["host"] == stored[run_id].host
    # the plugin is gone when the block ends, and every worker stored its final run
    assert no_plugin_left(client)
    assert all(r.status == "ok" for r in stored.values())
    # on the same cluster (one fewer to start): a job whose kernel dies mid-run
    check_a_kernel_that_leaves_stops_its_workers(cluster)


def test_dask_cell_follows_workers_that_leave_and_join(
    cluster: Cluster, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CARBON_JUPYTER_DISPLAY", "text")
    client = cluster.client

    def retire_host_a_holder() -> str:
        (holder,) = open_store().runs(status="running", tag={"part": "host", "host": "host-a"})
        client.retire_workers(workers=[holder.tags["worker"]], close_workers=True)
        return holder.tags["worker"]

    shell = InteractiveShell.instance()
    try:
        shell.run_line_magic("load_ext", "carbon_jupyter")
        shell.user_ns.update(
            client=client,
            retire_host_a_holder=retire_host_a_holder,
            add_host_c=functools.partial(cluster.join, "host-c", 5),
        )
        result = shell.run_cell(
            f"%%carbon train --dask --interval {INTERVAL_S}\n"
            "import time\ntime.sleep(0.8)\nadd_host_c()\ntime.sleep(0.3)\n"
            "left = retire_host_a_holder()\ntime.sleep(1.2)\n"
        )
        assert result.success, result.error_in_exec
        job = shell.user_ns["_carbon_job"]
        notebook_run = shell.magics_manager.registry["CarbonMagics"].last_run
        left = shell.user_ns["left"]
        # a run over several cells measures the cluster the same way
        shell.run_line_magic("carbon", f"start spanning --dask --quiet --interval {INTERVAL_S}")
        shell.run_cell("time.sleep(0.3)")
        shell.run_line_magic("carbon", "stop")
        spanning = shell.user_ns["_carbon_job"]
    finally:
        shell.run_line_magic("unload_ext", "carbon_jupyter")
        InteractiveShell.clear_instance()
    out = capsys.readouterr().out
    assert f"job {job.job_id} (train): ok, 4 host(s)" in out and "host host-a" in out
    assert sorted(job.hosts) == ["host-a", "host-b", "host-c", NOTEBOOK]
    check_each_host_once(job, notebook_run)
    # host-a's measuring worker left: the other worker on host-a took the host over at once
    before, after = host_parts(job, "host-a")
    holders = {r.id: r.tags["worker"] for r in open_store().runs(tag={"host": "host-a"})}
    assert holders[before.run_id] == left != holders[after.run_id]
    assert _start(after) - _end(before) <= 2 * INTERVAL_S
    # a worker that joined during the cell measured its host from then on
    (joined,) = host_parts(job, "host-c")
    assert _start(joined) > _start(notebook_run) + 0.8 and joined.duration_s >= 1.0
    assert no_plugin_left(client)
    assert spanning.label == "spanning" and spanning.job_id != job.job_id
    assert sorted(spanning.hosts) == ["host-a", "host-b", "host-c", NOTEBOOK]
    assert f"job {spanning.job_id} (spanning): ok" in out


def test_dask_without_a_client_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARBON_JUPYTER_DISPLAY", "text")
    shell = InteractiveShell.instance()
    try:
        shell.run_line_magic("load_ext", "carbon_jupyter")
        result = shell.run_cell("%%carbon --dask\npass\n")
    finally:
        shell.run_line_magic("unload_ext", "carbon_jupyter")
        InteractiveShell.clear_instance()
    assert isinstance(result.error_in_exec, UsageError)
    assert str(result.error_in_exec) == (
        "no Dask client in this kernel: create one with "
        "`from dask.distributed import Client; client = Client(...)` first"
    )


def test_dask_option_takes_an_address_or_leaves_the_label() -> None:
    parse = options.cell_parser().parse_args
    args = parse(["--dask", "train"])
    assert (args.label, args.dask) == ("train", "")
    args = parse(["train", "--dask", "tcp://10.0.0.5:8786", "--phase", "train"])
    assert (args.label, args.dask, args.phase) == ("train", "tcp://10.0.0.5:8786", "train")
    assert parse(["--dask", "--quiet"]).dask == ""
    assert parse(["train"]).dask is None
    with pytest.raises(UsageError, match="scheduler's address"):
        parse(["train", "--dask", "somewhere"])
    start = options.line_parser().parse_args(["start", "--dask", "fit"])
    assert (start.label, start.dask) == ("fit", "")


def test_a_cluster_run_cannot_leave_its_job() -> None:
    with pytest.raises(ConfigError, match="cluster="):
        cj.track("x", cluster=object(), job=False)


def lines_of(page: str) -> set[str]:
    """The hosts a power plot draws, from its lines' names (``HOST DEVICES (METHOD)``)."""
    names = re.findall(r'"name":"([\w.-]+) cpu:0\+ram:dram0 \(rapl\)"', page)
    return set(names)


def live_outputs(outputs: list[Any]) -> list[str]:
    """The live plot's HTML, as shown and as each update replaced it, in order."""
    return [
        o.data["text/html"]
        for o in outputs
        if o.data.get("text/plain", "").startswith("carbon: measuring")
    ]


def test_dask_cell_draws_one_line_per_host_live(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    from IPython.utils.capture import capture_output

    from carbon_jupyter.jobs.hostfeed import HostsFeed
    from carbon_jupyter.measure.tracker import Tracker
    from carbon_jupyter.show import embed

    monkeypatch.setenv("CARBON_JUPYTER_DISPLAY", "html")
    monkeypatch.setattr(embed, "_loaded", None)
    client = cluster.client

    shell = InteractiveShell.instance()
    try:
        shell.run_line_magic("load_ext", "carbon_jupyter")
        shell.user_ns.update(client=client, add_host_c=functools.partial(cluster.join, "host-c", 5))
        with capture_output() as cap:
            result = shell.run_cell(
                f"%%carbon train --dask --interval {INTERVAL_S}\n"
                "import time\ntime.sleep(2.2)\nadd_host_c()\ntime.sleep(2.2)\n"
            )
        assert result.success, result.error_in_exec
        job = shell.user_ns["_carbon_job"]
    finally:
        shell.run_line_magic("unload_ext", "carbon_jupyter")
        InteractiveShell.clear_instance()
    shown = live_outputs(cap.outputs)
    assert len(shown) >= 3, "the plot was not updated while the cell ran"
    # one line per host (two workers on host-a: one line), its devices once, and how
    # they were obtained; a host that joined mid-cell gets its line from then on
    assert lines_of(shown[0]) == {"host-a", "host-b", NOTEBOOK}
    assert lines_of(shown[-1]) == {"host-a", "host-b", "host-c", NOTEBOOK}
    # the live plot became the hosts' static plot above the job
    final = cap.outputs[-1]
    assert final.update and "data-root-id" in final.data["text/html"]
    assert lines_of(final.data["text/html"]) == {"host-a", "host-b", "host-c", NOTEBOOK}
    assert final.data["text/plain"].startswith(f"job {job.job_id} (train): ok, 4 host(s)")
    assert "host host-a" in final.data["text/html"]
    assert sorted(job.hosts) == ["host-a", "host-b", "host-c", NOTEBOOK]

    # the lines' figures: each host at its own power, its energy what its parts stored
    tracker = Tracker("fed", cluster=client, interval=INTERVAL_S).start()
    feed = HostsFeed(tracker).start()
    time.sleep(3.0)
    feed.stop()
    feed.poll()  # a point just before the end
    fed = cj.job(tracker.stop().tags["job"])
    last = {s.device_id: s for s in feed.history()[-len(fed.hosts) :]}
    assert len({s.t_s for s in last.values()}) == 1  # one point per host per poll
    assert sorted(last) == sorted(fed.hosts)
    for host, sample in last.items():
        assert sample.power_w == pytest.approx(CPU_W[host] + DRAM_W, rel=0.15), host
        assert sample.energy_j <= fed.hosts[host].energy_j * 1.01
        assert sample.energy_j >= fed.hosts[host].energy_j * 0.8
    devices = {d.device_id: d for d in feed.devices}
    assert devices["host-a"].name == "cpu:0+ram:dram0" and devices["host-a"].method == "rapl"
