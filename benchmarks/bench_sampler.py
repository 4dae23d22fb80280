"""Sampler overhead, start/stop latency and import time, with CodeCarbon beside them.

    python benchmarks/bench_sampler.py [--seconds 30] [--codecarbon-python PATH]

Prints, in one run on this machine:

* CPU seconds the sampler costs per wall second at 1 s and 0.1 s intervals,
  as a percentage of one core (aim: <= 0.05 % at 1 s, <= 0.5 % at 0.1 s);
  each against a baseline of the same idle wait without a tracker;
* start + stop of an empty tracked block, cold (a fresh process, import
  included and excluded) and warm (median of 200 in one process), with the
  run stored in a SQLite file as in normal use; aims: cold <= 100 ms, warm <= 5 ms;
* ``import carbon_jupyter`` in a fresh process (aim <= 150 ms), and whether it
  pulled in bokeh or pynvml (it must not);
* the same CPU share over the first ``--seconds`` of a run in a fresh process
  (one-off work included), median with min and max of three processes;
* CodeCarbon's OfflineEmissionsTracker start + stop, cold and warm, when a
  Python with codecarbon installed is given (``--codecarbon-python``), and the
  ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

COLD_SCRIPT = r"""
import json, time
t0 = time.perf_counter()
import carbon_jupyter as cj
t1 = time.perf_counter()
tracker = cj.Tracker("empty")
tracker.start()
tracker.stop()
t2 = time.perf_counter()
print(json.dumps({"with_import_s": t2 - t0, "without_import_s": t2 - t1}))
"""

IMPORT_SCRIPT = r"""
import json, sys, time
t0 = time.perf_counter()
import carbon_jupyter
t1 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "bokeh": "bokeh" in sys.modules,
                  "pynvml": "pynvml" in sys.modules}))
"""

CODECARBON_SCRIPT = r"""
import json, logging, statistics, time
logging.disable(logging.CRITICAL)
t0 = time.perf_counter()
from codecarbon import OfflineEmissionsTracker
t1 = time.perf_counter()
tracker = OfflineEmissionsTracker(country_iso_code="DEU", save_to_file=False,
                                  log_level="critical")
tracker.start()
tracker.stop()
t2 = time.perf_counter()
warm = []
for _ in range(__WARM__):
    s = time.perf_counter()
    tracker = OfflineEmissionsTracker(country_iso_code="DEU", save_to_file=False,
                                      log_level="critical")
    tracker.start()
    tracker.stop()
    warm.append(time.perf_counter() - s)
print(json.dumps({"with_import_s": t2 - t0, "without_import_s": t2 - t1,
                  "warm_s": statistics.median(warm)}))
