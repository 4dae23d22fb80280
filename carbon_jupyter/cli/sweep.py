"""``carbon-jupyter sweep``: run a notebook, script or command over configurations, and compare.

::

    carbon-jupyter sweep train.py -p dataset=small,large --threads 1,2 --repeat 2 --phase train
    carbon-jupyter sweep analysis.ipynb -p batch=32,128 --export report.html
    carbon-jupyter sweep -p size=1000,2000 -- ./bench --fast
    carbon-jupyter sweep --resume 3f2a9c1b7d4e train.py -p ...   # only what is missing
    carbon-jupyter sweep --show 3f2a9c1b7d4e --export sweep.csv  # a stored sweep again
    carbon-jupyter sweep train.py -p batch=32,128 --server http://carbon:8787   # the server runs it
    carbon-jupyter sweep train.py --threads 1,2 --server URL --executor dask://sched:8786
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from carbon_jupyter.errors import ConfigError

EXPORTS = (".csv", ".json", ".html")


def results_of(args: argparse.Namespace) -> Any:
    """Run the sweep the options describe (or load ``--show``), export it, and return it."""
    from carbon_jupyter.sweeps import results as results_module
    from carbon_jupyter.sweeps.api import sweep

    for path in args.export or []:
        if not path.endswith(EXPORTS):
            raise ConfigError(f"--export {path}: name a .csv, .json or .html file")
    if args.show and args.server:
        from carbon_jupyter.sweeps.api import load_remote

        results = load_remote(args.show, args.server, args.token, args.metric)
    elif args.show:
        results = results_module.load(args.show, store_path=args.db, metric=args.metric)
    else:
        if not args.target:
            raise ConfigError("give what to run: a notebook, a script, or -- COMMAND ARGS")
        results = sweep(
            args.target,
            args.param or [],
            threads=args.threads,
            gpus=args.gpus,
            repeat=args.repeat,
            phase=args.phase,
            items=args.items,
            label=args.label,
            metric=args.metric,
            resume=args.resume,
            params_as=args.params_as,
            output_dir=args.output_dir,
            store=args.db,
            server=args.server,
            token=args.token,
            executor=args.executor,
            wait=not args.detach,
        )
    for path in args.export or []:
        written = getattr(results, f"to_{path.rsplit('.', 1)[1]}")(path)
        print(f"wrote {written}", file=sys.stderr)
    return results


def cmd_sweep(args: argparse.Namespace) -> int:
    if args.detach and not args.server:
        raise ConfigError("--detach hands the sweep to a server: give --server URL too")
    results = results_of(args)
    print(f"sweep {results.sweep_id}")
    if args.detach:
        url = args.server.rstrip("/")
        print(f"submitted to {url}; follow it at {url}/sweeps/{results.sweep_id}")
        print(f"results: carbon-jupyter sweep --show {results.sweep_id} --server {url}")
        return 0
    print(results.table())
    if results.stopped:
        print(
            f"stopped: run `carbon-jupyter sweep --resume {results.sweep_id} ...` with the same "
            "target and axes to run what is missing",
            file=sys.stderr,
        )
        return 130
    return 0


def register(sub: Any) -> None:
    """Add ``sweep`` to the ``carbon-jupyter`` subcommands."""
    p = sub.add_parser(
        "sweep",
        help="run a notebook, script or command over configurations and compare them",
        description="Run TARGET once per configuration (parameters x threads x GPUs x repeats), "
        "each in a fresh process, tracked and stored, then compare energy, CO2e and time.",
    )
    p.add_argument(
        "target", nargs="*", help="a notebook (.ipynb), a script (.py), or -- COMMAND ARGS"
    )
    p.add_argument("-p", "--param", action="append", metavar="NAME=V1,V2", help="a parameter axis")
    p.add_argument("--threads", help="thread counts, e.g. 1,2,4 (with matching CPU affinity)")
    p.add_argument("--gpus", help="GPU subsets as CUDA_VISIBLE_DEVICES, e.g. none,0,0:1")
    p.add_argument("--repeat", type=int, default=1, help="runs per configuration (default 1)")
    p.add_argument("--phase", choices=["train", "inference", "other"])
    p.add_argument("--items", type=int, help="items per run, for energy per item (inference)")
    p.add_argument("--label", help="the runs' label (default: the target's name)")
    p.add_argument("--metric", help="the metric to set CO2e against (logged with log_metric)")
    p.add_argument("--resume", metavar="SWEEP_ID", help="run only what that sweep is missing")
    p.add_argument("--show", metavar="SWEEP_ID", help="compare a stored sweep; run nothing")
    p.add_argument(
        "--params-as", choices=["args", "env"], default="args",
        help="give scripts and commands their parameters as --NAME VALUE (args) or NAME=VALUE "
        "in the environment (env)",
    )  # fmt: skip
    p.add_argument("--output-dir", help="where run logs and executed notebooks go")
    p.add_argument(
        "--export", action="append", metavar="PATH", help="write the results (.csv/.json/.html)"
    )
    p.add_argument("--db", default=None, help="the SQLite file (CARBON_JUPYTER_DB)")
    p.add_argument(
        "--server",
        metavar="URL",
        help="hand the sweep to this team server, which runs it on its executor and keeps "
        "its runs (with --show: read the sweep from there)",
    )
    p.add_argument("--token", help="the server's token (CARBON_JUPYTER_TOKEN)")
    p.add_argument(
        "--executor",
        metavar="EXECUTOR",
        help="with --server: local (the server's machine) or dask://HOST:PORT (a Dask "
        "cluster); default: the server's own choice",
    )
    p.add_argument(
        "--detach", action="store_true", help="with --server: submit, print the id, and return"
    )
    p.set_defaults(func=cmd_sweep)
