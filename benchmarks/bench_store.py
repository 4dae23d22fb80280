"""How fast the run store writes and reads, on this machine.

    python benchmarks/bench_store.py [--runs 10000] [--keep]

Prints three figures against their aims:

* batched sample inserts per second (``Store.add_samples``, one transaction a
  batch) - aim >= 100,000/s;
* listing the latest 50 of 10,000 runs (``Store.runs(limit=50)``, devices
  included) - aim <= 20 ms;
* reading the 3,600 samples of a one-hour run at 1 s (``Store.samples``) -
  aim <= 10 ms.

The store is a fresh file in a temporary folder (WAL mode, as in use).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from carbon_jupyter.model import DeviceEnergy, DeviceInfo, Intensity, Run, Sample
from carbon_jupyter.store import Store, open_store

GPU = DeviceInfo("gpu:0", "gpu", "NVIDIA H100 80GB HBM3", "nvml-energy")
CPU = DeviceInfo("cpu:0", "cpu", "AMD EPYC 9654", "rapl")
RAM = DeviceInfo("ram", "ram", "RAM 512 GB", "ram-model")
START = datetime(2023, 1, 1, tzinfo=timezone.utc)
INTENSITY = Intensity(380.0, "ember", 2023, 1.2, "default", "default", "DEU")


def make_run(n: int, status: str = "ok") -> Run:
    energy = {"gpu": 3000.0 + n, "cpu": 800.0, "ram": 100.0}
    return Run(
        id=str(uuid.uuid4()),
        label=f"label-{n % 20}",
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


def best_ms(fn: Callable[[], object], repeat: int = 30) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return min(times), statistics.median(times)


def bench_inserts(store: Store) -> None:
    for batch in (10, 100, 1000, 10000):
        run = make_run(0, status="running")
        store.begin_run(run)
        total = max(batch * 20, 20000)
        start = time.perf_counter()
        for first in range(1, total + 1, batch):
            store.add_samples(run.id, ticks(first, batch))
        elapsed = time.perf_counter() - start
        rate = total / elapsed
        aim = "  (aim >= 100,000/s)" if batch >= 1000 else ""
        print(f"  batches of {batch:>5}: {rate:>11,.0f} samples/s{aim}")


def fill_runs(store: Store, count: int) -> None:
    start = time.perf_counter()
    for n in range(count):
        store.finish_run(make_run(n))
    elapsed = time.perf_counter() - start
    print(f"  stored {count:,} finished runs in {elapsed:.1f} s ({count / elapsed:,.0f} runs/s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--keep", action="store_true", help="keep the database file")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="carbon-bench-"))
    store = open_store(folder / "carbon.db")
    print(f"store: {store.path}")

    print("batched sample inserts (Store.add_samples, one transaction a batch):")
    bench_inserts(store)

    print(f"listing the latest 50 of {args.runs:,} runs:")
    fill_runs(store, args.runs)
    best, median = best_ms(lambda: store.runs(limit=50))
    print(f"  runs(limit=50): best {best:.2f} ms, median {median:.2f} ms  (aim <= 20 ms)")
    best, median = best_ms(lambda: store.runs(label="label-3", limit=50))
    print(f"  runs(label=..., limit=50): best {best:.2f} ms, median {median:.2f} ms")

    print("reading the samples of a one-hour run at 1 s:")
    for devices in (1, 3):
        run = make_run(0, status="running")
        store.begin_run(run)
        for first in range(1, 3601, 60):
            store.add_samples(run.id, ticks(first, 60, devices))
        best, median = best_ms(lambda run_id=run.id: store.samples(run_id))  # type: ignore[misc]
        aim = "  (aim <= 10 ms)" if devices == 1 else ""
        print(
            f"  {3600 * devices:,} samples ({devices} device{'s' * (devices > 1)}): "
            f"best {best:.2f} ms, median {median:.2f} ms{aim}"
        )
    best, median = best_ms(lambda: store.samples(run.id, since_seq=3600 * 3 - 3))
    print(f"  the newest tick after a cursor: best {best:.3f} ms, median {median:.3f} ms")
    store.close()
    if not args.keep:
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()


if __name__ == "__main__":
    main()
