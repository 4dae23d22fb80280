"""What ``%%carbon`` adds to a cell, with and without its plot, and what it leaves on other cells.

    python benchmarks/bench_magics.py [--repeat 200] [--plot-repeat 60] [--first 3] [--json PATH]

Everything runs in real IPython ``InteractiveShell``s with the extension loaded
and the run store in a temporary SQLite file (each tracked cell is stored, as
in normal use). Printed, each with its median, min and max, an aim and a verdict:

1. **Overhead, warm**: ``pass`` against ``%%carbon --no-plot`` and ``%%carbon
   --quiet`` over ``pass``, alternately, ``--repeat`` times each. Aim: the
   added median <= 5 ms.
2. **The plot path, warm**: ``%%carbon`` with its live plot, as a JupyterLab
   kernel shows it (the ``jupyter_bokeh`` widget, then the static plot and
   summary), ``--plot-repeat`` times, alternating with the same code in a
   plain cell. The cell's code stamps the clock when it starts and when it
   ends, so the time the tool adds is split into *before* the code (parsing,
   the live plot, starting the tracker) and *after* it (stopping, the static
   plot). Aims: <= 20 ms before and <= 20 ms after.
3. **The measured window**: a run's stored duration minus the time its code
   took, from the same cells. Aim: <= 5 ms (the run measures the code only).
4. **The first plotted cell** of a process (Bokeh imported, BokehJS sent, the
   figure built), in ``--first`` fresh interpreters: before, after and the
   window. Aim for the window only: <= 30 ms.
5. **Plain cells after tracked ones**: what runs on a ``pass`` cell before any
   tracked cell and after many (the Python calls made, counted, and our cell
   hooks registered; aims: the same calls, no hooks), and its time: right
   after a plotted cell against right after a plain cell that computed for a
   few milliseconds (any busy cell leaves the CPU's caches cold for the next),
   and later against before any tracked cell (medians from different moments:
   noisy on a busy machine; aim <= 0.05 ms added).

The shell stands in for a kernel: a display publisher and widget comms that
encode every message as JSON, as ipykernel does before sending it (the
sending itself is not timed), and a kernel object giving each cell an id.
The summary each tracked cell prints is swallowed, so the terminal is not
part of the figures. Figures from a busy machine are noisy: compare medians
on a quiet one.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

AIM_ADDED_MS = 5.0
AIM_BEFORE_MS = 20.0
AIM_AFTER_MS = 20.0
AIM_WINDOW_MS = 5.0
AIM_FIRST_WINDOW_MS = 30.0
AIM_PLAIN_ADDED_MS = 0.05
PLAIN = "pass"
TRACKED = "%%carbon --no-plot\npass"
QUIET = "%%carbon --quiet\npass"
# The code stamps the clock as it starts and ends: what lies outside is the tool's.
STAMPED = "_bench_t[0] = _bench_clock()\npass\n_bench_t[1] = _bench_clock()"
PLOTTED = "%%carbon bench --interval 0.5\n" + STAMPED
BUSY = "_bench_busy = sum(range(200_000))"


# -- a shell that stands in for a kernel --------------------------------------------------
class _Kernel:
    """What ipykernel offers the shell: the request running now, with a cell id."""

    def __init__(self) -> None:
        self.requests = itertools.count()
        self.parent: dict[str, Any] = {}

    def next_cell(self) -> None:
        n = next(self.requests)
        self.parent = {"header": {"msg_id": f"m{n}"}, "metadata": {"cellId": f"c{n}"}}

    def get_parent(self, channel: str = "shell") -> dict[str, Any]:
        return self.parent


def _kernel_like(shell: Any) -> _Kernel:
    """Make ``shell`` look like a kernel's: JSON-encoded outputs and comms, a kernel object."""
    import comm
    from comm.base_comm import BaseComm
    from IPython.core.displaypub import DisplayPublisher

    class EncodingPublisher(DisplayPublisher):  # type: ignore[misc]
        def publish(self, data: Any, metadata: Any = None, *args: Any, **kwargs: Any) -> None:
            json.dumps({"data": data, "metadata": metadata or {}, **kwargs})

    class EncodingComm(BaseComm):  # type: ignore[misc]
        def publish_msg(self, msg_type: str, data: Any = None, *args: Any, **kwargs: Any) -> None:
            json.dumps({"msg_type": msg_type, "data": data or {}})

    shell.display_pub = EncodingPublisher(shell=shell)
    comm.create_comm = EncodingComm
    kernel = _Kernel()
    shell.kernel = kernel
    return kernel


