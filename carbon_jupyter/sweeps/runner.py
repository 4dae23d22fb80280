"""Run a sweep on this machine: each configuration in a fresh process, one at a time, tracked.

One configuration at a time, so that runs do not disturb each other's
measurements. Each run is tracked from the parent (the child's whole process
tree is the run's process share), stored like any run, and tagged with the
sweep id, the configuration (``config``, ``param.*``, ``threads``, ``gpus``)
and the repeat. The child's output goes to a log file per run.

Faults:

- a configuration whose process fails (exit status not 0) is stored as
  ``error`` with the exit status and the last line it wrote, and the sweep goes on;
- Ctrl-C lets the current configuration finish, stores it, and stops (a second
  Ctrl-C stops the current one too, stored as ``interrupted``);
- ``resume=True`` with a sweep id runs only the (repeat, configuration) pairs
  that have no finished run (``ok`` or ``error``) in the store.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from carbon_jupyter.model import Run, Status
from carbon_jupyter.sensors.base import Sensor
from carbon_jupyter.sweeps.axes import Axes, Configuration
from carbon_jupyter.sweeps.target import Target

#: How often a running configuration's progress is reported, in seconds.
PROGRESS_PERIOD_S = 1.0


@dataclass(frozen=True)
class Progress:
    """Where a sweep stands: the configuration running now and what it has drawn so far."""

    index: int
    total: int
    repeat: int
    config: str
    elapsed_s: float
    energy_j: float
    co2_g: float
    done: bool = False
    status: str = "running"


@dataclass
class SweepRun:
    """What a sweep did: its id and the runs it stored, in the order they ran."""

    sweep_id: str
    target: str
    runs: list[Run] = field(default_factory=list)
    skipped: int = 0
    stopped: bool = False
    output_dir: Path | None = None


def _gpu_argument(config: Configuration) -> str | None:
    if config.gpus is None:
        return None
    return ",".join(map(str, config.gpus))


def _read_metrics(path: Path) -> dict[str, float]:
    """The metrics a target logged (JSON lines ``{"name": ..., "value": ...}``; the last wins)."""
    metrics: dict[str, float] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return metrics
    for line in lines:
        try:
            entry = json.loads(line)
            metrics[str(entry["name"])] = float(entry["value"])
        except (ValueError, KeyError, TypeError):
            continue
    return metrics


def _last_line(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


def finished_pairs(sweep_id: str, store_path: str | None = None) -> set[tuple[int, str]]:
    """``(repeat, config)`` pairs of ``sweep_id`` that already have an ``ok`` or ``error`` run."""
    from carbon_jupyter.store import open_store
    from carbon_jupyter.store.failures import StoreMissingError

    try:
        store = open_store(store_path, create=False)
    except StoreMissingError:
        return set()
    done = set()
    for run in store.iter_runs(tag={"sweep": sweep_id}, status=["ok", "error"]):
        try:
            done.add((int(run.tags.get("repeat", "1")), run.tags.get("config", "")))
        except ValueError:
            continue
    return done


class _Interrupts:
    """Ctrl-C while a configuration runs: the first asks to stop after it, the second now."""

    def __init__(self) -> None:
        self.count = 0
        self._previous: Any = None

    def __enter__(self) -> _Interrupts:
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: Ctrl-C is not ours to catch
            self._previous = None
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.count += 1

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def run_sweep(
    target: Target,
    axes: Axes,
    *,
    label: str | None = None,
    phase: str | None = None,
    items: int | None = None,
    sweep_id: str | None = None,
    resume: bool = False,
    output_dir: str | os.PathLike[str] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    tracker_options: dict[str, Any] | None = None,
    store_path: str | None = None,
    sensors_for: Callable[[str | None], Sequence[Sensor]] | None = None,
) -> SweepRun:
    """Run every configuration of ``axes`` on ``target``; see the module docstring.

    ``sensors_for`` replaces hardware discovery: it gets a configuration's GPU
    selection (``"0,1"``, ``""`` for none, None for the default) and returns the
    sensors to measure it with (replayed traces, tests).
    """
    sweep_id = sweep_id or uuid.uuid4().hex[:12]
    done = finished_pairs(sweep_id, store_path) if resume else set()
    out = Path(output_dir) if output_dir else Path(tempfile.gettempdir()) / "carbon-jupyter-sweeps"
    out = out / sweep_id
    out.mkdir(parents=True, exist_ok=True)
    result = SweepRun(sweep_id, target.name, output_dir=out)
    schedule = axes.schedule()
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    base = dict(tracker_options or {})
    if store_path is not None and "sink" not in base:
        from carbon_jupyter.measure.tracker import with_forwarding
        from carbon_jupyter.store import open_sink

        base["sink"] = with_forwarding(open_sink(store_path))
    with _Interrupts() as interrupts:
        for index, (repeat, config) in enumerate(schedule, start=1):
            if (repeat, config.key) in done:
                result.skipped += 1
                continue
            if interrupts.count:
                result.stopped = True
                break
            step = _Step(index, len(schedule), repeat, config, out, on_progress)
            options = step_options(
                target, config, repeat, sweep_id, base, label=label, phase=phase, items=items
            )
            if sensors_for is not None:
                options["sensors"] = sensors_for(options.pop("gpus", None))
            cpus = config.cpus(allowed) if allowed else None
            result.runs.append(step.run(target, options, cpus, interrupts))
    return result


def step_options(
    target: Target,
    config: Configuration,
    repeat: int,
    sweep_id: str,
    base: dict[str, Any],
    *,
    label: str | None,
    phase: str | None,
    items: int | None,
) -> dict[str, Any]:
    """The tracker options of one configuration's run: ``base`` with its label and tags."""
    tags = {
        **config.tags(),
        "sweep": sweep_id,
        "config": config.key,
        "repeat": str(repeat),
        "target": target.name,
    }
    options = dict(base)
    if config.gpus is not None:
        options["gpus"] = ",".join(map(str, config.gpus))
    options.update(label=label or target.name, phase=phase, items=items, tags=tags)
    return options


