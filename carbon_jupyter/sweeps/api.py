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

from carbon_jupyter.errors import ConfigError
from carbon_jupyter.sweeps.axes import Axes, build_axes
from carbon_jupyter.sweeps.results import SweepResults
from carbon_jupyter.sweeps.runner import Progress, run_sweep
from carbon_jupyter.sweeps.spec import SweepSpec
from carbon_jupyter.sweeps.target import target_of


def _values(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Sequence):
        return ",".join(str(v) for v in value)
    return str(value)


def param_texts(params: Mapping[str, object] | Sequence[str] | None) -> list[str]:
    """Parameter axes as the command line writes them: ``["batch=32,128", ...]``."""
    if params is None:
        return []
    if isinstance(params, Mapping):
        return [f"{name}={_values(values)}" for name, values in params.items()]
    return list(params)


def axes_of(
    params: Mapping[str, object] | Sequence[str] | None,
    threads: object = None,
    gpus: object = None,
    repeat: int = 1,
) -> Axes:
    """The axes from Python values: ``params={"batch": [32, 128]}``, ``threads=[1, 2]``, ..."""
    import os

    return build_axes(
        param_texts(params),
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
    server: str | None = None,
    token: str | None = None,
    executor: str | None = None,
    wait: bool = True,
    **tracker_options: Any,
) -> SweepResults:
    """Run ``target`` over every configuration and return the comparison.

    ``target`` is a notebook (``.ipynb``), a script (``.py``) or a command (a
    list of arguments). ``resume`` is the id of an earlier sweep: only its
    missing configurations run, and the results cover all of them.
    ``store`` is the SQLite file the runs go to (default: the usual store).
    ``tracker_options`` go to every run's tracker (``interval``, ``country``, ...).

    With ``server`` (a team server's URL; ``token`` defaults to
    ``CARBON_JUPYTER_TOKEN``) the sweep is handed to the server, which runs it
    on its ``executor`` (its own machine, or ``dask://HOST:PORT``); this waits
    for it and compares the runs the server holds (``wait=False``: returns at
    once, with no runs; ``load_remote`` later).
    """
    from carbon_jupyter.sweeps import results as results_module

    argv = [target] if isinstance(target, str) else list(target)
    tgt = target_of(argv, params_as)
    reporter: Callable[[Progress], None] | None
    if progress is True:
        from carbon_jupyter.show import frontend
        from carbon_jupyter.show.progress import NotebookProgress, TerminalProgress

        reporter = NotebookProgress() if frontend.in_kernel() else TerminalProgress()
    else:
        reporter = progress or None
    if server is not None or executor is not None:
        if server is None:
            raise ConfigError(
                f"--executor {executor}: a sweep runs on an executor through a team server; "
                "give --server URL too"
            )
        from carbon_jupyter.sweeps.spec import spec_of

        spec = spec_of(
            tgt, param_texts(params),
            threads=_values(threads) if threads is not None else None,
            gpus=_values(gpus) if gpus is not None else None,
            repeat=repeat, phase=phase, items=items, label=label, metric=metric,
            options=tracker_options,
        )  # fmt: skip
        return on_server(
            spec, server, token, executor=executor, resume=resume, wait=wait,
            on_progress=reporter,
        )  # fmt: skip
    axes = axes_of(params, threads, gpus, repeat)
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


def on_server(
    spec: SweepSpec,
    server: str,
    token: str | None = None,
    *,
    executor: str | None = None,
    resume: str | None = None,
    wait: bool = True,
    on_progress: Callable[[Progress], None] | None = None,
) -> SweepResults:
    """Hand ``spec`` to the team server at ``server`` (or resume sweep ``resume`` there),
    wait for it, and compare its runs."""
    from carbon_jupyter.forward.config import Destination
    from carbon_jupyter.settings import Settings
    from carbon_jupyter.sweeps import remote

    destination = Destination.of(
        server, token if token is not None else Settings.from_env().server_token
    )
    if resume is not None:
        remote.resume(destination, resume)
        sweep_id = resume
    else:
        sweep_id = remote.submit(destination, spec, executor)["id"]
    if not wait:
        return SweepResults(sweep_id, [], spec.metric)
    remote.follow(destination, sweep_id, on_progress=on_progress)
    return remote.fetch(destination, sweep_id, spec.metric)


def load_remote(
    sweep_id: str, server: str, token: str | None = None, metric: str | None = None
) -> SweepResults:
    """The comparison of sweep ``sweep_id`` as the team server at ``server`` holds it."""
    from carbon_jupyter.forward.config import Destination
    from carbon_jupyter.settings import Settings
    from carbon_jupyter.sweeps import remote

    destination = Destination.of(
        server, token if token is not None else Settings.from_env().server_token
    )
    return remote.fetch(destination, sweep_id, metric)
