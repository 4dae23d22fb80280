"""The ``carbon-jupyter`` command line.

``carbon-jupyter doctor``
    What this machine can measure, what it cannot and why, and which carbon
    intensity and PUE a run would use.
``carbon-jupyter intensity [--list countries|regions] [--country C] [--region R]``
    Look up carbon-intensity factors in the embedded tables.
``carbon-jupyter measure [--seconds S] [LABEL]``
    Track a few seconds of this machine (idle or whatever else is running)
    and store the run: the quickest check that measuring works end to end.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable, Sequence

from carbon_jupyter import __version__
from carbon_jupyter import format as fmt
from carbon_jupyter.errors import CarbonError

Command = Callable[[argparse.Namespace], int]


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
            from carbon_jupyter.integrate import counter_delta_j

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
    from carbon_jupyter.tracker import Tracker

    tracker = Tracker(
        args.label,
        interval=args.interval,
        country=args.country,
        region=args.region,
        intensity=args.intensity,
        pue=args.pue,
        gpus=args.gpus,
    )
    tracker.start()
    try:
        time.sleep(args.seconds)
    except KeyboardInterrupt:
        run = tracker.stop("interrupted")
    else:
        run = tracker.stop()
    print(fmt.summary(run))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="carbon-jupyter",
        description="Measure the energy and CO2 of machine-learning work.",
    )
    parser.add_argument("--version", action="version", version=f"carbon-jupyter {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    doctor = sub.add_parser("doctor", help="what this machine can measure, and why not")
    doctor.add_argument("--gpus", help="all, or GPU indices such as 0,1")
    doctor.add_argument("--seconds", type=float, default=0.5, help="how long to read power")
    _location_args(doctor)
    doctor.set_defaults(func=cmd_doctor)

    intensity = sub.add_parser("intensity", help="look up carbon-intensity factors")
    intensity.add_argument("--list", choices=["countries", "regions"])
    _location_args(intensity)
    intensity.set_defaults(func=cmd_intensity)

    measure = sub.add_parser("measure", help="track this machine for a few seconds")
    measure.add_argument("label", nargs="?", default="measure")
    measure.add_argument("--seconds", type=float, default=5.0)
    measure.add_argument("--interval", type=float, default=None)
    measure.add_argument("--gpus", help="all, or GPU indices such as 0,1")
    _location_args(measure)
    measure.set_defaults(func=cmd_measure)
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
