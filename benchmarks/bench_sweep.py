"""What the sweep machinery adds per configuration, against running the same target by hand.

    python benchmarks/bench_sweep.py [--configs 6] [--repeat 3] [--notebook]

Side by side in one run, each measurement starting fresh processes as a user
would (a fresh ``carbon-jupyter sweep`` process, a fresh store file):

1. **By hand**: ``python target.py --i N`` for each of ``--configs`` values, one
   after another, timed from outside.
2. **Swept**: ``carbon-jupyter sweep target.py -p i=1..N`` timed from outside:
   the CLI's start, every configuration's process start, tracking, storing and
   the comparison at the end.

Added per configuration = (swept - by hand) / configs; printed as the median
with min and max over ``--repeat`` rounds (the two run alternately), beside the
aim (<= 0.5 s per configuration for a script) and a verdict. With
``--notebook``, the same for a one-cell notebook against ``jupyter nbconvert
--execute``-style execution by hand (nbclient in a fresh process per run); no
aim is set for notebooks (a kernel's start dominates).

With ``--server``, a third column in the same rounds: the same sweep handed to a
fresh ``carbon-jupyter serve`` (its local executor, a fresh database) with
``carbon-jupyter sweep --server URL``, timed from the submitting command's start
to its table: the submission, the executor's queue, each configuration's run
sent to the server and confirmed, and the client's polling (every second).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serving import fresh_server

AIM_S = 0.5

SCRIPT = "import argparse\np = argparse.ArgumentParser()\np.add_argument('--i')\np.parse_args()\n"

BY_HAND_NOTEBOOK = """
import sys, nbformat
from nbclient import NotebookClient
nb = nbformat.read(sys.argv[1], as_version=4)
NotebookClient(nb, kernel_name="python3").execute()
"""


def _timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def _server_sweep(folder: Path, target: Path, values: str, env: dict[str, str]) -> float:
    """Wall seconds of the sweep handed to a fresh server on a fresh database."""
    with fresh_server(folder / f"server-{time.time_ns()}.db", env) as url:
        return _timed(
            [sys.executable, "-m", "carbon_jupyter", "sweep", str(target), "-p", f"i={values}",
             "--server", url],
            env,
        )  # fmt: skip


def one_round(
    folder: Path, configs: int, notebook: bool, server: bool = False
) -> tuple[float, float, float | None]:
    """(by hand, swept, swept by a server) wall seconds for ``configs`` configurations."""
    env = {**os.environ, "CARBON_JUPYTER_DB": str(folder / f"store-{time.time_ns()}.db")}
    if notebook:
        import nbformat

        target = folder / "target.ipynb"
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell("i = 0"), nbformat.v4.new_code_cell("x = i * 2")]
        nb.cells[0].metadata["tags"] = ["parameters"]
        nbformat.write(nb, target)
        runner = folder / "by_hand.py"
        runner.write_text(BY_HAND_NOTEBOOK)
        by_hand = sum(
            _timed([sys.executable, str(runner), str(target)], env) for _ in range(configs)
        )
    else:
        target = folder / "target.py"
        target.write_text(SCRIPT)
        by_hand = sum(
            _timed([sys.executable, str(target), "--i", str(i)], env) for i in range(configs)
        )
    values = ",".join(str(i) for i in range(configs))
    swept = _timed(
        [
            sys.executable, "-m", "carbon_jupyter", "sweep", str(target), "-p", f"i={values}",
            "--output-dir", str(folder / "out"),
        ],
        env,
    )  # fmt: skip
    env["CARBON_JUPYTER_EXECUTOR_DB"] = str(folder / f"executor-{time.time_ns()}.db")
    on_server = _server_sweep(folder, target, values, env) if server else None
    return by_hand, swept, on_server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--notebook", action="store_true")
    parser.add_argument("--server", action="store_true", help="also hand it to a server")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    added = []
    added_server: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):
            by_hand, swept, on_server = one_round(
                Path(tmp), args.configs, args.notebook, args.server
            )
            added.append((swept - by_hand) / args.configs)
            if on_server is not None:
                added_server.append((on_server - by_hand) / args.configs)
    median, low, high = statistics.median(added), min(added), max(added)
    kind = "notebook" if args.notebook else "script"
    print(f"sweep of {args.configs} {kind} configurations, {args.repeat} rounds")
    print(
        f"added per configuration: {median * 1000:.0f} ms "
        f"(min {low * 1000:.0f}, max {high * 1000:.0f})"
    )
    if args.notebook:
        print("aim: none for notebooks (the kernel's start dominates); verdict: reported only")
    else:
        verdict = "met" if median <= AIM_S else "MISSED"
        print(f"aim: <= {AIM_S * 1000:.0f} ms per configuration; verdict: {verdict}")
    if added_server:
        median_s = statistics.median(added_server)
        print(
            f"handed to a server: added per configuration {median_s * 1000:.0f} ms "
            f"(min {min(added_server) * 1000:.0f}, max {max(added_server) * 1000:.0f}); "
            "no aim (it includes the client's 1 s polling, shared by all configurations)"
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"kind": kind, "added_s": added, "added_on_server_s": added_server})
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