"""


def fresh(python: str, script: str, env: dict[str, str]) -> dict[str, float]:
    out = subprocess.run(
        [python, "-c", script], capture_output=True, text=True, env=env, check=True
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def best_of(python: str, script: str, env: dict[str, str], n: int = 5) -> dict[str, float]:
    runs = [fresh(python, script, env) for _ in range(n)]
    return {
        k: min(r[k] for r in runs) if isinstance(runs[0][k], float) else runs[0][k] for k in runs[0]
    }


def cpu_overhead(interval_s: float, seconds: float) -> tuple[float, float]:
    """CPU seconds per wall second with a live tracker, and without (baseline)."""
    import carbon_jupyter as cj

    def idle(tracked: bool) -> float:
        tracker = cj.Tracker("overhead", interval=interval_s) if tracked else None
        if tracker is not None:
            tracker.start()
        c0, w0 = time.process_time(), time.perf_counter()
        time.sleep(seconds)
        c1, w1 = time.process_time(), time.perf_counter()
        if tracker is not None:
            tracker.stop()
        return (c1 - c0) / (w1 - w0)

    return idle(True), idle(False)


COLD_OVERHEAD_SCRIPT = r"""
import json, sys, time
import carbon_jupyter as cj
tracker = cj.Tracker("cold overhead", interval=1.0).start()
c0, w0 = time.process_time(), time.perf_counter()
time.sleep(float(sys.argv[1]))
c1, w1 = time.process_time(), time.perf_counter()
tracker.stop()
print(json.dumps({"share": (c1 - c0) / (w1 - w0)}))
"""


def cold_overhead(seconds: float, env: dict[str, str], n: int = 3) -> list[float]:
    """CPU share of the first ``seconds`` of a run in ``n`` fresh processes (one-off work in)."""
    shares = []
    for _ in range(n):
        out = subprocess.run(
            [sys.executable, "-c", COLD_OVERHEAD_SCRIPT, str(seconds)],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        ).stdout
        shares.append(float(json.loads(out.strip().splitlines()[-1])["share"]))
    return shares


def warm_start_stop(n: int = 200) -> float:
    import carbon_jupyter as cj

    cj.Tracker("warm-up").start().stop()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        cj.Tracker("empty").start().stop()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--codecarbon-python", default=None)
    args = parser.parse_args()

    # Cold starts read bytecode as an installed package would (pip compiles on install),
    # also where PYTHONDONTWRITEBYTECODE is set.
    import carbon_jupyter

    package_dir = os.path.dirname(carbon_jupyter.__file__)
    subprocess.run([sys.executable, "-m", "compileall", "-q", package_dir], check=True)

    tmp = tempfile.mkdtemp(prefix="carbon-bench-")
    os.environ["CARBON_JUPYTER_DB"] = os.path.join(tmp, "carbon.db")
    env = dict(os.environ)
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")

    imp = best_of(sys.executable, IMPORT_SCRIPT, env)
    print(
        f"import carbon_jupyter: {imp['import_s'] * 1000:.1f} ms (best of 5); "
        f"bokeh imported: {imp['bokeh']}, pynvml imported: {imp['pynvml']}"
    )

    cold = best_of(sys.executable, COLD_SCRIPT, env)
    warm = warm_start_stop()
    print(
        f"carbon-jupyter start+stop: cold {cold['with_import_s'] * 1000:.1f} ms with import, "
        f"{cold['without_import_s'] * 1000:.1f} ms without (best of 5); "
        f"warm {warm * 1000:.2f} ms (median of 200)"
    )

    if args.codecarbon_python:
        cc_env = dict(env, CODECARBON_LOG_LEVEL="critical")
        cc = fresh(args.codecarbon_python, CODECARBON_SCRIPT.replace("__WARM__", "5"), cc_env)
        print(
            f"CodeCarbon OfflineEmissionsTracker start+stop: cold "
            f"{cc['with_import_s'] * 1000:.0f} ms with import, "
            f"{cc['without_import_s'] * 1000:.0f} ms without; warm {cc['warm_s'] * 1000:.0f} ms"
        )
        print(
            f"ratios CodeCarbon / carbon-jupyter: cold with import "
            f"{cc['with_import_s'] / cold['with_import_s']:.0f}x, cold without import "
            f"{cc['without_import_s'] / cold['without_import_s']:.0f}x, "
            f"warm {cc['warm_s'] / warm:.0f}x"
        )

    for interval in (1.0, 0.1):
        tracked, baseline = cpu_overhead(interval, args.seconds)
        print(
            f"sampler at {interval:g} s over {args.seconds:g} s: "
            f"{(tracked - baseline) * 100:.4f} % of one core "
            f"(tracked {tracked * 100:.4f} %, idle baseline {baseline * 100:.4f} %)"
            f"  aim <= {0.05 if interval == 1.0 else 0.5} %"
        )
    cold = cold_overhead(args.seconds, env)
    print(
        f"sampler at 1 s, the first {args.seconds:g} s of a fresh process (3 processes): "
        f"median {statistics.median(cold) * 100:.4f} % of one core "
        f"(min {min(cold) * 100:.4f}, max {max(cold) * 100:.4f})  aim <= 0.05 %"
    )


if __name__ == "__main__":
    main()
