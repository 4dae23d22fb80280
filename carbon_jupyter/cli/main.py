"""The ``carbon-jupyter`` command line.

``carbon-jupyter doctor``
    What this machine can measure, what it cannot and why, and which carbon
    intensity and PUE a run would use.
``carbon-jupyter intensity [--list countries|regions] [--country C] [--region R]``
    Look up carbon-intensity factors in the embedded tables.
``carbon-jupyter measure [--seconds S] [LABEL]``
    Track a few seconds of this machine (idle or whatever else is running)
    and store the run: the quickest check that measuring works end to end.
``carbon-jupyter runs [--last N] [--label L] [--phase P] [--notebook NB] [--since 7d]``
    The stored runs, newest first.
``carbon-jupyter show RUN_ID``
    One stored run in full (an id or a unique prefix of one).
``carbon-jupyter totals [--by label|notebook|phase|day] [--since 7d]``
    Energy and CO2 added up per label, notebook, phase or day.
``carbon-jupyter export PATH [--format codecarbon|csv|json] [--samples]``
    Stored runs in CodeCarbon's ``emissions.csv`` layout, this tool's CSV or
    its JSON. Without ``--format`` the name decides: ``*emissions.csv`` gets
    CodeCarbon's layout, other ``.csv`` the CSV, ``.json`` the JSON.
``carbon-jupyter import PATH``
    Runs from a CodeCarbon ``emissions.csv`` or this tool's ``.json`` export;
    importing the same file twice stores nothing twice, and a file without
    runs is refused.

``carbon-jupyter store check [--db PATH]``
    Whether the store file is healthy: SQLite's integrity check, the schema
    version and its counts of runs, devices and samples (exit code 0 healthy,
    1 damaged).
``carbon-jupyter store recover [--db PATH]``
    Move a damaged store aside (``carbon.db.damaged-<UTC time>``, never
    deleted) and copy every readable run, device row and sample into a fresh
    one; says how many were copied and lost.

Every command that reads or writes runs uses the shared SQLite file
(``CARBON_JUPYTER_DB``, or ``--db PATH``). Only ``measure`` and ``import``
create it; reading a store that does not exist says so and creates nothing.
Bad input is refused with one line naming the fix and exit code 2.
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from carbon_jupyter import __version__
from carbon_jupyter.cli import demo as demo_cli
from carbon_jupyter.cli import forward as forward_cli
from carbon_jupyter.cli import run as run_cli
from carbon_jupyter.cli import server as server_cli
from carbon_jupyter.cli import sweep as sweep_cli
from carbon_jupyter.errors import CarbonError
from carbon_jupyter.show import format as fmt

Command = Callable[[argparse.Namespace], int]

#: The longest ``--seconds`` accepted, in seconds (a year).
MAX_SECONDS = 365 * 86400
#: The most runs ``runs --last`` lists.
MAX_LAST = 1_000_000_000


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line naming the fix (exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _seconds(text: str) -> float:
    """``--seconds``: a finite duration above 0, at most a year."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= MAX_SECONDS:  # also refuses nan
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration: give seconds above 0 and at most {MAX_SECONDS} "
            "(a year), such as 5"
        )
    return value


