"""What measuring a distributed job costs, per rank and per host.

    python benchmarks/bench_jobs.py [--seconds 10] [--repeat 3] [--interval 1.0]

Two layouts, side by side in one run: 8 ranks on one host, and 8 ranks on 4
simulated hosts (2 each). Every rank is a fresh Python process started with
``torchrun``'s environment (``TORCHELASTIC_RUN_ID``, ``RANK``, ``LOCAL_RANK``,
``WORLD_SIZE``), tracking an idle wait with ``carbon_jupyter.track`` while its
host's fake powercap tree (``CARBON_JUPYTER_POWERCAP_ROOT``, host identity
``CARBON_JUPYTER_HOST``) and its fake NVML GPU stand in for the hardware. Each
round uses a fresh store (and, for the server figures, a fresh ``carbon-jupyter
serve``). A baseline round runs the same processes with the same imports and
the same wait, untracked.

Each layout runs three ways, side by side in every round: untracked (the
baseline); *each rank on its own* (no job: every rank tracks every device it
sees, as per-rank trackers do, counting the host's CPU and RAM once per rank);
and *as one job* (each rank its GPU, one rank per host the CPU and RAM).

Printed, each as the median with min and max over ``--repeat`` rounds:

* **CPU per rank**: the process's CPU seconds per wall second over the steady
  part of the wait (after one second), tracked minus untracked, as a
  percentage of one core; and the same **per host** (its ranks added). Aims:
  as one job, <= 1 % of a core per rank (the fake NVML, written in Python,
  costs more than the real library), and per host no more than each rank on
  its own.
* **Store writes**: samples stored per second per rank part and per host part.
* **Server requests**: requests per second the job's processes made to the
  server (``carbon_jupyter_requests_total`` on its ``/metrics``), with the
  default forwarding interval (90 s) and with ``--forward-interval``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from serving import fresh_server  # noqa: E402

AIM_RANK_PCT = 1.0

RANK = """
import json, os, sys, time
sys.path.insert(0, {repo!r})
from tests.fake_nvml import FakeGpu, FakeNvml
import carbon_jupyter.sensors.nvml as nvml_module
fake = FakeNvml([FakeGpu(uuid="GPU-" + os.environ["RANK"], power_w=250.0)], clock=time.monotonic)
nvml_module._import_pynvml = lambda: fake
import carbon_jupyter as cj
import carbon_jupyter.store, carbon_jupyter.measure.tracker  # the same imports either way
seconds = float(os.environ["BENCH_SECONDS"])

def steady():
    time.sleep(1.0)
    t0, c0 = time.monotonic(), time.process_time()
    time.sleep(seconds - 1.0)
    return (time.process_time() - c0) / (time.monotonic() - t0)

if os.environ["BENCH_TRACKED"] == "1":
    with cj.track("bench", interval={interval}):
        share = steady()
else:
    share = steady()
print(json.dumps({{"cpu_share": share}}), flush=True)
"""


def _trees(folder: Path, hosts: int) -> None:
    from tests.fake_powercap import build_tree

    for h in range(hosts):
        if not (folder / f"host-{h}").exists():
            build_tree(folder / f"host-{h}", sockets=1, dram=True)


def _round(
    folder: Path, script: Path, ranks: int, hosts: int, seconds: float, tracked: bool,
    server: str | None = None, forward_s: float | None = None, job: bool = True,
) -> list[float]:  # fmt: skip
    """Each rank's steady CPU share (fraction of a core) for one round."""
    store = folder / f"store-{time.time_ns()}.db"
    job_mode = job
    job = f"bench-{time.time_ns()}"
    processes = []
    per_host = ranks // hosts
    for rank in range(ranks):
        host = rank // per_host
        env = {
            k: v for k, v in os.environ.items()
            if not k.startswith(("CARBON_JUPYTER_", "SLURM_", "TORCHELASTIC"))
        }  # fmt: skip
        env.update(
            TORCHELASTIC_RUN_ID=job if job_mode else "",
            RANK=str(rank), LOCAL_RANK=str(rank % per_host), WORLD_SIZE=str(ranks),
            CARBON_JUPYTER_HOST=f"host-{host}",
            CARBON_JUPYTER_POWERCAP_ROOT=str(folder / f"host-{host}"),
            CARBON_JUPYTER_DB=str(store), CARBON_JUPYTER_LOCK_DIR=str(folder / "locks"),
            BENCH_SECONDS=str(seconds), BENCH_TRACKED="1" if tracked else "0",
            PYTHONPATH=str(REPO),
        )  # fmt: skip
        if server:
            env["CARBON_JUPYTER_SERVER"] = server
            if forward_s is not None:
                env["CARBON_JUPYTER_FORWARD_INTERVAL"] = str(forward_s)
        processes.append(env)
    running = []
    for env in processes:
        running.append(
            subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE)
        )
    shares = []
    for process in running:
        out, _ = process.communicate(timeout=seconds + 120)
        shares.append(json.loads(out.decode().strip().splitlines()[-1])["cpu_share"])
    if tracked and job_mode:
        _STORES.append(store)
    return shares


