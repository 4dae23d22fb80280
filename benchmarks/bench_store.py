"""How fast the run store writes and reads, on this machine, at 1k, 10k and 100k runs.

    python benchmarks/bench_store.py [--sizes 1000,10000,100000] [--repeat 15]
                                     [--cold 15] [--codecarbon-python PATH] [--quick]

Every figure is the median over repeats, with the min and max beside it, and
each is checked against its aim (at the largest size for reads), with a verdict:

* cold start, first (on a machine still quiet): ``open_store()`` on a new file
  (the schema created) in a fresh process, N times; aim <= 50 ms, the imports
  shown beside it (the standard library's, then carbon_jupyter.store's own), and
  whether pandas or sqlite-utils was imported (neither may be). Paired in the
  same run, process by process, with CodeCarbon's cold start:
  ``OfflineEmissionsTracker`` start + stop writing its emissions.csv into a new
  folder, with the Python at ``--codecarbon-python`` (by default this Python,
  when it has codecarbon);
* writes: batched sample inserts per second (``Store.add_samples``, one
  transaction a batch; aim >= 100,000/s), finishing a run (``finish_run``, its
  totals kept in the same transaction) and reading the 3,600 samples of a
  one-hour run (aim <= 10 ms);
* reads, on stores of 1k, 10k and 100k runs spread over the past year (built
  with ``executemany`` in one transaction; the store's triggers keep the totals
  as they do for runs written one by one): the latest 50 runs (aim: stay
  <= 2 ms), a wildcard label that half the runs match and one that 1 in 1,000
  match (aim <= 5 ms), a wildcard nothing matches and that has no literal start
  (the worst case: every index entry read; no aim), totals by day, by label and
  by label over 90 days (aim <= 10 ms), and streaming the runs of the common
  wildcard (50k at 100k runs): the first run (aim <= 50 ms) and all of them.

Stores live in a temporary folder (WAL mode, as in use) and are removed after.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from carbon_jupyter.model import DeviceEnergy, DeviceInfo, Intensity, Run, Sample
from carbon_jupyter.store import Store, open_store
from carbon_jupyter.store.rows import ALL_RUN_COLUMNS, DEVICE_COLUMNS

ROOT = Path(__file__).resolve().parents[1]
GPU = DeviceInfo("gpu:0", "gpu", "NVIDIA H100 80GB HBM3", "nvml-energy")
CPU = DeviceInfo("cpu:0", "cpu", "AMD EPYC 9654", "rapl")
RAM = DeviceInfo("ram", "ram", "RAM 512 GB", "ram-model")
START = datetime(2024, 1, 1, tzinfo=timezone.utc)
INTENSITY = Intensity(380.0, "ember", 2023, 1.2, "default", "default", "DEU")
YEAR_S = 365 * 86400

COMMON, RARE, NONE = "fine-*", "sweep-*", "*-none"
#: (name, aim in ms or None, what the aim is) of each query, in the order printed.
QUERIES: tuple[tuple[str, float | None, str], ...] = (
    ("runs(limit=50)", 2.0, "stay <= 2 ms (1.1 ms before)"),
    (f'runs(label="{COMMON}", limit=50)  [1 in 2]', 5.0, "<= 5 ms"),
    (f'runs(label="{RARE}", limit=50)  [1 in 1000]', 5.0, "<= 5 ms"),
    (f'runs(label="{NONE}", limit=50)  [none]', None, "none: the worst case, every entry read"),
    ('totals(by="day")', 10.0, "<= 10 ms"),
    ('totals(by="label")', 10.0, "<= 10 ms"),
    ('totals(by="label", since="90d")', 10.0, "<= 10 ms"),
    (f'iter_runs(label="{COMMON}"): first run', 50.0, "<= 50 ms"),
    (f'iter_runs(label="{COMMON}"): every run', None, "streams (2.4 s for 50k as a list before)"),
)

COLD_SCRIPT = r"""
import time
t0 = time.perf_counter()
import collections, contextlib, csv, dataclasses, datetime, functools, itertools, json, os
import pathlib, platform, re, shutil, socket, sqlite3, sys, tempfile, threading, typing, uuid
t1 = time.perf_counter()
from carbon_jupyter.store import open_store
t2 = time.perf_counter()
store = open_store(sys.argv[1])
t3 = time.perf_counter()
store.close()
print(json.dumps({"with_import_s": t3 - t0, "stdlib_s": t1 - t0, "package_s": t2 - t1,
                  "open_s": t3 - t2, "pandas": "pandas" in sys.modules,
                  "sqlite_utils": "sqlite_utils" in sys.modules}))
