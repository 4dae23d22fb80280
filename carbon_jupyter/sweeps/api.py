"""``carbon_jupyter.sweep(...)``: run a sweep from Python and get its comparison back.

::

    import carbon_jupyter as cj

    results = cj.sweep(
        "train.py",
        params={"dataset": ["small", "large"]},
        threads=[1, 2],
        repeat=2,
        phase="train",
    )
    results                  # in a notebook: the table, the one-line answer, the plots
    results.answer()         # "threads=1: 31 % less CO2, 12 % slower than threads=2"
    results.to_html("sweep.html")

The same sweep from a shell is ``carbon-jupyter sweep train.py -p dataset=small,large
--threads 1,2 --repeat 2 --phase train``; in a notebook, ``%carbon sweep ...``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from carbon_jupyter.sweeps.axes import Axes, build_axes
from carbon_jupyter.sweeps.results import SweepResults
from carbon_jupyter.sweeps.runner import Progress, run_sweep
from carbon_jupyter.sweeps.target import target_of


def _values(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Sequence):
        return ",".join(str(v) for v in value)
    return str(value)


def axes_of(
    params: Mapping[str, object] | Sequence[str] | None,
    threads: object = None,
    gpus: object = None,
    repeat: int = 1,
) -> Axes:
    """The axes from Python values: ``params={"batch": [32, 128]}``, ``threads=[1, 2]``, ..."""
    import os

    if params is None:
        texts: list[str] = []
    elif isinstance(params, Mapping):
        texts = [f"{name}={_values(values)}" for name, values in params.items()]
    else:
        texts = list(params)
    return build_axes(
        texts,
        threads=_values(threads) if threads is not None else None,
        gpus=_values(gpus) if gpus is not None else None,
        repeat=repeat,
        cpu_count=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
    )


def sweep(
    target: str | Sequence[str],
    params: Mapping[str, object] | Sequence[str] | None = None,
    *,
    threads: object = None,
    gpus: object = None,
    repeat: int = 1,
    phase: str | None = None,
    items: int | None = None,
    label: str | None = None,
    metric: str | None = None,
    resume: str | None = None,
    params_as: str = "args",
    output_dir: str | None = None,
    progress: bool | Callable[[Progress], None] = True,
    store: str | None = None,
    **tracker_options: Any,
) -> SweepResults:
    """Run ``target`` over every configuration and return the comparison.

    ``target`` is a notebook (``.ipynb``), a script (``.py``) or a command (a
    list of arguments). ``resume`` is the id of an earlier sweep: only its
    missing configurations run, and the results cover all of them.
    ``store`` is the SQLite file the runs go to (default: the usual store).
    ``tracker_options`` go to every run's tracker (``interval``, ``country``, ...).
    """
    from carbon_jupyter.sweeps import results as results_module

    argv = [target] if isinstance(target, str) else list(target)
    tgt = target_of(argv, params_as)
    axes = axes_of(params, threads, gpus, repeat)
    reporter: Callable[[Progress], None] | None
    if progress is True:
        from carbon_jupyter.show import frontend
        from carbon_jupyter.show.progress import NotebookProgress, TerminalProgress

        reporter = NotebookProgress() if frontend.in_kernel() else TerminalProgress()
    else:
        reporter = progress or None
    done = run_sweep(
        tgt,
        axes,
        label=label,
        phase=phase,
        items=items,
        sweep_id=resume,
        resume=resume is not None,
        output_dir=output_dir,
        on_progress=reporter,
        tracker_options=tracker_options,
        store_path=store,
    )
    if resume is not None:
        found = results_module.load(done.sweep_id, store_path=store, metric=metric)
        found.stopped = done.stopped
        return found
    return SweepResults(done.sweep_id, done.runs, metric, done.stopped)
