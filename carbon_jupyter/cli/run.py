"""``carbon-jupyter run -- COMMAND ...``: track any program and its whole process tree.

::

    carbon-jupyter run --label finetune --phase train -- python train.py --epochs 3
    carbon-jupyter run -- torchrun --nproc-per-node 8 train.py      # one node: one run
    srun carbon-jupyter run -- python train.py                       # many nodes: one job

The program runs as if started directly (same terminal, same exit code); its
run is stored like a cell's (and forwarded when a team server is set), and the
summary goes to stderr when it ends. A program that fails is stored as
``error`` with its exit status; Ctrl-C (or SLURM's SIGTERM) reaches the
program, and the run is stored as ``interrupted``. Under a launcher that names
a job (``srun``, ``torchrun`` with ``TORCHELASTIC_RUN_ID``), or with ``--job``,
each process is a part of that job (see :mod:`carbon_jupyter.jobs`).
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from carbon_jupyter.errors import ConfigError


def _tags(pairs: list[str] | None) -> dict[str, str]:
    tags = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--tag {pair!r}: write a tag as KEY=VALUE")
        tags[key.strip()] = value
    return tags


def _exit_code(returncode: int) -> int:
    """The shell's exit code for ``returncode`` (a signal N becomes 128 + N)."""
    return 128 - returncode if returncode < 0 else returncode


def cmd_run(args: argparse.Namespace) -> int:
    from carbon_jupyter.measure.tracker import Tracker, with_forwarding
    from carbon_jupyter.show import format as fmt
    from carbon_jupyter.store import open_sink

    command = list(args.program)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise ConfigError("give the program after --, e.g. carbon-jupyter run -- python train.py")
    options: dict[str, Any] = {
        "phase": args.phase, "items": args.items, "interval": args.interval,
        "country": args.country, "region": args.region, "intensity": args.intensity,
        "pue": args.pue, "tags": _tags(args.tag), "job": args.job,
    }  # fmt: skip
    label = args.label or Path(command[0]).name
    Tracker(label, sink=None, sensors=(), **options)  # a bad option is refused before anything
    sink = open_sink(args.db)
    tracker = Tracker(label, sink=with_forwarding(sink), **options).start()
    try:
        child = subprocess.Popen(command)
    except OSError as exc:
        run = tracker.stop("error", error=f"cannot start {command[0]}: {exc.strerror}")
        print(fmt.summary(run), file=sys.stderr)
        return 127
    stopped = []

    def forward(signum: int, frame: Any) -> None:
        stopped.append(signum)
        if child.poll() is None:
            child.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        while True:
            try:
                returncode = child.wait()
                break
            except KeyboardInterrupt:  # the terminal sent SIGINT to the program too
                stopped.append(signal.SIGINT)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if returncode == 0:
        run = tracker.stop("ok")
    elif stopped or returncode in (-signal.SIGINT, -signal.SIGTERM, 130):
        run = tracker.stop("interrupted", error=f"stopped by signal (exit status {returncode})")
    else:
        run = tracker.stop("error", error=f"exit status {returncode}")
    print(fmt.summary(run), file=sys.stderr)
    if tracker.job is not None:
        print(
            f"  part of job {tracker.job.job_id} (rank {tracker.job.rank}): "
            f"`carbon-jupyter show {tracker.job.job_id}` adds up its parts",
            file=sys.stderr,
        )
    return _exit_code(returncode)


def register(sub: Any, location_args: Any) -> None:
    """Add ``run`` to the ``carbon-jupyter`` subcommands."""
    p = sub.add_parser(
        "run",
        help="track a program and its process tree: carbon-jupyter run -- python train.py",
        description="Run COMMAND, tracking it and every process it starts; store the run, "
        "print its summary, and exit with the program's exit code.",
    )
    p.add_argument("--label", help="the run's label (default: the program's name)")
    p.add_argument("--phase", choices=["train", "inference", "other"])
    p.add_argument("--items", type=int, help="items processed, for energy per item")
    p.add_argument("--tag", action="append", metavar="KEY=VALUE", help="a tag (repeatable)")
    p.add_argument(
        "--job",
        help="the distributed job this process is a part of (default: from the launcher: "
        "TORCHELASTIC_RUN_ID, SLURM_JOB_ID, CARBON_JUPYTER_JOB)",
    )
    p.add_argument("--interval", type=float, default=None, help="sampling interval, seconds")
    location_args(p)
    p.add_argument("--db", default=None, help="the SQLite file (CARBON_JUPYTER_DB)")
    p.add_argument("program", nargs=argparse.REMAINDER, help="-- COMMAND ARGS...")
    p.set_defaults(func=cmd_run)


__all__ = ["cmd_run", "register"]
