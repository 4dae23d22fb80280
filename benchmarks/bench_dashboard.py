"""How fast the team dashboard answers at 100k runs, on this machine.

    python benchmarks/bench_dashboard.py [--runs 100000] [--cold 5] [--repeat 20]

A fresh SQLite server database is filled with ``--runs`` runs (bulk inserts
through SQLAlchemy Core, then ``day_totals`` worked out from them, in one
transaction; 40 users in 8 projects, 200 labels, 12 hosts, spread over the
past year, 2 % still running), with an admin token and a project's read
token. Then a real server process (``carbon-jupyter serve``) is started on
127.0.0.1, and:

* first page load of ``/``, cold: the first request to a freshly started
  server process, ``--cold`` times (a new process each time); aim <= 200 ms;
* page load of ``/`` warm, as admin (every project) and as a project's
  reader, and ``/?label=...`` filtered; aim <= 200 ms;
* totals: ``GET /api/v1/totals?by=day`` and ``by=day,user`` (every day),
  the same over the last 90 days (what ``/`` draws), and that query alone
  in this process; aim <= 50 ms.

Every figure is the median over repeats with (min-max) beside it, then the
aim and a verdict. The database lives in a temporary folder, removed after.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from serving import fresh_server
from sqlalchemy import Engine, insert, select

from carbon_jupyter.server import queries, rollup
from carbon_jupyter.server.auth import create_token
from carbon_jupyter.server.dashboard.pages import totals_window
from carbon_jupyter.server.dashboard.params import runs_view
from carbon_jupyter.server.db.engine import migrate, open_database, writing
from carbon_jupyter.server.db.schema import projects, runs, users

PAGE_AIM_MS = 200.0
TOTALS_AIM_MS = 50.0
USERS, PROJECTS, LABELS, HOSTS = 40, 8, 200, 12
BATCH = 10_000


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


def fill(engine: Engine, count: int, seed: int = 7) -> None:
    """``count`` runs over the past year, in batches of inserts in one transaction."""
    rng = random.Random(seed)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    stamp = iso(now)
    with writing(engine) as conn:
        conn.execute(
            insert(projects),
            [{"name": f"project-{p}", "created_at": stamp} for p in range(PROJECTS)],
        )
        conn.execute(
            insert(users), [{"name": f"user-{u}", "created_at": stamp} for u in range(USERS)]
        )
        project_ids = {
            name: pid for pid, name in conn.execute(select(projects.c.id, projects.c.name))
        }
        user_ids = {name: uid for uid, name in conn.execute(select(users.c.id, users.c.name))}
        rows = []
        for n in range(count):
            user = rng.randrange(USERS)
            started = now - timedelta(seconds=rng.uniform(0, 365 * 86400))
            duration_s = rng.uniform(1, 3600)
            energy_j = duration_s * rng.uniform(50, 700)
            running = rng.random() < 0.02
            status = "running" if running else rng.choice(("ok",) * 18 + ("error", "interrupted"))
            rows.append(
                {
                    "id": f"{n:08x}-bench-{rng.getrandbits(48):012x}",
                    "project_id": project_ids[f"project-{user % PROJECTS}"],
                    "user_id": user_ids[f"user-{user}"],
                    "client_user": f"user-{user}",
                    "label": f"label-{rng.randrange(LABELS)}",
                    "phase": rng.choice(("train", "inference", "other")),
                    "status": status,
                    "started_at": iso(started),
                    "ended_at": None if running else iso(started + timedelta(seconds=duration_s)),
                    "day": started.date().isoformat(),
                    "duration_s": 0.0 if running else duration_s,
                    "attribution": "device",
                    "energy_j": 0.0 if running else energy_j,
                    "cpu_energy_j": 0.0 if running else energy_j * 0.3,
                    "gpu_energy_j": 0.0 if running else energy_j * 0.6,
                    "ram_energy_j": 0.0 if running else energy_j * 0.1,
                    "co2_g": 0.0 if running else energy_j * 400.0 / 3.6e6,
                    "intensity_g_per_kwh": 400.0,
                    "intensity_source": "ember",
                    "intensity_key": "DEU",
                    "pue": 1.0,
                    "pue_source": "default",
                    "host": f"host-{rng.randrange(HOSTS)}",
                    "tags": "{}",
                    "warnings": "[]",
                    "hardware": "{}",
                    "versions": "{}",
                    "received_at": stamp,
                    "updated_at": stamp,
                }
            )
            if len(rows) >= BATCH:
                conn.execute(insert(runs), rows)
                rows = []
        if rows:
            conn.execute(insert(runs), rows)
        # Inserted behind the server's back, so its kept totals are worked out here.
        rollup.rebuild(conn)


@contextmanager
def server(db: Path) -> Iterator[str]:
    """A server process on 127.0.0.1 for ``db``; its base URL once /healthz answers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARBON_JUPYTER_")}
    with fresh_server(db, env) as url:
        yield url