def _last(text: str) -> int:
    """``--last``: how many runs, from 1 to MAX_LAST."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_LAST:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of runs: give a whole number from 1 to {MAX_LAST}"
        )
    return value


def _location_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--country", help="ISO code or name, e.g. DE, DEU, Germany")
    parser.add_argument("--region", help="cloud region, e.g. aws:eu-west-1, gcp:europe-west3")
    parser.add_argument("--intensity", help="carbon intensity in gCO2e/kWh")
    parser.add_argument("--pue", help="data-centre PUE (1.0-3.0, or aws, gcp, azure, industry)")


def cmd_doctor(args: argparse.Namespace) -> int:
    from carbon_jupyter.intensity import resolve
    from carbon_jupyter.model import method_quality
    from carbon_jupyter.sensors import discover

    print(
        f"carbon-jupyter {__version__} on {platform.node()} "
        f"({platform.system()} {platform.machine()}, Python {platform.python_version()})"
    )
    found = discover(gpus=args.gpus, refresh=True, announce=False)
    print("\nSensors in use:")
    first = {s.info.device_id: s.read() for s in found.sensors}
    time.sleep(args.seconds)
    for sensor in found.sensors:
        info = sensor.info
        now = sensor.read()
        before = first[info.device_id]
        if now.counter_j is not None and before.counter_j is not None:
            from carbon_jupyter.measure.integrate import counter_delta_j

            delta = counter_delta_j(before.counter_j, now.counter_j, now.counter_range_j)
            power_w: float | None = delta / args.seconds
        else:
            power_w = now.power_w
        print(
            f"  {info.device_id:<10} {info.name[:38]:<38} {info.method:<12} "
            f"{method_quality(info.method):<10} now {fmt.power(power_w)}"
        )
        if info.detail:
            print(f"  {'':<10} {info.detail}")
    if not found.sensors:
        print("  (none)")
    print("\nFindings:")
    for probe in found.probes:
        for problem in probe.problems:
            print(f"  {probe.source}: {problem}")
        if probe.sensors and not probe.problems:
            print(f"  {probe.source}: {len(probe.sensors)} device(s) found")
    intensity = resolve(
        country=args.country, region=args.region, intensity=args.intensity, pue=args.pue
    )
    print("\nCarbon intensity:")
    year = f" {intensity.year}" if intensity.year else ""
    print(
        f"  {intensity.intensity_g_per_kwh:g} gCO2e/kWh for {intensity.key} "
        f"(source {intensity.source}{year}, chosen by {intensity.chosen_by})"
    )
    print(f"  PUE {intensity.pue:g} ({intensity.pue_source})")
    if intensity.chosen_by == "default":
        print(
            "  Set where your power comes from: CARBON_JUPYTER_COUNTRY=DE, "
            "CARBON_JUPYTER_CLOUD_REGION=aws:eu-west-1 or CARBON_JUPYTER_INTENSITY=300"
        )
    _doctor_store()
    return 0


def _doctor_store() -> None:
    try:
        from carbon_jupyter.store import default_db_path

        print(f"\nStore: {default_db_path()}")
    except ImportError:
        return


def cmd_intensity(args: argparse.Namespace) -> int:
    from carbon_jupyter import intensity as ci

    if args.list == "countries":
        for c in ci.list_countries():
            print(f"{c.iso3}  {c.iso2}  {c.intensity_g_per_kwh:>7g}  {c.year or '':>4}  {c.name}")
        return 0
    if args.list == "regions":
        for r in ci.list_regions():
            print(f"{r.key:<36} {r.intensity_g_per_kwh:>7g}  {r.year or '':>4}  {r.source}")
        return 0
    found = ci.resolve(
        country=args.country, region=args.region, intensity=args.intensity, pue=args.pue
    )
    year = f" {found.year}" if found.year else ""
    print(
        f"{found.intensity_g_per_kwh:g} gCO2e/kWh  {found.key}  ({found.source}{year}, "
        f"{found.chosen_by})  PUE {found.pue:g} ({found.pue_source})"
    )
    return 0


def cmd_measure(args: argparse.Namespace) -> int:
    from carbon_jupyter.measure.tracker import Tracker, with_forwarding
    from carbon_jupyter.sensors import discover
    from carbon_jupyter.store import open_sink

    options: dict[str, Any] = {
        "interval": args.interval, "country": args.country, "region": args.region,
        "intensity": args.intensity, "pue": args.pue, "gpus": args.gpus,
    }  # fmt: skip
    # Refused before anything is opened: a bad option, then a GPU that is not here.
    Tracker(args.label, sink=None, sensors=(), **options)
    discover(gpus=args.gpus)
    sink = open_sink(args.db)
    sink.open()  # the store, created if need be; a path that cannot hold one is refused
    tracker = Tracker(args.label, sink=with_forwarding(sink), **options)
    tracker.start()
    try:
        time.sleep(args.seconds)
    except KeyboardInterrupt:
        run = tracker.stop("interrupted")
    else:
        run = tracker.stop()
    print(fmt.summary(run))
    return 0


def _store(args: argparse.Namespace) -> Any:
    """The store of ``--db``; only ``import`` writes, so only it may create one."""
    from carbon_jupyter.store import open_store

    return open_store(args.db, create=args.command == "import")


def _nothing_matches(store: Any, filters: dict[str, Any]) -> str:
    """What to say when no run is listed: an empty store, or filters that match none."""
    stored = sum(row["count"] for row in store.totals(by="phase"))
    if not stored:
        return f"no runs stored yet in {store.path}"
    given = " ".join(f"--{name} {value}" for name, value in filters.items())
    return f"no stored run matches {given} ({stored} run{'s' * (stored != 1)} stored in total)"


def _filters(args: argparse.Namespace) -> dict[str, Any]:
    names = ("label", "phase", "notebook", "status", "since")
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def cmd_runs(args: argparse.Namespace) -> int:
    store = _store(args)
    filters = _filters(args)
    found = store.runs(limit=args.last, **filters)
    print(fmt.runs_table_text(found) if found else _nothing_matches(store, filters))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from carbon_jupyter.store.query import RunNotFoundError

    store = _store(args)
    try:
        run = store.get_run(args.run_id)
    except RunNotFoundError:
        if not any(True for _ in store.iter_runs(tag={"job": args.run_id}, limit=1)):
            raise
        from carbon_jupyter.jobs.group import group
        from carbon_jupyter.jobs.show import job_text

        print(job_text(group(args.run_id, store.iter_runs(tag={"job": args.run_id}))))
        return 0
    print(fmt.summary(run))
    return 0


def cmd_totals(args: argparse.Namespace) -> int:
    store = _store(args)
    rows = store.totals(by=args.by, since=args.since)
    if not rows:
        print(_nothing_matches(store, _filters(args)))
        return 0
    print(f"{args.by:<32} {'runs':>5} {'duration':>14} {'energy':>12} {'CO2e':>10}")
    for row in rows:
        print(
            f"{str(row[args.by])[:32]:<32} {row['count']:>5} {fmt.duration(row['duration_s']):>14}"
            f" {fmt.energy(row['energy_j']):>12} {fmt.mass(row['co2_g']):>10}"
        )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from carbon_jupyter.store.export import choose_format, export_runs, output_path

    path = output_path(args.path)  # a missing folder is named before the store is opened
    chosen = choose_format(path, args.format)
    exported = export_runs(
        _store(args), path, format=chosen, samples=args.samples, **_filters(args)
    )
    print(f"wrote {exported}")
    for extra in exported.files[1:]:
        print(f"wrote their samples to {extra}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    store = _store(args)
    path = Path(args.path).expanduser()
    count = store.import_json(path) if path.suffix == ".json" else store.import_codecarbon(path)
    print(f"imported {count} new runs from {path}")
    return 0


def _store_path(args: argparse.Namespace) -> Path:
    from carbon_jupyter.store import default_db_path

    return Path(args.db).expanduser().absolute() if args.db else default_db_path()


def cmd_store_check(args: argparse.Namespace) -> int:
    from carbon_jupyter.store.recover import check

    health = check(_store_path(args))
    print(health.report())
    return 0 if health.healthy else 1


def cmd_store_recover(args: argparse.Namespace) -> int:
    from carbon_jupyter.store.recover import check, recover

    path = _store_path(args)
    if check(path).healthy:
        print(f"{path}: healthy, nothing to recover (`carbon-jupyter store check` counts it).")
        return 0
    print(recover(path).report())
    return 0


def _run_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--label", help="label, * wildcards allowed")
    parser.add_argument("--phase", choices=["train", "inference", "other"])
    parser.add_argument("--notebook", help="notebook path or file name")
    parser.add_argument("--status", choices=["running", "ok", "error", "interrupted", "lost"])
    parser.add_argument("--since", help="e.g. 30m, 24h, 7d or an ISO date")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="carbon-jupyter",
        description="Measure the energy and CO2 of machine-learning work.",
    )
    parser.add_argument("--version", action="version", version=f"carbon-jupyter {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    doctor = sub.add_parser("doctor", help="what this machine can measure, and why not")
    doctor.add_argument("--gpus", help="all, or GPU indices such as 0,1")
    doctor.add_argument("--seconds", type=_seconds, default=0.5, help="how long to read power")
    _location_args(doctor)
    doctor.set_defaults(func=cmd_doctor)

    intensity = sub.add_parser("intensity", help="look up carbon-intensity factors")
    intensity.add_argument("--list", choices=["countries", "regions"])
    _location_args(intensity)
    intensity.set_defaults(func=cmd_intensity)

    measure = sub.add_parser("measure", help="track this machine for a few seconds")
    measure.add_argument("label", nargs="?", default="measure")
    measure.add_argument("--seconds", type=_seconds, default=5.0, help="how long to track")
    measure.add_argument("--interval", type=float, default=None)
    measure.add_argument("--gpus", help="all, or GPU indices such as 0,1")
    _location_args(measure)
    measure.set_defaults(func=cmd_measure)

    runs = sub.add_parser("runs", help="the stored runs, newest first")
    runs.add_argument("--last", type=_last, default=20, help=f"how many runs (1 to {MAX_LAST})")
    _run_filters(runs)
    runs.set_defaults(func=cmd_runs)

    show = sub.add_parser("show", help="one stored run in full, or a distributed job's parts")
    show.add_argument("run_id", help="a run id (or its start), or a job id")
    show.set_defaults(func=cmd_show)

    totals = sub.add_parser("totals", help="energy and CO2 added up")
    totals.add_argument("--by", choices=["label", "notebook", "phase", "day"], default="label")
    totals.add_argument("--since", help="e.g. 7d")
    totals.set_defaults(func=cmd_totals)

    export = sub.add_parser("export", help="stored runs to CSV, JSON or CodeCarbon's layout")
    export.add_argument("path")
    export.add_argument(
        "--format",
        choices=["codecarbon", "csv", "json"],
        help="the layout; default: by the name (*emissions.csv: codecarbon, .csv, .json)",
    )
    export.add_argument("--samples", action="store_true", help="include the power samples")
    _run_filters(export)
    export.set_defaults(func=cmd_export)

    imp = sub.add_parser("import", help="runs from CodeCarbon's emissions.csv or a JSON export")
    imp.add_argument("path")
    imp.set_defaults(func=cmd_import)

    store = sub.add_parser("store", help="check the store file, or recover a damaged one")
    store_sub = store.add_subparsers(dest="store_command", required=True)
    check = store_sub.add_parser("check", help="integrity, schema version and counts")
    check.set_defaults(func=cmd_store_check)
    recover = store_sub.add_parser(
        "recover", help="move a damaged store aside and copy what can be read into a fresh one"
    )
    recover.set_defaults(func=cmd_store_recover)

    for command in (measure, runs, show, totals, export, imp, check, recover):
        command.add_argument("--db", default=None, help="the SQLite file (CARBON_JUPYTER_DB)")
    forward_cli.register(sub)
    server_cli.register(sub)
    sweep_cli.register(sub)
    run_cli.register(sub, _location_args)
    demo_cli.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command: Command = args.func
    try:
        return command(args)
    except CarbonError as exc:
        print(f"carbon-jupyter: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
