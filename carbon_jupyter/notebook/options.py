"""The options of ``%%carbon`` and ``%carbon``: argparse parsers that raise UsageError."""

from __future__ import annotations

import argparse
from functools import lru_cache
from typing import Any

from IPython.core.error import UsageError

from carbon_jupyter.settings import ATTRIBUTIONS, PHASES


class Parser(argparse.ArgumentParser):
    """argparse that raises UsageError (with the usage line) instead of exiting."""

    def error(self, message: str) -> Any:
        raise UsageError(f"{message}\n{self.format_usage().strip()}")

    def exit(self, status: int = 0, message: str | None = None) -> Any:
        raise UsageError(message or self.format_usage().strip())

    def parse_known_args(self, *args: Any, **kwargs: Any) -> Any:
        namespace, extra = super().parse_known_args(*args, **kwargs)
        _dask_or_label(namespace)
        return namespace, extra


def _dask_or_label(args: argparse.Namespace) -> None:
    """``--dask train``: ``train`` is the label, not a scheduler's address."""
    given = getattr(args, "dask", None)
    if not given or ":" in given:
        return
    if getattr(args, "label", None) is not None:
        raise UsageError(
            f"--dask {given}: give the scheduler's address, e.g. --dask tcp://10.0.0.5:8786"
        )
    args.label, args.dask = given, ""


def dask_client(address: str | None) -> Any:
    """The Dask client ``--dask`` names: None without it, the kernel's with no address.

    ``--dask ADDRESS`` connects to the scheduler at ADDRESS (the kernel's client
    when it is connected there already).
    """
    if address is None:
        return None
    try:
        from distributed import get_client
    except ImportError:
        raise UsageError(
            "--dask needs Dask: pip install 'carbon-jupyter[dask]' (dask[distributed])"
        ) from None
    if not address:
        try:
            return get_client()
        except ValueError:
            raise UsageError(
                "no Dask client in this kernel: create one with "
                "`from dask.distributed import Client; client = Client(...)` first"
            ) from None
    try:
        return get_client(address)
    except Exception as exc:
        raise UsageError(f"--dask {address}: no Dask scheduler there ({exc})") from None


def _tracking_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("label", nargs="?", default=None, help="a name for the run")
    parser.add_argument("--phase", choices=PHASES, help="what the work is")
    parser.add_argument(
        "--items", type=int, help="samples or requests processed (per-item figures)"
    )
    parser.add_argument("--interval", type=float, help="sampling interval in seconds (0.05-60)")
    parser.add_argument("--country", help="ISO code or name of where the power comes from")
    parser.add_argument("--region", help="cloud region, e.g. aws:eu-west-1")
    parser.add_argument("--intensity", type=float, help="carbon intensity in gCO2e/kWh")
    parser.add_argument("--pue", help="data-centre PUE (1.0-3.0, or aws, gcp, azure, industry)")
    parser.add_argument("--gpus", help="all, or GPU indices such as 0,1")
    parser.add_argument("--attribution", choices=ATTRIBUTIONS, help="device totals or this process")
    parser.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--dask",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="measure every host of the Dask cluster too (the kernel's client, or ADDRESS)",
    )
    parser.add_argument("--no-plot", action="store_true", help="no live plot, summary only")
    parser.add_argument("--quiet", action="store_true", help="nothing shown; the run is stored")
    parser.add_argument(
        "--metric",
        action="append",
        default=[],
        metavar="NAME[=VARIABLE]",
        help="store a variable's value when the cell ends as the run's metric NAME",
    )


@lru_cache(maxsize=1)
def cell_parser() -> Parser:
    """The ``%%carbon`` options, built once (parsing leaves no state in the parser)."""
    parser = Parser(prog="%%carbon", add_help=False)
    _tracking_options(parser)
    return parser


def line_parser() -> Parser:
    parser = Parser(prog="%carbon", add_help=False)
    sub = parser.add_subparsers(dest="command", parser_class=Parser)
    start = sub.add_parser("start", add_help=False)
    _tracking_options(start)
    stop = sub.add_parser("stop", add_help=False)
    stop.add_argument("-o", dest="output", action="store_true", help="return the Run")
    sub.add_parser("status", add_help=False)
    server = sub.add_parser("server", add_help=False)
    server.add_argument("url", nargs="?", help="http(s)://host[:port], or off")
    server.add_argument("--token", help="the server's token (default: CARBON_JUPYTER_TOKEN)")
    auto = sub.add_parser("auto", add_help=False)
    auto.add_argument("state", choices=["on", "off"])
    runs = sub.add_parser("runs", add_help=False)
    runs.add_argument("--last", type=int, default=20)
    compare = sub.add_parser("compare", add_help=False)
    compare.add_argument("labels", nargs="*")
    compare.add_argument("--last", type=int, default=20)
    compare.add_argument("--by", choices=["label", "phase", "run"], default="label")
    show = sub.add_parser("show", add_help=False)
    show.add_argument("run_id")
    sub.add_parser("config", add_help=False)
    export = sub.add_parser("export", add_help=False)
    export.add_argument("path")
    export.add_argument("--format", choices=["codecarbon", "csv", "json"])
    export.add_argument("--samples", action="store_true", help="include the power samples")
    from carbon_jupyter.cli import sweep

    sweep.register(sub)
    return parser


def tags(pairs: list[str]) -> dict[str, str]:
    tags = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--tag {pair!r} is not KEY=VALUE, e.g. --tag model=resnet50")
        tags[key] = value
    return tags


def metric_specs(specs: list[str]) -> list[tuple[str, str]]:
    """``--metric accuracy`` / ``--metric acc=val_accuracy``: (metric name, variable name)."""
    out = []
    for spec in specs:
        name, _, variable = spec.partition("=")
        name, variable = name.strip(), (variable or name).strip()
        if not name or not variable.isidentifier():
            raise UsageError(
                f"--metric {spec!r}: give NAME or NAME=VARIABLE, e.g. --metric accuracy=acc"
            )
        out.append((name, variable))
    return out