def run_configuration(
    target: Target,
    config: Configuration,
    repeat: int,
    sweep_id: str,
    *,
    index: int = 1,
    total: int = 1,
    output_dir: Path,
    tracker_options: dict[str, Any],
    label: str | None = None,
    phase: str | None = None,
    items: int | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> Run:
    """Run one configuration of a sweep in a fresh process, tracked; the stored run.

    What a host given a single configuration runs (a team server's executor,
    a Dask worker); :func:`run_sweep` does the same for every configuration.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    options = step_options(
        target, config, repeat, sweep_id, tracker_options, label=label, phase=phase, items=items
    )
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    cpus = config.cpus(allowed) if allowed else None
    step = _Step(index, total, repeat, config, output_dir, on_progress)
    with _Interrupts() as interrupts:
        return step.run(target, options, cpus, interrupts)


@dataclass(frozen=True)
class _Step:
    """One configuration's run: its process, its tracker, its progress reports."""

    index: int
    total: int
    repeat: int
    config: Configuration
    out: Path
    on_progress: Callable[[Progress], None] | None

    def report(self, elapsed_s: float, run: Run, done: bool = False) -> None:
        if self.on_progress is not None:
            self.on_progress(
                Progress(
                    self.index, self.total, self.repeat, self.config.key, elapsed_s,
                    run.energy_j, run.co2_g, done=done, status=run.status,
                )
            )  # fmt: skip

    def run(
        self, target: Target, options: dict[str, Any], cpus: list[int] | None, ctrl_c: _Interrupts
    ) -> Run:
        from carbon_jupyter.measure.tracker import Tracker

        stem = f"{self.index:04d}"
        metrics_file = self.out / f"{stem}.metrics.jsonl"
        log_file = self.out / f"{stem}.log"
        argv, env = target.process(self.config, metrics_file, self.out)
        label = options.pop("label")
        tracker = Tracker(label, **options).start()
        started = time.monotonic()
        killed = False
        with open(log_file, "wb") as log:
            try:
                proc = subprocess.Popen(
                    argv,
                    env={**os.environ, **env},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:  # no such program, not executable, ...
                run = tracker.stop("error", error=f"cannot start {argv[0]}: {exc.strerror}")
                self.report(run.duration_s, run, done=True)
                return run
            if cpus is not None:
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(proc.pid, cpus)
            while True:
                try:
                    rc = proc.wait(timeout=PROGRESS_PERIOD_S)
                    break
                except subprocess.TimeoutExpired:
                    pass
                if ctrl_c.count >= 2 and not killed:
                    os.killpg(proc.pid, signal.SIGINT)
                    killed = True
                self.report(time.monotonic() - started, tracker.snapshot())
        status: Status = "ok"
        error = None
        if killed:
            status, error = "interrupted", "KeyboardInterrupt"
        elif rc != 0:
            last = _last_line(log_file)
            status, error = "error", f"exit status {rc}" + (f": {last}" if last else "")
        for name, value in _read_metrics(metrics_file).items():
            tracker.log_metric(name, value)
        run = tracker.stop(status, error=error)
        self.report(run.duration_s, run, done=True)
        return run