@contextlib.contextmanager
def _shell(*, kernel: bool) -> Iterator[tuple[Any, _Kernel | None]]:
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    fake = _kernel_like(shell) if kernel else None
    shell.user_ns["_bench_clock"] = time.perf_counter
    shell.user_ns["_bench_t"] = [0.0, 0.0]
    shell.run_line_magic("load_ext", "carbon_jupyter")
    try:
        yield shell, fake
    finally:
        shell.run_line_magic("unload_ext", "carbon_jupyter")
        InteractiveShell.clear_instance()


def _runner(shell: Any, kernel: _Kernel | None) -> Callable[[str], dict[str, float]]:
    """Run one cell; its total time and, for stamped code, the time before and after the code."""
    run_cell = shell.run_cell
    stamps = shell.user_ns["_bench_t"]

    def run(code: str) -> dict[str, float]:
        if kernel is not None:
            kernel.next_cell()
        stamps[0] = stamps[1] = 0.0
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            started = time.perf_counter()
            result = run_cell(code)
            ended = time.perf_counter()
        if not result.success:
            raise SystemExit(f"the cell {code!r} failed: {result.error_in_exec!r}")
        times = {"total": ended - started}
        if stamps[0]:
            times.update(before=stamps[0] - started, after=ended - stamps[1])
            times["code"] = stamps[1] - stamps[0]
        return times

    return run


def _last_duration(shell: Any) -> float:
    return float(shell.magics_manager.registry["CarbonMagics"].last_run.duration_s)


def _stats(values: list[float], scale: float = 1000.0) -> dict[str, float]:
    return {
        "median": statistics.median(values) * scale,
        "min": min(values) * scale,
        "max": max(values) * scale,
    }


def _calls(run: Callable[[str], dict[str, float]], cells: int = 21) -> int:
    """Python and C function calls made by a ``pass`` cell (the median of ``cells``), counted."""
    counts = []
    count = 0

    def counter(frame: Any, event: str, arg: Any) -> None:
        nonlocal count
        if event in ("call", "c_call"):
            count += 1

    run(PLAIN)
    for _ in range(cells):
        count = 0
        sys.setprofile(counter)
        try:
            run(PLAIN)
        finally:
            sys.setprofile(None)
        counts.append(count)
    return int(statistics.median(counts))


def _ours(shell: Any) -> int:
    """Cell hooks of carbon_jupyter registered on the shell."""
    return sum(
        1
        for callbacks in shell.events.callbacks.values()
        for callback in callbacks
        if (getattr(callback, "__module__", "") or "").startswith("carbon_jupyter")
    )


# -- the measurements ---------------------------------------------------------------------
def measure_overhead(repeat: int, warmup: int = 20) -> dict[str, Any]:
    """Figure 1: plain, --no-plot and --quiet cells, alternately."""
    with _shell(kernel=False) as (shell, _):
        run = _runner(shell, None)
        cells = {"plain": PLAIN, "no_plot": TRACKED, "quiet": QUIET}
        for _ in range(warmup):
            for code in cells.values():
                run(code)
        times: dict[str, list[float]] = {name: [] for name in cells}
        for _ in range(repeat):  # alternate, so drift hits every variant alike
            for name, code in cells.items():
                times[name].append(run(code)["total"])
        from carbon_jupyter.store import open_store

        stored = len(open_store().runs(limit=None))
    result: dict[str, Any] = {"runs_stored": stored}
    for name, values in times.items():
        result[name] = _stats(values)
    for name in ("no_plot", "quiet"):
        result[name]["added"] = result[name]["median"] - result["plain"]["median"]
    return result


