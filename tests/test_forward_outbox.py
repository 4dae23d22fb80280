"""The forwarder's parts on a real SQLite file: numbering, batching, backoff, the lease, exit.

The sender tests that need a server are in ``test_forward.py``; these need none,
or only a port where nothing answers.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from carbon_jupyter.forward import outbox
from carbon_jupyter.forward.config import Destination, token_id
from carbon_jupyter.forward.delivery import backoff_s, coalesce
from carbon_jupyter.forward.messages import Numbering
from carbon_jupyter.forward.outbox import Holder, Message
from carbon_jupyter.forward.sink import BothSinks, ForwardSink
from carbon_jupyter.forward.wire import MAX_SAMPLES_PER_REQUEST
from carbon_jupyter.store import open_store
from tests.server_fixtures import free_port
from tests.test_forward_support import _forwarding_ends_with_the_test, outbox_rows  # noqa: F401
from tests.test_store_support import dead_pid, make_run, make_samples, python_env


class _Recorder:
    """Stands in for a sender: keeps the events a ForwardSink queues, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def enqueue(self, event: tuple[str, object]) -> None:
        self.events.append(event)


def test_samples_are_numbered_as_the_store_numbers_them(tmp_path: Path) -> None:
    from dataclasses import replace

    store = open_store(tmp_path / "carbon.db")
    recorder = _Recorder()
    sink = BothSinks(store, ForwardSink(recorder))  # type: ignore[arg-type]
    started = make_run(status="running")
    sink.begin_run(started)
    for first in (0, 3, 6):
        sink.add_samples(started.id, make_samples(first, 3))
    # The final run carries every sample; the two newest ticks never came in a batch.
    final = replace(make_run(started.id), samples=tuple(make_samples(0, 11)))
    sink.finish_run(final)

    messages = Numbering().messages(recorder.events)  # type: ignore[arg-type]
    sent = [
        (s["seq"], s["t_s"], s["device_id"], s["energy_j"])
        for m in messages
        if m.method == "POST"
        for s in json.loads(m.body)["samples"]
    ]
    stored = [
        (n + 1, s.t_s, s.device_id, s.energy_j) for n, s in enumerate(store.samples(final.id))
    ]
    assert sent == stored
    assert len(stored) == 22
    # Begun and finished within one send: one PUT, the final one, before its samples.
    puts = [json.loads(m.body) for m in messages if m.method == "PUT"]
    assert [p["status"] for p in puts] == ["ok"]
    assert messages[0].method == "PUT"
    store.close()


def test_batches_of_one_run_go_as_one_request_up_to_the_limit() -> None:
    numbering = Numbering()
    a, b = make_run(status="running"), make_run(status="running")
    events: list[tuple[str, object]] = [("begin", a), ("begin", b)]
    events += [("samples", (a.id, make_samples(n, 100))) for n in range(0, 400, 100)]
    events += [("samples", (b.id, make_samples(0, 10))), ("samples", (a.id, make_samples(400, 5)))]
    messages = numbering.messages(events)  # type: ignore[arg-type]
    shape = [(m.method, m.run_id, m.samples) for m in messages]
    # 800 samples of run a: one full request, then the rest; b's batch; a's newest batch.
    assert shape == [
        ("PUT", a.id, 0),
        ("PUT", b.id, 0),
        ("POST", a.id, MAX_SAMPLES_PER_REQUEST),
        ("POST", a.id, 800 - MAX_SAMPLES_PER_REQUEST),
        ("POST", b.id, 20),
        ("POST", a.id, 10),
    ]
    # Rows read back from the outbox merge the same way; another run's rows stay apart.
    rows = [Message("POST", f"/api/v1/runs/{a.id}/samples", m.body, a.id, m.samples, n)
            for n, m in enumerate(messages[2:4])]  # fmt: skip
    (merged,) = coalesce(rows, limit=10_000)
    seqs = [s["seq"] for s in json.loads(merged.body)["samples"]]
    assert seqs == list(range(1, 801))
    assert len(list(coalesce(rows, limit=MAX_SAMPLES_PER_REQUEST))) == 2


def test_backoff_doubles_from_half_a_second_to_a_minute_with_jitter() -> None:
    import random

    rng = random.Random(7)
    for failures in range(1, 20):
        ceiling = min(60.0, 0.5 * 2 ** (failures - 1))
        waits = [backoff_s(failures, rng) for _ in range(200)]
        assert ceiling / 2 <= min(waits) and max(waits) <= ceiling
        assert max(waits) - min(waits) > ceiling / 4  # spread out, not in step
    assert backoff_s(100) <= 60.0


