"""``%%carbon`` and ``%carbon``: the notebook's front door onto the tracker.

Load with ``%load_ext carbon_jupyter`` (or list ``carbon_jupyter`` in
``c.InteractiveShellApp.extensions``). Then:

``%%carbon [label] [--phase train|inference|other] [--items N] [--interval S]
[--country C] [--region provider:region] [--intensity G] [--pue X] [--gpus all|0,1]
[--attribution device|process] [--tag key=value ...] [--metric NAME[=VARIABLE] ...]
[--dask [ADDRESS]] [--no-plot] [--quiet]``
    Track one cell: a live plot of power and cumulative CO2 while it runs,
    replaced by a static plot and a summary when it ends. ``--metric accuracy``
    stores the value of the variable ``accuracy`` when the cell ends as the
    run's metric (``--metric acc=val_accuracy`` names the variable).
    ``--dask`` also measures each host of the Dask cluster once: the live plot draws
    one line per host, and the job with its hosts is shown under it when the cell
    ends (kept as ``_carbon_job``).

``%carbon start [label] [options]`` / ``%carbon stop [-o]``
    Track a run that spans several cells. ``-o`` returns the Run.
``%carbon status``
    What is being tracked now, the run store, and forwarding to a team server:
    the server, requests waiting, the last delivery and the last error.
``%carbon server URL [--token T]`` / ``%carbon server off`` / ``%carbon server``
    Forward this kernel's runs to a team server (``carbon-jupyter serve``) as
    well as storing them here; stop forwarding; show where runs go. The token
    defaults to ``CARBON_JUPYTER_TOKEN`` (better than typing it into a notebook
    that may be shared).
``%carbon auto on|off``
    Track every cell, with a one-line summary under each.
``%carbon runs [--last N]``
    The latest stored runs as a table.
``%carbon compare [labels ...] [--last N] [--by label|phase|run]``
    Energy, CO2 and duration of stored runs side by side.
``%carbon show RUN_ID``
    The plot and summary of one stored run.
``%carbon config``
    The settings in force and where each came from.
``%carbon sweep TARGET [-p NAME=V1,V2 ...] [--threads 1,2] [--gpus none,0] [--repeat N] ...``
    Run a notebook, script or command over configurations, each in a fresh
    process, and return the comparison (the options of ``carbon-jupyter sweep``).
``%carbon export PATH [--format codecarbon|csv|json] [--samples]``
    Stored runs in CodeCarbon's ``emissions.csv`` layout, this tool's CSV or
    its JSON; without ``--format`` a name ending in ``emissions.csv`` gets
    CodeCarbon's layout, other ``.csv`` the CSV, ``.json`` the JSON.

Settings live on the :class:`CarbonMagics` configurable
(``%config CarbonMagics.interval = 0.5``), whose defaults come from the
``CARBON_JUPYTER_*`` environment variables.

A ``%%carbon`` cell's run measures the cell's code and nothing else: the
options are parsed, the code compiled and the live plot shown before the
tracker starts, and the static plot and summary are drawn after it stopped.
Nothing is registered on other cells unless ``%carbon auto on`` asks for it.

This module is glue: measuring is :class:`carbon_jupyter.measure.tracker.Tracker`,
storing is :mod:`carbon_jupyter.store`, showing is :mod:`carbon_jupyter.show.display`
and :mod:`carbon_jupyter.show.live`.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from traitlets import Bool, Float, Unicode, default

from carbon_jupyter import context
from carbon_jupyter.errors import CarbonError
from carbon_jupyter.notebook import options
from carbon_jupyter.notebook.cellrun import compile_cell, finish_view
from carbon_jupyter.notebook.options import dask_client
from carbon_jupyter.settings import Settings


@magics_class
class CarbonMagics(Magics):
    """The ``%carbon`` / ``%%carbon`` magics and their settings."""

    interval = Float(help="Sampling interval in seconds (0.05-60).").tag(config=True)
    attribution = Unicode(help="'device' totals or this 'process' share.").tag(config=True)
    gpus = Unicode(None, allow_none=True, help="'all' or GPU indices '0,1'.").tag(config=True)
    country = Unicode(None, allow_none=True, help="ISO code or name.").tag(config=True)
    region = Unicode(None, allow_none=True, help="Cloud region 'aws:eu-west-1'.").tag(config=True)
    intensity = Float(None, allow_none=True, help="gCO2e/kWh.").tag(config=True)
    pue = Float(None, allow_none=True, help="Data-centre PUE.").tag(config=True)
    plot = Bool(True, help="Show the live plot in %%carbon cells.").tag(config=True)
    display_mode = Unicode(
        None, allow_none=True, help="widgets, html, colab, text or none; default: detected."
    ).tag(config=True)

    @default("interval")
    def _interval_default(self) -> float:
        return Settings.from_env().interval_s

    @default("attribution")
    def _attribution_default(self) -> str:
        return Settings.from_env().attribution

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self._active: Any = None  # Tracker of %carbon start
        self._active_view: Any = None
        self._active_metrics: list[tuple[str, str]] = []
        self._auto = False
        self._auto_tracker: Any = None
        self._hooked = False
        self.last_run: Any = None

    @property
    def auto(self) -> bool:
        """Whether every cell is tracked (``%carbon auto on``)."""
        return self._auto

    def _running_cell(self) -> Any:
        """IPython's ExecutionInfo of the cell running now (raw_cell, store_history, cell_id)."""
        result = getattr(getattr(self.shell, "displayhook", None), "exec_result", None)
        return getattr(result, "info", None)

    def _execution_count(self, info: Any = None, before_cell: bool = False) -> int | None:
        """The In[n] number of the cell ``info`` describes: running now, or about to run.

        IPython 8 increments its counter after a cell, IPython 9 before it; the
        input history holds every stored cell in both, the running one included
        once it has started, so its length tells.
        """
        if self.shell is None:
            return None
        info = self._running_cell() if info is None else info
        history = getattr(self.shell, "history_manager", None)
        if getattr(info, "store_history", False) and history is not None:
            return len(history.input_hist_raw) - (0 if before_cell else 1)
        return int(self.shell.execution_count)

    # -- hooks, registered while every cell is tracked -----------------------------------
    def _hook(self, on: bool) -> None:
        events = getattr(self.shell, "events", None)
        if events is None or on == self._hooked:
            return
        for event in _EVENTS:
            callback = getattr(self, event)
            if on:
                events.register(event, callback)
            else:
                with contextlib.suppress(ValueError):
                    events.unregister(event, callback)
        self._hooked = on

    def pre_run_cell(self, info: Any) -> None:
        raw_cell = getattr(info, "raw_cell", "") or ""
        if self._auto and self._active is None and not raw_cell.lstrip().startswith("%%carbon"):
            try:
                tracker = self._tracker(None, {}, info=info, before_cell=True)
                self._auto_tracker = tracker.start()
            except CarbonError as exc:
                print(f"carbon: auto tracking is off for this cell: {exc}")
                self._auto_tracker = None

    def post_run_cell(self, result: Any) -> None:
        tracker, self._auto_tracker = self._auto_tracker, None
        if not self._auto:  # switched off by this very cell: nothing more to follow
            self._hook(False)
        if tracker is None:
            return
        # Started before the cell entered the history: the result knows its number.
        if getattr(result, "execution_count", None) is not None:
            tracker.tags["execution_count"] = str(result.execution_count)
        error = getattr(result, "error_in_exec", None)
        if isinstance(error, KeyboardInterrupt):
            run = tracker.stop("interrupted", error="KeyboardInterrupt")
        elif error is not None:
            run = tracker.stop("error", error=f"{type(error).__name__}: {error}")
        else:
            run = tracker.stop()
        self.last_run = run
        from carbon_jupyter.show import format as fmt

        print(f"[carbon] {fmt.one_line(run)}")

    # -- building a tracker -------------------------------------------------------------
    def _tracker(
        self,
        label: str | None,
        options: dict[str, Any],
        *,
        info: Any = None,
        before_cell: bool = False,
    ) -> Any:
        from carbon_jupyter.measure.tracker import Tracker

        def pick(name: str) -> Any:
            value = options.get(name)
            return value if value is not None else getattr(self, name)

        info = self._running_cell() if info is None else info
        tags = dict(options.get("tags") or {})
        count = self._execution_count(info, before_cell)
        if count is not None:
            tags.setdefault("execution_count", str(count))
        return Tracker(
            label,
            phase=options.get("phase"),
            items=options.get("items"),
            interval=pick("interval"),
            country=pick("country"),
            region=pick("region"),
            intensity=pick("intensity"),
            pue=pick("pue"),
            gpus=pick("gpus"),
            attribution=pick("attribution"),
            tags=tags,
            notebook=context.notebook_path(),
            cell=getattr(info, "cell_id", None),
            cluster=dask_client(options.get("dask")),
        )

    def _view(self, tracker: Any, args: argparse.Namespace, title: str) -> Any:
        """The live view of ``tracker``, shown before it starts (None with ``--quiet``)."""
        from carbon_jupyter.show.live import LiveView, devices_to_measure

        if args.quiet:
            return None
        mode = "none" if (args.no_plot or not self.plot) else self.display_mode
        if args.dask is not None:  # one line per host of the cluster, known once it starts
            from carbon_jupyter.jobs.hostfeed import HostsFeed
            from carbon_jupyter.show.live_hosts import HostsView

            return HostsView(HostsFeed(tracker), mode=mode, title=title)
        view = LiveView(tracker, mode=mode, title=title)
        if view.plotted:
            devices = devices_to_measure(args.gpus if args.gpus is not None else self.gpus)
            if devices is not None:  # else follow() shows it once the tracker knows them
                view.show(devices)
        return view

    def _start(self, tracker: Any, view: Any) -> None:
        """Start measuring, then feed the view; a tracker that cannot start leaves no view."""
        try:
            tracker.start()
        except BaseException as exc:
            if view is not None:
                view.close()
            if isinstance(exc, CarbonError):  # a cluster that cannot be measured
                raise UsageError(str(exc)) from None
            raise
        if view is not None:
            view.follow()

    def _busy(self) -> str | None:
        if self._active is not None:
            return "a run started with %carbon start is still being tracked; %carbon stop it first"
        return None

    # -- the magic ----------------------------------------------------------------------
    @line_cell_magic
    def carbon(self, line: str, cell: str | None = None) -> Any:
        """Track the energy and CO2 of a cell (``%%carbon``), or manage runs (``%carbon``).

        See ``carbon_jupyter.notebook.magics`` for every form; ``%carbon`` alone prints it.
        """
        __tracebackhide__ = True
        if cell is not None:
            return self._carbon_cell(line, cell)
        try:
            args = options.line_parser().parse_args(shlex.split(line))
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if args.command is None:
            print(__doc__)
            return None
        try:
            return getattr(self, f"_cmd_{args.command}")(args)
        except CarbonError as exc:
            raise UsageError(str(exc)) from None

    def _carbon_cell(self, line: str, cell: str) -> Any:
        __tracebackhide__ = True
        try:
            args = options.cell_parser().parse_args(shlex.split(line))
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        busy = self._busy()
        if busy:
            raise UsageError(f"%%carbon: {busy}")
        try:
            tracker = self._tracker(args.label, {**vars(args), "tags": options.tags(args.tag)})
        except CarbonError as exc:
            raise UsageError(str(exc)) from None
        metrics = options.metric_specs(args.metric)
        code = compile_cell(self.shell, cell)  # a cell that does not compile is not run
        view = self._view(tracker, args, args.label or "")
        # The measured window: from here to tracker.stop(), the cell's code only.
        self._start(tracker, view)
        status, error = "ok", None
        try:
            return code.run()
        except KeyboardInterrupt:
            status, error = "interrupted", "KeyboardInterrupt"
            raise
        except BaseException as exc:
            status, error = "error", f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self._log_metrics(tracker, metrics)
            run = self.last_run = tracker.stop(status, error=error)
            finish_view(self.shell, view, tracker, run, args.quiet)

    def _log_metrics(self, tracker: Any, metrics: list[tuple[str, str]]) -> None:
        """``--metric NAME=VARIABLE``: the variables' values, as the run's metrics."""
        for name, variable in metrics:
            value = self.shell.user_ns.get(variable) if self.shell is not None else None
            try:
                tracker.log_metric(name, value)
            except CarbonError:
                print(
                    f"carbon: --metric {name}: {variable} is {value!r} when the run ends, "
                    "not a number; nothing logged",
                    file=sys.stderr,
                )

    # -- line commands ------------------------------------------------------------------
    def _cmd_start(self, args: argparse.Namespace) -> None:
        busy = self._busy()
        if busy:
            raise UsageError(f"%carbon start: {busy}")
        tracker = self._tracker(args.label, {**vars(args), "tags": options.tags(args.tag)})
        view = self._view(tracker, args, args.label or "")
        self._start(tracker, view)
        self._active, self._active_view = tracker, view
        self._active_metrics = options.metric_specs(args.metric)
        if args.quiet:
            return
        print(f"carbon: tracking {args.label or 'run ' + tracker.id[:8]}; %carbon stop to finish")

    def _cmd_stop(self, args: argparse.Namespace) -> Any:
        if self._active is None:
            raise UsageError("%carbon stop: nothing is being tracked; %carbon start first")
        tracker, self._active = self._active, None
        view, self._active_view = self._active_view, None
        self._log_metrics(tracker, self._active_metrics)
        run = self.last_run = tracker.stop()
        from carbon_jupyter.show import format as fmt

        if view is None and tracker.cluster is None:
            print(fmt.summary(run))
        finish_view(self.shell, view, tracker, run)
        return run if args.output else None

    def _cmd_sweep(self, args: argparse.Namespace) -> Any:
        """``%carbon sweep TARGET -p NAME=V1,V2 ...``: the results object (its display compares)."""
        from carbon_jupyter.cli.sweep import results_of

        return results_of(args)

    def _cmd_status(self, args: argparse.Namespace) -> None:
        from carbon_jupyter.show import format as fmt

        if self._active is not None:
            print(fmt.summary(self._active.snapshot()))
        else:
            print("carbon: no run is being tracked")
        print(f"carbon: per-cell tracking is {'on' if self._auto else 'off'}")
        from carbon_jupyter.forward.status import report

        for line in report().lines():
            print(f"carbon: {line}")

    def _cmd_server(self, args: argparse.Namespace) -> None:
        from carbon_jupyter import forward

        if args.url is None and args.token is not None:
            raise UsageError("%carbon server --token T: give the server too: URL --token T")
        for line in forward.server_command(args.url, args.token):
            print(f"carbon: {line}")

    def _cmd_auto(self, args: argparse.Namespace) -> None:
        self._auto = args.state == "on"
        if self._auto:
            self._hook(True)
        elif self._auto_tracker is None:  # else post_run_cell stops it, then unhooks
            self._hook(False)
        print(f"carbon: per-cell tracking is {args.state}")

    def _cmd_runs(self, args: argparse.Namespace) -> None:
        from carbon_jupyter.show import format as fmt
        from carbon_jupyter.store import open_store

        runs = open_store(create=False).runs(limit=args.last)
        _show_table(fmt.runs_table_html(runs), fmt.runs_table_text(runs))

    def _cmd_compare(self, args: argparse.Namespace) -> Any:
        from carbon_jupyter.show.display import show_comparison
        from carbon_jupyter.store import open_store

        store = open_store(create=False)
        if args.labels:
            runs = [r for label in args.labels for r in store.runs(label=label, limit=args.last)]
        else:
            runs = store.runs(limit=args.last)
        runs = [r for r in runs if r.status != "running"]
        if not runs:
            raise UsageError(
                "%carbon compare: no finished runs match; track some cells with %%carbon first"
            )
        show_comparison(runs, by=args.by)

    def _cmd_show(self, args: argparse.Namespace) -> None:
        from carbon_jupyter.show.display import show_run
        from carbon_jupyter.store import open_store

        store = open_store(create=False)
        run = store.get_run(args.run_id)
        show_run(run, store.samples(run.id))

    def _cmd_config(self, args: argparse.Namespace) -> None:
        from carbon_jupyter.intensity import resolve
        from carbon_jupyter.store import default_db_path

        names = ("interval", "attribution", "gpus", "country", "region", "intensity", "pue")
        for name in (*names, "plot", "display_mode"):
            print(f"CarbonMagics.{name:<13} = {getattr(self, name)!r}")
        found = resolve(
            country=self.country, region=self.region, intensity=self.intensity, pue=self.pue
        )
        print(
            f"intensity in force   : {found.intensity_g_per_kwh:g} gCO2e/kWh ({found.key}, "
            f"{found.source}, chosen by {found.chosen_by}); PUE {found.pue:g}"
        )
        print(f"store                : {default_db_path()}")

    def _cmd_export(self, args: argparse.Namespace) -> None:
        from carbon_jupyter.store import open_store
        from carbon_jupyter.store.export import choose_format, export_runs, output_path

        try:
            path = output_path(args.path)
            chosen = choose_format(path, args.format)
            exported = export_runs(
                open_store(create=False), path, format=chosen, samples=args.samples
            )
        except CarbonError as exc:
            raise UsageError(f"%carbon export: {exc}") from None
        print(f"carbon: exported {exported}")
        for extra in exported.files[1:]:
            print(f"carbon: and their samples to {extra}")


