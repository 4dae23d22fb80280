"""Ingest throughput and latency of the team server on loopback.

    python benchmarks/bench_ingest.py [--seconds 3] [--repeat 3] [--clients 1 8 32]
        [--config sqlite postgresql:1 postgresql:2] [--postgres URL]

For each configuration (SQLite with one worker; PostgreSQL with one and two
``--workers``) a fresh database and a fresh ``carbon-jupyter serve`` process
are started. Then, for 1, 8 and 32 concurrent clients (separate processes,
one keep-alive HTTP connection and one live run each, batches of 100
samples):

* **saturated**: every client posts its next batch as soon as the last one
  is answered, for ``--seconds``: samples stored per second (all clients
  together) is what the server can take; the latency is then mostly waiting
  in line behind the other clients' requests;
* **at the aim's rate** (8 clients only): the clients together offer 20,000
  samples/s (25 batches/s each, evenly spaced), and the latency of each
  request is measured: what clients see when the server takes that load.

Each figure is the median and (min-max) over ``--repeat`` rounds. The aim on
a 2-core machine: at least 20,000 samples/s, and a p99 of at most 50 ms at 8
clients. The clients run on the same machine and take CPU from the server,
so the figures are a lower bound for clients elsewhere. PostgreSQL comes from
``--postgres`` or ``CARBON_JUPYTER_TEST_POSTGRES``; a database
``cj_bench_<random>`` is created and dropped per configuration.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import secrets
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.server_fixtures import make_run, run_body, start_server

BATCH = 100
AIM_SAMPLES_PER_S = 20_000
AIM_P99_MS = 50.0
AIM_CLIENTS = 8
_HEADERS = {"content-type": "application/json"}


@dataclass
class Round:
    samples_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int


def _batch(first_seq: int) -> bytes:
    """One batch of ``BATCH`` samples from ``first_seq``, as the forwarder sends it."""
    items = ",".join(
        f'{{"seq":{s},"t_s":{s * 0.1:.1f},"device_id":"cpu:0","power_w":42.5,'
        f'"energy_j":{s * 4.25:.2f},"utilization_pct":37.0,"memory_used_b":null,'
        f'"process_energy_j":null}}'
        for s in range(first_seq, first_seq + BATCH)
    )
    return f'{{"samples":[{items}]}}'.encode()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _client(url: str, seconds: float, interval_s: float, start: Any, results: Any) -> None:
    """One client process: a live run, then batches until ``seconds`` have passed.

    It speaks HTTP with the standard library's ``http.client`` over one
    keep-alive connection: a light client, so that as much of the shared CPU
    as possible is left to the server.
    """
    run_id = str(uuid.uuid4())
    latencies: list[float] = []
    stored = errors = 0
    parsed = urlsplit(url)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
    path = f"/api/v1/runs/{run_id}/samples"

    def post(body: bytes) -> tuple[int, bytes]:
        for attempt in (1, 2):  # the server closes connections idle for 5 s: reconnect once
            try:
                connection.request("POST", path, body=body, headers=_HEADERS)
                answer = connection.getresponse()
                return answer.status, answer.read()
            except (ConnectionError, http.client.HTTPException):
                connection.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    start_body = json.dumps(run_body(make_run(run_id, status="running"))).encode()
    connection.request("PUT", f"/api/v1/runs/{run_id}", body=start_body, headers=_HEADERS)
    connection.getresponse().read()
    seq = 1
    for _ in range(3):  # warm the connection and the server's caches
        post(_batch(seq))
        seq += BATCH
    bodies = [_batch(seq + n * BATCH) for n in range(int(seconds * 400) + 10)]
    start.wait()
    began = time.perf_counter()
    for n, body in enumerate(bodies):
        due = began + n * interval_s
        now = time.perf_counter()
        if now - began >= seconds:
            break
        if due > now:
            time.sleep(due - now)
        sent = time.perf_counter()
        status, content = post(body)
        latencies.append(time.perf_counter() - sent)
        if status == 200:
            stored += json.loads(content)["stored"]
        else:
            errors += 1
    elapsed = time.perf_counter() - began
    connection.close()
    results.put((latencies, stored, errors, elapsed))


def one_round(url: str, clients: int, seconds: float, interval_s: float = 0.0) -> Round:
    """``clients`` processes posting batches for ``seconds`` (every ``interval_s`` at most)."""
    context = multiprocessing.get_context("fork")
    start = context.Event()
    results = context.Queue()
    workers = [
        context.Process(target=_client, args=(url, seconds, interval_s, start, results))
        for _ in range(clients)
    ]
    for w in workers:
        w.start()
    time.sleep(1.0 + 0.05 * clients)  # every client has its run and a warm connection
    start.set()
    collected = [results.get() for _ in workers]
    for w in workers:
        w.join()
    every = [x for latencies, *_ in collected for x in latencies]
    elapsed = max(c[3] for c in collected)
    return Round(
        samples_per_s=sum(c[1] for c in collected) / elapsed,
        p50_ms=_percentile(every, 0.50) * 1000,
        p99_ms=_percentile(every, 0.99) * 1000,
        errors=sum(c[2] for c in collected),
    )


@contextmanager
def database(kind: str, postgres: str | None, folder: Path) -> Iterator[str]:
    """A fresh database of ``kind`` for one configuration."""
    if kind == "sqlite":
        yield str(folder / "server.db")
        return
    if not postgres:
        raise SystemExit(
            "PostgreSQL configurations need --postgres URL or CARBON_JUPYTER_TEST_POSTGRES"
        )
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"cj_bench_{secrets.token_hex(4)}"
    with psycopg.connect(postgres, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(postgres).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(postgres, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _spread(values: list[float], digits: int = 0) -> str:
    fmt = f"{{:,.{digits}f}}"
    middle, low, high = statistics.median(values), min(values), max(values)
    return f"{fmt.format(middle)} ({fmt.format(low)}-{fmt.format(high)})"


def _row(label: str, rounds: list[Round]) -> str:
    return (
        f"{label:<34} {_spread([r.samples_per_s for r in rounds]):<24} "
        f"{_spread([r.p50_ms for r in rounds], 1):<20} "
        f"{_spread([r.p99_ms for r in rounds], 1):<20} {sum(r.errors for r in rounds)}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one round")
    parser.add_argument("--repeat", type=int, default=3, help="rounds per figure")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument(
        "--config",
        nargs="+",
        default=["sqlite", "postgresql:1", "postgresql:2"],
        help="sqlite, postgresql:WORKERS (or sqlite:WORKERS)",
    )
    parser.add_argument(
        "--postgres", default=os.environ.get("CARBON_JUPYTER_TEST_POSTGRES", "").strip() or None
    )
    args = parser.parse_args()

    print(
        f"ingest on loopback: batches of {BATCH} samples, {args.seconds:g} s rounds, median "
        f"(min-max) of {args.repeat}; {os.cpu_count()} CPUs shared by server and clients"
    )
    print(
        f"aim: >= {AIM_SAMPLES_PER_S:,} samples/s, p99 <= {AIM_P99_MS:g} ms at "
        f"{AIM_CLIENTS} clients\n"
    )
    print(f"{'configuration':<34} {'samples/s':<24} {'p50 ms':<20} {'p99 ms':<20} errors")
    verdicts: list[str] = []
    paced_interval_s = AIM_CLIENTS * BATCH / AIM_SAMPLES_PER_S
    for config in args.config:
        kind, _, workers_text = config.partition(":")
        workers = int(workers_text or 1)
        with (
            TemporaryDirectory() as tmp,
            database(kind, args.postgres, Path(tmp)) as db,
            start_server(Path(tmp), db=db, workers=workers) as server,
        ):
            name = f"{kind} x{workers}"
            saturated: dict[int, list[Round]] = {}
            for clients in args.clients:
                saturated[clients] = [
                    one_round(server.url, clients, args.seconds) for _ in range(args.repeat)
                ]
                print(_row(f"{name}, {clients} clients, saturated", saturated[clients]), flush=True)
            paced = [
                one_round(server.url, AIM_CLIENTS, args.seconds, paced_interval_s)
                for _ in range(args.repeat)
            ]
            print(_row(f"{name}, {AIM_CLIENTS} clients at the aim", paced), flush=True)
        capacity = statistics.median(r.samples_per_s for r in saturated.get(AIM_CLIENTS, paced))
        paced_p99 = statistics.median(r.p99_ms for r in paced)
        ok = capacity >= AIM_SAMPLES_PER_S and paced_p99 <= AIM_P99_MS
        verdicts.append(
            f"{name}: takes {capacity:,.0f} samples/s from {AIM_CLIENTS} clients; "
            f"p99 {paced_p99:.1f} ms at {AIM_SAMPLES_PER_S:,} samples/s -> "
            f"{'meets' if ok else 'misses'} the aim"
        )
    print()
    for line in verdicts:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