def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_one_process_holds_the_lease_until_it_dies_or_lets_it_expire(tmp_path: Path) -> None:
    from carbon_jupyter.store.lost import process_started

    path = tmp_path / "carbon.db"
    open_store(path).close()
    conn = outbox.connect(path)
    key = ("http://127.0.0.1:9", token_id("secret"))
    me = Holder.me()
    live = _sleeper()
    try:
        other = Holder(live.pid, me.host, process_started(live.pid))
        with outbox.write(conn):
            assert outbox.take_lease(conn, key, other) is None  # nobody held it
        with outbox.write(conn):
            assert outbox.take_lease(conn, key, me) == other  # a live holder keeps it
        # Another token is another outbox, with its own lease.
        with outbox.write(conn):
            assert outbox.take_lease(conn, (key[0], ""), me) is None
        # Expired: taken over even though the holder lives.
        conn.execute("UPDATE forward_state SET lease_until = 0 WHERE token_id = ?", (key[1],))
        with outbox.write(conn):
            assert outbox.take_lease(conn, key, me) is None
        with outbox.write(conn):
            assert outbox.take_lease(conn, key, other) == me
            outbox.release_lease(conn, key, me)
        with outbox.write(conn):
            assert outbox.take_lease(conn, key, other) is None
    finally:
        live.kill()
        live.wait()
    # The holder died (a killed kernel): the next process takes its lease at once.
    with outbox.write(conn):
        assert outbox.take_lease(conn, key, me) is None
    gone = Holder(dead_pid(), me.host, None)
    conn.execute(
        "UPDATE forward_state SET holder_pid = ?, lease_until = ? WHERE token_id = ?",
        (gone.pid, time.time() + 60, key[1]),
    )
    with outbox.write(conn):
        assert outbox.take_lease(conn, key, me) is None
    conn.close()


def test_a_refused_row_is_set_aside_and_push_puts_it_back_in_line(tmp_path: Path) -> None:
    path = tmp_path / "carbon.db"
    open_store(path).close()
    conn = outbox.connect(path)
    key = ("http://127.0.0.1:9", "")
    rows = [Message("PUT", f"/api/v1/runs/r{n}", "{}", f"r{n}") for n in range(3)]
    with outbox.write(conn):
        outbox.add(conn, key, rows)
        outbox.set_aside(conn, [rows[1].id or 0], "409 on PUT /api/v1/runs/r1: another project")
        outbox.record(conn, key, error="409 on PUT /api/v1/runs/r1: another project")
    assert [m.run_id for m in outbox.waiting(conn, key, 10)] == ["r0", "r2"]
    (state,) = outbox.states(conn)
    assert (state.waiting, state.rejected) == (2, 1)
    assert state.last_error is not None and "another project" in state.last_error
    with outbox.write(conn):
        assert outbox.requeue_rejected(conn, key) == 1
    assert [m.run_id for m in outbox.waiting(conn, key, 10)] == ["r0", "r1", "r2"]
    conn.close()


def test_the_outbox_is_a_schema_step_of_the_store(tmp_path: Path) -> None:
    """A fresh store has the outbox tables, and the step that made them is recorded."""
    path = tmp_path / "carbon.db"
    open_store(path).close()
    conn = sqlite3.connect(path)
    steps = [r[0] for r in conn.execute("SELECT name FROM _sqlite_migrations ORDER BY id")]
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    conn.close()
    assert steps.index("add_outbox") == steps.index("add_run_totals") + 1
    assert {"outbox", "forward_state"} <= tables


@pytest.mark.slow
def test_exit_keeps_what_is_in_memory_within_a_second_when_the_server_hangs(
    tmp_path: Path,
) -> None:
    """A server that takes connections but never answers: the process still ends at once."""
    hung = socket.socket()
    hung.bind(("127.0.0.1", free_port()))
    hung.listen(100)  # accepted by the kernel, never read: requests wait for their timeout
    url = f"http://127.0.0.1:{hung.getsockname()[1]}"
    db = tmp_path / "carbon.db"
    code = (
        "import time, carbon_jupyter as cj\n"
        "from tests.test_tracker import sensors\n"
        "with cj.track('hung', interval=0.05, sensors=sensors()) as t:\n"
        "    time.sleep(0.5)\n"
        "print(t.run.id, flush=True)\n"
        "import sys; sys.stderr.write(f'exit at {time.monotonic()}\\n')\n"
    )
    env = {**python_env(), "CARBON_JUPYTER_DB": str(db), "CARBON_JUPYTER_SERVER": url,
           "CARBON_JUPYTER_FORWARD_INTERVAL": "60"}  # fmt: skip
    try:
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                              text=True, timeout=60, check=False)  # fmt: skip
        ended = time.monotonic()
    finally:
        hung.close()
    assert done.returncode == 0, done.stderr
    exit_at = float(done.stderr.rsplit("exit at ", 1)[1])
    assert ended - exit_at < 1.8, f"the exit took {ended - exit_at:.2f} s"
    assert ended - started < 20
    run_id = done.stdout.strip()
    rows = outbox_rows(db)
    assert {r["run_id"] for r in rows} == {run_id}
    stored = open_store(db).samples(run_id)
    assert sum(r["samples"] for r in rows) == len(stored) > 0
    assert [r["method"] for r in rows][-1] == "POST" or any(r["method"] == "PUT" for r in rows)
    assert Destination.of(url).key == (rows[0]["server"], rows[0]["token_id"])