def timed_get(client: httpx.Client, path: str) -> float:
    """Milliseconds for one GET of ``path`` (the whole answer read), checked to be 200."""
    start = time.perf_counter()
    answer = client.get(path)
    elapsed_ms = (time.perf_counter() - start) * 1000
    if answer.status_code != 200:
        raise SystemExit(f"GET {path} answered {answer.status_code}: {answer.text[:300]}")
    return elapsed_ms


def figure(values: list[float]) -> str:
    return f"{statistics.median(values):7.1f} ms ({min(values):.1f}-{max(values):.1f})"


def report(name: str, values: list[float], aim_ms: float | None) -> bool:
    verdict = ""
    ok = True
    if aim_ms is not None:
        ok = statistics.median(values) <= aim_ms
        verdict = f"  aim <= {aim_ms:g} ms: {'met' if ok else 'MISSED'}"
    print(f"  {name:<52} {figure(values)}{verdict}")
    return ok


def repeat(times: int, measure: Callable[[], float]) -> list[float]:
    measure()  # one first request, not counted
    return [measure() for _ in range(times)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--cold", type=int, default=5, help="fresh server processes")
    parser.add_argument("--repeat", type=int, default=20, help="warm requests per figure")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="carbon-bench-dashboard-"))
    try:
        db = folder / "server.db"
        engine = open_database(str(db))
        migrate(engine)
        start = time.perf_counter()
        fill(engine, args.runs)
        print(
            f"{args.runs:,} runs inserted in {time.perf_counter() - start:.1f} s; "
            f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
            f"SQLite {sqlite3.sqlite_version}"
        )
        admin = create_token(engine, "bench-admin", "ops", "admin")
        reader = create_token(engine, "user-3", "project-3", "read")

        all_met = True
        print("\nfirst page load of / in a fresh server process (cold):")
        cold: dict[str, list[float]] = {"admin": [], "reader": []}
        for _ in range(args.cold):
            for name, token in (("admin", admin), ("reader", reader)):
                with server(db) as url, httpx.Client(base_url=url, timeout=60) as client:
                    client.cookies.set("carbon_jupyter_token", token)
                    cold[name].append(timed_get(client, "/"))
        all_met &= report("GET / (admin: every project, first request)", cold["admin"], PAGE_AIM_MS)
        all_met &= report("GET / (a project's reader, first request)", cold["reader"], PAGE_AIM_MS)

        since = totals_window(runs_view({}))[0].since
        with server(db) as url:
            as_admin = httpx.Client(base_url=url, timeout=60)
            as_admin.cookies.set("carbon_jupyter_token", admin)
            as_reader = httpx.Client(base_url=url, timeout=60)
            as_reader.cookies.set("carbon_jupyter_token", reader)
            print(f"\nwarm, median over {args.repeat}:")
            for name, client, path in (
                ("GET / (admin: every project)", as_admin, "/"),
                ("GET / (a project's reader)", as_reader, "/"),
                ("GET /?label=label-7 (admin)", as_admin, "/?label=label-7"),
                ("GET /?by=label&metric=co2 (admin)", as_admin, "/?by=label&metric=co2"),
                ("GET /?page=100 (admin)", as_admin, "/?page=100"),
            ):
                all_met &= report(
                    name, repeat(args.repeat, lambda c=client, p=path: timed_get(c, p)), PAGE_AIM_MS
                )
            headers = {"Authorization": f"Bearer {admin}"}
            api = httpx.Client(base_url=url, timeout=60, headers=headers)
            print("\ntotals:")
            for name, path in (
                ("GET /api/v1/totals?by=day", "/api/v1/totals?by=day"),
                ("GET /api/v1/totals?by=day,user", "/api/v1/totals?by=day,user"),
                (
                    "GET /api/v1/totals?by=day,user&since=<90 days>",
                    f"/api/v1/totals?by=day,user&since={since}",
                ),
            ):
                all_met &= report(
                    name, repeat(args.repeat, lambda p=path: timed_get(api, p)), TOTALS_AIM_MS
                )
            for client in (as_admin, as_reader, api):
                client.close()

        who = queries.Principal("bench-admin", "ops", "admin")
        member = queries.Principal("user-3", "project-3", "read")
        window, _ = totals_window(runs_view({}))
        print("\nthe dashboard's totals (by day and user, last 90 days), the query alone:")
        for name, principal in (("admin", who), ("reader", member)):

            def query(p: queries.Principal = principal) -> float:
                start = time.perf_counter()
                with engine.connect() as conn:
                    queries.totals(conn, ("day", "user"), window, p)
                return (time.perf_counter() - start) * 1000

            all_met &= report(
                f"queries.totals in this process ({name})",
                repeat(args.repeat, query),
                TOTALS_AIM_MS,
            )
        engine.dispose()
        print(f"\nverdict: {'every aim met' if all_met else 'some aims missed (above)'}")
        return 0
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
