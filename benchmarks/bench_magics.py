"""What ``%%carbon`` adds to a cell: an empty cell with and without the magic, warm.

    python benchmarks/bench_magics.py [--repeat 200] [--json PATH]

Runs in one real IPython ``InteractiveShell`` with the extension loaded and
the run store active in a temporary SQLite file (each tracked cell is stored,
as in normal use). After a warm-up, it times ``pass`` and
``%%carbon --no-plot`` over ``pass`` alternately, ``--repeat`` times each,
and prints the medians, the 90th percentiles, the time added and the ratio.
``%%carbon --quiet`` (nothing shown, the run still stored) is timed the same
way. Aim: the added median <= 5 ms.

The summary each tracked cell prints is swallowed, so the terminal is not
part of the figure.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

AIM_ADDED_MS = 5.0
PLAIN = "pass"
TRACKED = "%%carbon --no-plot\npass"
QUIET = "%%carbon --quiet\npass"


def _timer(shell: object, code: str) -> Callable[[], float]:
    run_cell = shell.run_cell  # type: ignore[attr-defined]

    def once() -> float:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            started = time.perf_counter()
            result = run_cell(code)
            elapsed = time.perf_counter() - started
        if not result.success:
            raise SystemExit(f"the cell {code!r} failed: {result.error_in_exec!r}")
        return elapsed

    return once


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def measure(repeat: int, warmup: int = 20) -> dict[str, object]:
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "carbon_jupyter")
    timers = {name: _timer(shell, code) for name, code in (
        ("plain", PLAIN), ("no_plot", TRACKED), ("quiet", QUIET)
    )}  # fmt: skip
    for _ in range(warmup):
        for once in timers.values():
            once()
    times: dict[str, list[float]] = {name: [] for name in timers}
    for _ in range(repeat):  # alternate, so drift hits every variant alike
        for name, once in timers.items():
            times[name].append(once())
    from carbon_jupyter.store import open_store

    stored = len(open_store().runs(limit=None))
    shell.run_line_magic("unload_ext", "carbon_jupyter")
    result: dict[str, object] = {"repeat": repeat, "runs_stored": stored}
    for name, values in times.items():
        result[f"{name}_median_ms"] = statistics.median(values) * 1000
        result[f"{name}_p90_ms"] = _percentile(values, 0.9) * 1000
    plain_ms = float(result["plain_median_ms"])  # type: ignore[arg-type]
    for name in ("no_plot", "quiet"):
        median_ms = float(result[f"{name}_median_ms"])  # type: ignore[arg-type]
        result[f"{name}_added_ms"] = median_ms - plain_ms
        result[f"{name}_ratio"] = median_ms / plain_ms if plain_ms > 0 else float("inf")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200, help="timed cells of each kind")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        for name in [n for n in os.environ if n.startswith("CARBON_JUPYTER_")]:
            del os.environ[name]
        os.environ["CARBON_JUPYTER_DB"] = str(Path(folder) / "carbon.db")
        result = measure(args.repeat)
    python = sys.version.split()[0]
    print(f"%%carbon overhead, warm, median of {args.repeat} each (Python {python})")
    print(f"  empty cell                 {result['plain_median_ms']:8.3f} ms"
          f"  (p90 {result['plain_p90_ms']:.3f} ms)")  # fmt: skip
    for name, title in (("no_plot", "%%carbon --no-plot"), ("quiet", "%%carbon --quiet")):
        added = float(result[f"{name}_added_ms"])  # type: ignore[arg-type]
        verdict = "ok" if added <= AIM_ADDED_MS else f"over the {AIM_ADDED_MS:g} ms aim"
        print(
            f"  {title:<26} {result[f'{name}_median_ms']:8.3f} ms  (p90 "
            f"{result[f'{name}_p90_ms']:.3f} ms)  added {added:.3f} ms, "
            f"ratio {result[f'{name}_ratio']:.1f}x  [{verdict}]"
        )
    print(f"  runs stored in the temporary store: {result['runs_stored']}")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