def measure_plot_path(plot_repeat: int, repeat: int, warmup: int = 5) -> dict[str, Any]:
    """Figures 2, 3 and 5, in one kernel-like shell."""
    with _shell(kernel=True) as (shell, kernel):
        run = _runner(shell, kernel)
        for _ in range(warmup * 4):
            run(PLAIN)
        plain_fresh = [run(PLAIN)["total"] for _ in range(repeat)]
        hooks_fresh, calls_fresh = _ours(shell), _calls(run)
        for _ in range(warmup):
            run(PLOTTED)
            run(STAMPED)
        parts: dict[str, list[float]] = {"before": [], "after": [], "window": []}
        plain_parts: dict[str, list[float]] = {"before": [], "after": []}
        right_after: list[float] = []
        after_busy: list[float] = []
        for _ in range(plot_repeat):
            plotted = run(PLOTTED)
            parts["before"].append(plotted["before"])
            parts["after"].append(plotted["after"])
            parts["window"].append(_last_duration(shell) - plotted["code"])
            right_after.append(run(PLAIN)["total"])
            run(BUSY)
            after_busy.append(run(PLAIN)["total"])
            plain = run(STAMPED)
            plain_parts["before"].append(plain["before"])
            plain_parts["after"].append(plain["after"])
        later = [run(PLAIN)["total"] for _ in range(repeat)]
        hooks_after, calls_after = _ours(shell), _calls(run)
    result: dict[str, Any] = {}
    for side in ("before", "after"):
        added = [a - b for a, b in zip(parts[side], plain_parts[side], strict=True)]
        result[side] = _stats(added)
    result["window"] = _stats(parts["window"])
    result["plain_fresh"] = _stats(plain_fresh)
    result["plain_right_after"] = _stats(right_after)
    result["plain_after_busy"] = _stats(after_busy)
    result["plain_later"] = _stats(later)
    result["plain_right_after"]["added"] = (
        result["plain_right_after"]["median"] - result["plain_after_busy"]["median"]
    )
    result["plain_later"]["added"] = (
        result["plain_later"]["median"] - result["plain_fresh"]["median"]
    )
    result["hooks_before_tracking"] = hooks_fresh
    result["hooks_after_tracking"] = hooks_after
    result["calls_before_tracking"] = calls_fresh
    result["calls_after_tracking"] = calls_after
    return result


def first_cell_child() -> dict[str, float]:
    """Figure 4, in this fresh interpreter: the first and second plotted cells."""
    with _shell(kernel=True) as (shell, kernel):
        run = _runner(shell, kernel)
        first = run(PLOTTED)
        first_window = _last_duration(shell) - first["code"]
        second = run(PLOTTED)
        second_window = _last_duration(shell) - second["code"]
    return {
        "before": first["before"],
        "after": first["after"],
        "window": first_window,
        "second_before": second["before"],
        "second_after": second["after"],
        "second_window": second_window,
    }


def measure_first_cell(times: int) -> dict[str, Any]:
    """Figure 4: :func:`first_cell_child` in ``times`` fresh interpreters."""
    results = []
    for _ in range(times):
        found = subprocess.run(
            [sys.executable, __file__, "--first-cell-child"],
            capture_output=True,
            text=True,
            check=True,
            env=os.environ.copy(),
        )
        results.append(json.loads(found.stdout.strip().splitlines()[-1]))
    return {key: _stats([r[key] for r in results]) for key in results[0]}


# -- printing -----------------------------------------------------------------------------
def _line(title: str, stats: dict[str, float], aim: float | None = None, key: str = "") -> str:
    value = stats[key] if key else stats["median"]
    text = f"  {title:<34} median {value:8.3f} ms  (min {stats['min']:.3f}, max {stats['max']:.3f})"
    if aim is not None:
        verdict = "ok" if value <= aim else "OVER"
        text += f"  aim <= {aim:g} ms  [{verdict}]"
    return text