_STORES: list[Path] = []


def _store_rates(store: Path) -> tuple[float, float]:
    """Samples stored per second of measuring, over all rank parts and all host parts."""
    conn = sqlite3.connect(store)
    rows = conn.execute(
        "SELECT r.tags, r.duration_s, count(s.seq) FROM runs r "
        "LEFT JOIN samples s ON s.run_id = r.id GROUP BY r.id"
    ).fetchall()
    conn.close()
    totals = {"rank": [0, 0.0], "host": [0, 0.0]}
    for tags, duration_s, count in rows:
        entry = totals["host" if json.loads(tags or "{}").get("part") == "host" else "rank"]
        entry[0] += count
        entry[1] += duration_s or 0.0
    return tuple(  # type: ignore[return-value]
        n / seconds if seconds else 0.0 for n, seconds in (totals["rank"], totals["host"])
    )


def _requests(url: str) -> float:
    import httpx

    text = httpx.get(f"{url}/metrics", timeout=5).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("carbon_jupyter_requests_total{") and "/api/v1/runs" in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def _with_server(folder: Path, run: object) -> float:
    """Requests per second the round made to a fresh server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARBON_JUPYTER")}
    db = folder / f"server-{time.time_ns()}.db"
    with fresh_server(db, env, ["--executor", "none"]) as url:
        started = time.monotonic()
        run(server=url)  # type: ignore[operator]
        return _requests(url) / (time.monotonic() - started)


def _spread(values: list[float], scale: float = 100.0, digits: int = 3) -> str:
    return (
        f"{statistics.median(values) * scale:.{digits}f} "
        f"({min(values) * scale:.{digits}f}-{max(values) * scale:.{digits}f})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--forward-interval", type=float, default=10.0)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    figures: dict[str, object] = {}
    verdicts = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        script = folder / "rank.py"
        script.write_text(RANK.format(repo=str(REPO), interval=args.interval))
        for ranks, hosts in ((8, 1), (8, 4)):
            _trees(folder, hosts)
            per_rank: dict[str, list[float]] = {"alone": [], "job": []}
            per_host: dict[str, list[float]] = {"alone": [], "job": []}
            host_of = [r // (ranks // hosts) for r in range(ranks)]
            for _ in range(args.repeat):
                base = _round(folder, script, ranks, hosts, args.seconds, tracked=False)
                for mode in ("alone", "job"):
                    tracked = _round(
                        folder, script, ranks, hosts, args.seconds, True, job=mode == "job"
                    )
                    added = [t - b for t, b in zip(tracked, base, strict=True)]
                    per_rank[mode].append(statistics.median(added))
                    per_host[mode].append(
                        max(
                            sum(a for a, h in zip(added, host_of, strict=True) if h == k)
                            for k in range(hosts)
                        )
                    )
            rank_rate, host_rate = _store_rates(_STORES[-1])
            name = f"{ranks} ranks on {hosts} host(s)"
            print(f"{name}, {args.seconds:g} s per round, {args.repeat} rounds:")
            for mode, title in (("alone", "each rank on its own"), ("job", "as one job")):
                print(
                    f"  {title}: CPU per rank {_spread(per_rank[mode])} % of a core, "
                    f"per host (busiest) {_spread(per_host[mode])} %"
                )
            print(
                f"  store, as one job: {rank_rate:.2f} samples/s per rank part, "
                f"{host_rate:.2f} samples/s per host part"
            )
            rank_ok = statistics.median(per_rank["job"]) * 100 <= AIM_RANK_PCT
            host_ok = statistics.median(per_host["job"]) <= statistics.median(per_host["alone"])
            verdicts.append(rank_ok and host_ok)
            print(
                f"  aim: as one job <= {AIM_RANK_PCT:g} % per rank, and per host no more than "
                f"each rank on its own; verdict: {'met' if rank_ok and host_ok else 'MISSED'}"
            )
            rates = {}
            intervals = (
                ("default (90 s)", None),
                (f"{args.forward_interval:g} s", args.forward_interval),
            )
            for label, forward_s in intervals:
                rates[label] = _with_server(
                    folder,
                    functools.partial(
                        _round,
                        folder,
                        script,
                        ranks,
                        hosts,
                        args.seconds,
                        True,
                        forward_s=forward_s,
                    ),
                )
                print(
                    f"  server, forwarding every {label}: {rates[label]:.2f} requests/s for "
                    f"the whole job ({rates[label] / ranks:.3f} per rank)"
                )
            figures[name] = {
                "cpu_per_rank": per_rank, "cpu_per_host": per_host,
                "store_samples_per_s": [rank_rate, host_rate], "server_requests_per_s": rates,
            }  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0 if all(verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