def _show_table(html: str, text: str) -> None:
    from IPython.display import display

    from carbon_jupyter.show.frontend import in_kernel

    if in_kernel():
        display({"text/html": html, "text/plain": text}, raw=True)  # type: ignore[no-untyped-call]
    else:
        print(text)


_EVENTS = ("pre_run_cell", "post_run_cell")


def load(shell: Any) -> None:
    """Register the magics (idempotent); cell hooks only come with ``%carbon auto on``."""
    if any(isinstance(m, CarbonMagics) for m in shell.configurables):
        return
    magics = CarbonMagics(shell=shell)
    shell.register_magics(magics)
    _deliver_waiting()


def _deliver_waiting() -> None:
    """With a team server configured, deliver what an earlier kernel left in the outbox."""
    try:
        from carbon_jupyter import forward

        forward.start_sender()
    except CarbonError as exc:  # a malformed CARBON_JUPYTER_SERVER: said, magics still load
        print(f"carbon: runs are not forwarded: {exc}")


def unload(shell: Any) -> None:
    """Stop anything live, unregister every hook and remove the magics."""
    for magics in [m for m in shell.configurables if isinstance(m, CarbonMagics)]:
        if magics._active is not None:
            magics._active.stop()
        if magics._active_view is not None:
            magics._active_view.close()
        if magics._auto_tracker is not None:
            magics._auto_tracker.stop()
        magics._hook(False)
        shell.configurables.remove(magics)
    if "carbon_jupyter.show.live" in sys.modules:
        from carbon_jupyter.show.live import close_finished_widgets

        close_finished_widgets()
    for kind in ("line", "cell"):
        shell.magics_manager.magics[kind].pop("carbon", None)
    shell.magics_manager.registry.pop("CarbonMagics", None)