"""

CODECARBON_SCRIPT = r"""
import json, logging, sys, time
logging.disable(logging.CRITICAL)
t0 = time.perf_counter()
from codecarbon import OfflineEmissionsTracker
t1 = time.perf_counter()
tracker = OfflineEmissionsTracker(country_iso_code="DEU", output_dir=sys.argv[1],
                                  save_to_file=True, log_level="critical")
tracker.start()
tracker.stop()
t2 = time.perf_counter()
print(json.dumps({"with_import_s": t2 - t0, "open_s": t2 - t1}))
"""


# -- figures ------------------------------------------------------------------------------
class Figure:
    """Times of one measurement in ms: median, min and max."""

    def __init__(self, times_ms: list[float]) -> None:
        self.times_ms = times_ms
        self.median = statistics.median(times_ms)

    def __str__(self) -> str:
        lo, hi = min(self.times_ms), max(self.times_ms)
        return f"{_ms(self.median)} ({_ms(lo)}-{_ms(hi)})"


def _ms(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.2f}" if value < 10 else f"{value:.1f}"


def timed(fn: Callable[[], object], repeat: int) -> Figure:
    fn()  # warm: the page cache and the statement cache, as in a session
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return Figure(times)


def verdict(value_ms: float, aim_ms: float | None) -> str:
    if aim_ms is None:
        return ""
    return "PASS" if value_ms <= aim_ms else "MISS"


# -- building stores ----------------------------------------------------------------------
def label_of(n: int) -> str:
    if n % 1000 == 999:
        return f"sweep-{n // 1000}"
    return f"fine-tune-{n % 10}" if n % 2 == 0 else f"eval-{n % 10}"


def bulk_rows(count: int) -> Iterable[tuple[tuple[object, ...], list[tuple[object, ...]]]]:
    """Rows of ``count`` finished runs over a year ending now, each with three devices."""
    first = datetime.now(timezone.utc) - timedelta(seconds=YEAR_S)
    statuses = ("ok",) * 17 + ("error", "interrupted", "lost")
    for n in range(count):
        run_id = str(uuid.UUID(int=(n * 0x9E3779B97F4A7C15) % 2**128))
        energy = {"gpu": 3000.0 + n % 977, "cpu": 800.0 + n % 13, "ram": 100.0}
        total = sum(energy.values())
        row = dict.fromkeys(ALL_RUN_COLUMNS)
        row.update(
            id=run_id, label=label_of(n), phase="train" if n % 2 == 0 else "inference",
            items=64, status=statuses[n % 20], duration_s=10.0 + n % 50,
            started_at=(first + timedelta(seconds=YEAR_S * n / count)).isoformat(
                timespec="milliseconds"),
            attribution="device", energy_j=total, cpu_energy_j=energy["cpu"],
            gpu_energy_j=energy["gpu"], ram_energy_j=energy["ram"],
            co2_g=total / 3.6e6 * 1.2 * 380.0, intensity_g_per_kwh=380.0,
            intensity_source="ember", intensity_year=2023, intensity_key="DEU",
            intensity_chosen_by="default", pue=1.2, pue_source="default",
            notebook=f"/home/ada/nb-{n % 7}.ipynb", kernel=f"kernel-{n // 40}",
            user="ada", host="lab-1", tags=json.dumps({"execution_count": str(n % 90)}),
            warnings="[]", origin="carbon-jupyter", updated_at=START.isoformat(),
        )  # fmt: skip
        devices: list[tuple[object, ...]] = [
            (run_id, d.device_id, position, d.kind, d.name, d.method, None, None, "",
             energy[d.kind], None, energy[d.kind] / 10.0, None)
            for position, d in enumerate((GPU, CPU, RAM))
        ]  # fmt: skip
        yield tuple(row[c] for c in ALL_RUN_COLUMNS), devices


def build_store(path: Path, count: int) -> float:
    """A store of ``count`` runs at ``path``; returns the seconds it took."""
    start = time.perf_counter()
    open_store(path).close()  # the schema, as a user's first run makes it
    conn = sqlite3.connect(path, isolation_level=None)
    run_sql = (
        f"INSERT INTO runs ({', '.join(ALL_RUN_COLUMNS)}) "
        f"VALUES ({', '.join('?' for _ in ALL_RUN_COLUMNS)})"
    )
    device_sql = (
        f"INSERT INTO devices ({', '.join(DEVICE_COLUMNS)}) "
        f"VALUES ({', '.join('?' for _ in DEVICE_COLUMNS)})"
    )
    rows = list(bulk_rows(count))
    conn.execute("BEGIN")
    conn.executemany(run_sql, (run for run, _ in rows))
    conn.executemany(device_sql, (d for _, devices in rows for d in devices))
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return time.perf_counter() - start


# -- writes -------------------------------------------------------------------------------
def make_run(n: int, status: str = "ok") -> Run:
    energy = {"gpu": 3000.0 + n, "cpu": 800.0, "ram": 100.0}
    return Run(
        id=str(uuid.uuid4()),
        label=label_of(n),
        phase="train",
        items=64,
        status=status,  # type: ignore[arg-type]
        started_at=(START + timedelta(hours=n)).isoformat(timespec="milliseconds"),
        ended_at=None,
        duration_s=10.0,
        attribution="device",
        devices=tuple(DeviceEnergy(d, energy[d.kind]) for d in (GPU, CPU, RAM)),
        intensity=INTENSITY,
        energy_j=sum(energy.values()),
        cpu_energy_j=energy["cpu"],
        gpu_energy_j=energy["gpu"],
        ram_energy_j=energy["ram"],
        co2_g=sum(energy.values()) / 3.6e6 * 1.2 * 380.0,
        tags={"execution_count": str(n)},
        notebook=f"/home/ada/nb-{n % 7}.ipynb",
    )


def ticks(first: int, count: int, devices: int = 1) -> list[Sample]:
    names = ("gpu:0", "cpu:0", "ram")[:devices]
    return [
        Sample(float(t), name, 300.0, 300.0 * t, 90.0, 2**34)
        for t in range(first, first + count)
        for name in names
    ]


def bench_writes(store: Store, quick: bool) -> None:
    print("writes (one store):")
    for batch in (100, 1000) if quick else (10, 100, 1000, 10000):
        run = make_run(0, status="running")
        store.begin_run(run)
        total = max(batch * 20, 20000)
        start = time.perf_counter()
        for first in range(1, total + 1, batch):
            store.add_samples(run.id, ticks(first, batch))
        rate = total / (time.perf_counter() - start)
        aim = (
            f"  aim >= 100,000/s: {'PASS' if rate >= 100_000 else 'MISS'}" if batch >= 1000 else ""
        )
        print(f"  add_samples, batches of {batch:>5}: {rate:>11,.0f} samples/s{aim}")
    times = []
    for n in range(200 if quick else 1000):
        run = make_run(n)
        start = time.perf_counter()
        store.finish_run(run)
        times.append((time.perf_counter() - start) * 1000)
    print(f"  finish_run (totals kept in the same transaction): {Figure(times)} ms per run")
    run = make_run(0, status="running")
    store.begin_run(run)
    for first in range(1, 3601, 60):
        store.add_samples(run.id, ticks(first, 60))
    figure = timed(lambda: store.samples(run.id), 15)
    print(
        f"  samples() of a one-hour run (3,600 samples): {figure} ms  aim <= 10 ms: "
        f"{verdict(figure.median, 10.0)}"
    )


# -- reads --------------------------------------------------------------------------------
def first_run(store: Store, label: str) -> None:
    runs = store.iter_runs(label=label)
    next(runs)
    runs.close()


def bench_reads(store: Store, repeat: int, repeat_all: int) -> dict[str, Figure]:
    measures: dict[str, tuple[Callable[[], object], int]] = {
        QUERIES[0][0]: (lambda: store.runs(limit=50), repeat),
        QUERIES[1][0]: (lambda: store.runs(label=COMMON, limit=50), repeat),
        QUERIES[2][0]: (lambda: store.runs(label=RARE, limit=50), repeat),
        QUERIES[3][0]: (lambda: store.runs(label=NONE, limit=50), repeat),
        QUERIES[4][0]: (lambda: store.totals(by="day"), repeat),
        QUERIES[5][0]: (lambda: store.totals(by="label"), repeat),
        QUERIES[6][0]: (lambda: store.totals(by="label", since="90d"), repeat),
        QUERIES[7][0]: (lambda: first_run(store, COMMON), repeat),
        QUERIES[8][0]: (lambda: sum(1 for _ in store.iter_runs(label=COMMON)), repeat_all),
    }
    return {name: timed(fn, times) for name, (fn, times) in measures.items()}


def print_reads(sizes: list[int], figures: dict[int, dict[str, Figure]]) -> None:
    largest = sizes[-1]
    print(f"reads: median (min-max) in ms; verdict at {largest:,} runs")
    width = max(len(name) for name, _, _ in QUERIES)
    header = "".join(f"{f'{size:,} runs':>24}" for size in sizes)
    print(f"  {'':<{width}}{header}")
    for name, aim, what in QUERIES:
        cells = "".join(f"{figures[size][name]!s:>24}" for size in sizes)
        judged = verdict(figures[largest][name].median, aim)
        print(f"  {name:<{width}}{cells}   aim {what}{': ' + judged if judged else ''}")


# -- cold start ---------------------------------------------------------------------------
def fresh(python: str, script: str, arg: str, env: dict[str, str]) -> dict[str, float]:
    out = subprocess.run(
        [python, "-c", script, arg], capture_output=True, text=True, env=env, check=True
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def codecarbon_python(given: str | None) -> str | None:
    if given:
        return given
    return sys.executable if importlib.util.find_spec("codecarbon") is not None else None


def bench_cold(folder: Path, times: int, cc_python: str | None) -> None:
    import carbon_jupyter

    # Read bytecode as an installed package would (pip compiles on install).
    package_dir = os.path.dirname(carbon_jupyter.__file__)
    subprocess.run([sys.executable, "-m", "compileall", "-q", package_dir], check=True)
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    )
    cc_env = dict(env, CODECARBON_LOG_LEVEL="critical")
    ours: list[dict[str, float]] = []
    theirs: list[dict[str, float]] = []
    for n in range(times):  # alternate, so that both see the same machine
        ours.append(fresh(sys.executable, COLD_SCRIPT, str(folder / f"cold-{n}.db"), env))
        if cc_python:
            out = folder / f"codecarbon-{n}"
            out.mkdir()
            theirs.append(fresh(cc_python, CODECARBON_SCRIPT, str(out), cc_env))
    print(f"cold start, a fresh process each, median (min-max) of {times}:")
    opened = Figure([r["open_s"] * 1000 for r in ours])
    whole = Figure([r["with_import_s"] * 1000 for r in ours])
    stdlib = Figure([r["stdlib_s"] * 1000 for r in ours])
    package = Figure([r["package_s"] * 1000 for r in ours])
    heavy = [name for name in ("pandas", "sqlite_utils") if any(r[name] for r in ours)]
    print(
        f"  carbon-jupyter, open_store() on a new file: {opened} ms  aim <= 50 ms: "
        f"{verdict(opened.median, 50.0)}"
    )
    print(
        f"  with the imports: {whole} ms = the standard library's {stdlib} ms "
        f"+ carbon_jupyter.store's own {package} ms + the store"
    )
    imported = ", ".join(heavy) if heavy else "neither pandas nor sqlite-utils"
    print(f"  imported while opening: {imported}")
    if not cc_python:
        print("  CodeCarbon: not measured (no codecarbon here; give --codecarbon-python)")
        return
    cc_open = Figure([r["open_s"] * 1000 for r in theirs])
    cc_whole = Figure([r["with_import_s"] * 1000 for r in theirs])
    print(
        f"  CodeCarbon, OfflineEmissionsTracker start + stop to a new emissions.csv: {cc_open} ms; "
        f"with `from codecarbon import ...` {cc_whole} ms"
    )
    print(
        f"  ratio of medians CodeCarbon / carbon-jupyter: {cc_open.median / opened.median:.0f}x, "
        f"with imports {cc_whole.median / whole.median:.1f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="runs per store, by commas")
    parser.add_argument("--repeat", type=int, default=15, help="times each query is timed")
    parser.add_argument("--repeat-all", type=int, default=3, help="times for every run streamed")
    parser.add_argument("--cold", type=int, default=15, help="fresh processes for the cold start")
    parser.add_argument("--codecarbon-python", default=None)
    parser.add_argument("--quick", action="store_true", help="small sizes and few repeats")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.repeat, args.repeat_all, args.cold = "1000,10000", 5, 1, 5
    sizes = sorted(int(s) for s in args.sizes.split(","))
    folder = Path(tempfile.mkdtemp(prefix="carbon-bench-store-"))
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
          f"SQLite {sqlite3.sqlite_version}; stores in {folder}")  # fmt: skip
    try:
        bench_cold(folder, args.cold, codecarbon_python(args.codecarbon_python))
        store = open_store(folder / "writes.db")
        bench_writes(store, args.quick)
        store.close()
        figures: dict[int, dict[str, Figure]] = {}
        for size in sizes:
            path = folder / f"runs-{size}.db"
            took = build_store(path, size)
            print(f"built a store of {size:,} runs in {took:.1f} s")
            store = open_store(path)
            figures[size] = bench_reads(store, args.repeat, args.repeat_all)
            store.close()
            for leftover in folder.glob(f"runs-{size}.db*"):
                leftover.unlink()
        print_reads(sizes, figures)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