def _added(title: str, stats: dict[str, float], aim: float = AIM_PLAIN_ADDED_MS) -> str:
    value = stats["added"]
    verdict = "ok" if value <= aim else "OVER"
    return f"    {title:<34} {value:8.3f} ms  aim <= {aim:g} ms  [{verdict}]"


def report(result: dict[str, Any]) -> str:
    over, plot, first = result["overhead"], result["plot"], result["first"]
    lines = [
        f"%%carbon overhead (Python {sys.version.split()[0]}, {os.cpu_count()} CPUs;"
        f" {result['repeat']} cells each, {result['plot_repeat']} plotted, "
        f"{result['first_runs']} fresh processes); all times in ms",
        "1. overhead, warm: median cell time; 'added' against the empty cell",
        _line("empty cell", over["plain"]),
    ]
    for name, title in (("no_plot", "%%carbon --no-plot"), ("quiet", "%%carbon --quiet")):
        lines.append(_line(title, over[name]))
        lines.append(_added("added (median against median)", over[name], AIM_ADDED_MS))
    lines += [
        "2. the plot path, warm (live widget, then static plot and summary); added to a plain cell",
        _line("before the cell's code", plot["before"], AIM_BEFORE_MS),
        _line("after the cell's code", plot["after"], AIM_AFTER_MS),
        "3. the measured window: stored duration minus the code's own time",
        _line("warm plotted cells", plot["window"], AIM_WINDOW_MS),
        "4. the first plotted cell of a process (Bokeh imported, BokehJS sent, figure built)",
        _line("before the cell's code", first["before"]),
        _line("after the cell's code", first["after"]),
        _line("window minus code", first["window"], AIM_FIRST_WINDOW_MS),
        "    (the store's first write of a process is made before the window opens)",
        _line("second cell: before", first["second_before"]),
        _line("second cell: after", first["second_after"]),
        "5. plain cells (pass) after tracked ones",
        f"  Python calls per cell: {plot['calls_before_tracking']} before any tracked cell,"
        f" {plot['calls_after_tracking']} after  aim: the same  "
        f"[{'ok' if plot['calls_after_tracking'] <= plot['calls_before_tracking'] else 'OVER'}]",
        f"  cell hooks of ours registered: {plot['hooks_before_tracking']} before any tracked "
        f"cell, {plot['hooks_after_tracking']} after  aim 0  "
        f"[{'ok' if plot['hooks_after_tracking'] == 0 else 'OVER'}]",
        _line("right after a busy plain cell", plot["plain_after_busy"]),
        _line("right after a plotted cell", plot["plain_right_after"]),
        _added("added (against after a busy cell)", plot["plain_right_after"]),
        _line("before any tracked cell", plot["plain_fresh"]),
        _line("later, after tracked cells", plot["plain_later"]),
        _added("added (against before any)", plot["plain_later"]),
        f"  runs stored in the temporary store (figure 1): {over['runs_stored']}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200, help="timed cells of each plain kind")
    parser.add_argument("--plot-repeat", type=int, default=60, help="timed plotted cells")
    parser.add_argument("--first", type=int, default=3, help="fresh processes for figure 4")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--first-cell-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        for name in [n for n in os.environ if n.startswith("CARBON_JUPYTER_")]:
            del os.environ[name]
        os.environ["CARBON_JUPYTER_DB"] = str(Path(folder) / "carbon.db")
        os.environ["CARBON_JUPYTER_DISPLAY"] = "widgets"  # what a JupyterLab kernel detects
        if args.first_cell_child:
            print(json.dumps(first_cell_child()))
            return 0
        result = {
            "repeat": args.repeat,
            "plot_repeat": args.plot_repeat,
            "first_runs": args.first,
            "overhead": measure_overhead(args.repeat),
            "plot": measure_plot_path(args.plot_repeat, args.repeat),
            "first": measure_first_cell(args.first),
        }
    print(report(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
