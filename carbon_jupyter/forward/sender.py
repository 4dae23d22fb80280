"""The background sender: one thread per process, store file and server.

The forwarding sink (:mod:`carbon_jupyter.forward.sink`) only appends what a
tracker hands it to an in-memory queue. This thread does the rest: about a
second after a run begins or ends, five seconds after its first live samples,
and then every ``interval_s`` seconds while samples come (it sleeps on an
:class:`threading.Event` otherwise, and never raises). Each send is about two
milliseconds of CPU, most of it HTTP; the interval keeps a live run's cost
under 0.01 % of a core (``benchmarks/bench_forward.py``).

1. It turns the queued runs and sample batches into requests
   (:mod:`carbon_jupyter.forward.wire`), numbering each run's samples from 1
   in arrival order, as the local store numbers them (``samples.seq``).
2. While the server is not known to be up, it writes them to the outbox in the
   store file first (:mod:`carbon_jupyter.forward.outbox`), so that a kernel
   restart loses nothing; then, holding the outbox lease, it sends the outbox
   in order, deleting each row the server took.
3. Once the outbox is empty and the server answered, it sends straight from
   memory (no SQLite on the way) until a request fails; then what is left goes
   to the outbox again.

Failures to connect, timeouts, 5xx and 429 are tried again after a backoff
(0.5 s doubling to 60 s, with jitter); a request the server refuses for good
is set aside in the outbox with its error (see :mod:`carbon_jupyter.forward.delivery`).
At interpreter exit every sender writes what it still holds in memory to the
outbox and tries one last send, within :data:`EXIT_BUDGET_S` seconds in all.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from carbon_jupyter.forward import outbox
from carbon_jupyter.forward.config import Destination
from carbon_jupyter.forward.delivery import Connection, Health, Outcome, Request, coalesce
from carbon_jupyter.forward.messages import Event, Numbering
from carbon_jupyter.forward.outbox import Holder, Message

#: Seconds the interpreter's exit may wait for every sender together.
EXIT_BUDGET_S = 2.0
#: How often a process at exit looks whether the lease has come free, in seconds.
LEASE_WAIT_STEP_S = 0.05
#: Outbox rows read at a time while sending.
READ_ROWS = 200
#: While another live process holds the lease, look again this often, in seconds.
LEASE_POLL_S = 15.0
#: The most samples kept in memory while the outbox cannot be written.
MAX_MEMORY_SAMPLES = 200_000
#: A run that begins or ends is sent this many seconds later (what else came is sent with it).
RUN_EDGE_S = 1.0
#: A run's first live samples are sent this many seconds after they came.
FIRST_SAMPLES_S = 5.0
#: Seconds between two updates of ``forward_state`` while sending straight from memory.
STATE_EVERY_S = 5.0


class Sender:
    """Sends the runs of this process to ``destination``, through the outbox of ``store_path``.

    Use :func:`sender_for` (one per process, store file and destination).
    ``clock`` is a monotonic clock in seconds.
    """

    def __init__(
        self,
        store_path: Path,
        destination: Destination,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store_path = store_path
        self.destination = destination
        self.key = destination.key
        self._clock = clock
        self._lock = threading.Lock()  # the queue, the due time, stopping
        self._state = threading.Lock()  # cursors, pending and in-flight messages
        self._event = threading.Event()
        self._done = threading.Condition()
        self._queue: deque[Event] = deque()
        #: Runs begun whose first samples have not come yet.
        self._young: set[str] = set()
        # The first cycle comes soon: it delivers what an earlier process left.
        self._due: float | None = clock() + RUN_EDGE_S
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._numbering = Numbering()
        self._pending: list[Message] = []
        self._inflight: list[Message] = []
        self._via_outbox = True
        self._health = Health(clock)
        self._conn: sqlite3.Connection | None = None
        self._http: Connection | None = None
        self._holder: Holder | None = None
        self._state_written = 0.0
        self._in_cycle = False
        self._left = False
        self._exit_budget_s = EXIT_BUDGET_S
        self.cycles = 0
        self._cpu_started: float | None = None
        #: Until when (monotonic) the lease held needs no renewal.
        self._lease_fresh_until = 0.0
        #: CPU seconds this sender's thread has used (``time.thread_time``).
        self.cpu_s = 0.0
        #: The other process that held the lease at the last try, if one did.
        self.other_holder: Holder | None = None

    # -- called from any thread ----------------------------------------------------------
    def start(self) -> Sender:
        """Start the thread (once)."""
        with self._lock:
            if self._thread is None and not self._stopping:
                self._thread = threading.Thread(
                    target=self._main, name="carbon-forward", daemon=True
                )
                self._thread.start()
        return self

    def enqueue(self, event: Event) -> None:
        """Queue one sink call; the thread sends it ``interval_s`` from now at the latest.

        A run that begins or ends is sent :data:`RUN_EDGE_S` from now, so the server
        shows it started (and finished) at once; a run's first live samples
        :data:`FIRST_SAMPLES_S` from now, so its plot starts early; later samples wait
        for the interval.
        """
        wake = False
        kind, payload = event
        with self._lock:
            self._queue.append(event)
            if kind == "samples":
                first = payload[0] in self._young
                self._young.discard(payload[0])
                after_s = FIRST_SAMPLES_S if first else self.destination.interval_s
            else:
                after_s = RUN_EDGE_S
                if kind == "begin":
                    self._young.add(payload.id)
                else:
                    self._young.discard(payload.id)
            due = self._clock() + min(after_s, self.destination.interval_s)
            if self._due is None or due < self._due:
                self._due = due
                wake = True
        if wake:
            self._event.set()

    def retry_now(self) -> None:
        """Send at once, without waiting for the backoff (the server is known to answer now)."""
        with self._lock:
            self._health.retry_at = 0.0
            self._due = self._clock()
        self._event.set()

    def in_memory(self) -> int:
        """Messages (and queued sink calls) held in memory, not yet in the outbox."""
        with self._lock:
            queued = len(self._queue)
        with self._state:
            return queued + len(self._pending) + len(self._inflight)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Send now, backoff or not, and wait up to ``timeout_s`` for that send.

        True when nothing is left to send (in memory or in the outbox).
        """
        deadline = time.monotonic() + timeout_s
        with self._done:
            target = self.cycles + (2 if self._in_cycle else 1)
        self.retry_now()
        with self._done:
            while self.cycles < target and self.alive:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._done.wait(left)
        return self.in_memory() == 0 and not self._left

    def request_stop(self, budget_s: float = EXIT_BUDGET_S) -> None:
        """Ask the thread to end: what is in memory goes to the outbox, a last send within
        ``budget_s`` seconds."""
        with self._lock:
            self._stopping = True
            self._exit_budget_s = max(0.05, budget_s)
        self._event.set()

    def join(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for the thread to end (after :meth:`request_stop`)."""
        if self._thread is not None:
            self._thread.join(max(0.0, timeout_s))

    def keep_in_outbox(self) -> None:
        """From another thread: write what is in memory to the outbox (a last resort at exit)."""
        if not self._state.acquire(timeout=0.2):
            return
        try:
            self._convert_locked()
            held = self._inflight + self._pending
        finally:
            self._state.release()
        if not held:
            return
        try:
            conn = outbox.connect(self.store_path, timeout_s=0.3)
            try:
                with outbox.write(conn):
                    outbox.add(conn, self.key, held)
            finally:
                conn.close()
        except sqlite3.Error:
            pass

    # -- without the thread (carbon-jupyter push) -----------------------------------------
    def open_outbox(self) -> sqlite3.Connection | None:
        """The outbox of the store file (created and brought up to date if need be)."""
        return self._outbox()

    def deliver_outbox(self, timeout_s: float = 3600.0) -> tuple[int, int, Holder | None]:
        """Send the outbox once from the calling thread: (delivered, left, the other sender).

        Delivers nothing when another live process holds the lease (it is sending them).
        """
        conn = self._outbox()
        if conn is None:
            return 0, 0, None
        before = self._health.tally.sent
        lease = self._persist_and_lease(conn)
        if lease == "held":
            self._drain_outbox(conn, self._clock() + timeout_s)
        sent = self._health.tally.sent - before
        self._write_state(conn, force=True)
        assert self._holder is not None
        with outbox.write(conn):
            left = outbox.count_waiting(conn, self.key)
            if lease == "held":
                outbox.release_lease(conn, self.key, self._holder)
        return sent, left, self.other_holder if lease == "other" else None

    def close(self) -> None:
        """Close the outbox connection and the HTTP client (a sender used without its thread)."""
        self._close()

    # -- the thread ----------------------------------------------------------------------
    def _main(self) -> None:
        self._cpu_started = time.thread_time()
        try:
            while True:
                with self._lock:
                    due, stopping = self._due, self._stopping
                if stopping:
                    break
                now = self._clock()
                if due is None or due > now:
                    self._event.wait(None if due is None else due - now)
                    self._event.clear()
                    continue
                with self._lock:
                    self._due = None
                self._run_cycle(final=False)
            self._run_cycle(final=True)
        finally:
            self._close()

    def _run_cycle(self, *, final: bool) -> None:
        with self._done:
            self._in_cycle = True
        try:
            self._cycle(final)
        except Exception as exc:  # never raises: say it, try again later
            self._note_error(f"forwarding failed: {type(exc).__name__}: {exc}")
            self._schedule(self._clock() + self.destination.interval_s)
        finally:
            if self._cpu_started is not None:  # on the thread: its CPU time so far
                self.cpu_s = time.thread_time() - self._cpu_started
            with self._done:
                self._in_cycle = False
                self.cycles += 1
                self._done.notify_all()

    def _schedule(self, at: float) -> None:
        with self._lock:
            self._due = at if self._due is None else min(self._due, at)

    def _cycle(self, final: bool) -> None:
        deadline = self._clock() + (self._exit_budget_s if final else 3600.0)
        if final:
            self._connection().set_timeout(max(0.05, min(0.5, self._exit_budget_s / 2)))
        with self._state:
            self._convert_locked()
            held = bool(self._pending)
        if not held and not self.store_path.exists():
            return  # nothing to send, and no outbox anyone could have left anything in
        conn = self._outbox()
        lease = "none"
        if conn is not None and (self._via_outbox or final):
            lease = self._persist_and_lease(conn)
            if lease == "other" and final:
                lease = self._await_lease(conn, deadline)
            if lease == "failed":
                conn = None
        if conn is None and final:
            return
        left = direct = False
        now = self._clock()
        if now < self._health.retry_at and not final:
            left = True  # backing off: what was held is in the outbox now, or still in memory
        elif conn is not None and self._via_outbox:
            left = self._drain_outbox(conn, deadline) if lease == "held" else True
        else:
            left, direct = self._send_pending(conn), True
        self._write_state(conn, force=final, throttled=direct)
        self._left = left
        if final and lease == "held" and conn is not None:
            self._release(conn)  # the process ends: the next one need not wait for the lease
        if left and not final:
            now = self._clock()
            if self._health.retry_at > now:
                self._schedule(self._health.retry_at)
            else:  # another process holds the lease: look again later
                self._schedule(now + max(self.destination.interval_s, LEASE_POLL_S))

    # -- events to messages ----------------------------------------------------------------
    def _convert_locked(self) -> None:
        """Turn the queued sink calls into messages at the end of ``_pending`` (holds _state)."""
        with self._lock:
            events = list(self._queue)
            self._queue.clear()
        if events:
            self._pending.extend(self._numbering.messages(events))

    # -- the outbox ------------------------------------------------------------------------
    def _outbox(self) -> sqlite3.Connection | None:
        """This thread's connection to the outbox, opened (schema brought up) at first use."""
        if self._conn is not None:
            return self._conn
        from carbon_jupyter.errors import StoreError
        from carbon_jupyter.store import Store, default_db_path, open_store

        try:
            if self.store_path == default_db_path():
                open_store()  # the shared store: schema up to date
            else:
                Store(self.store_path).close()
            self._conn = outbox.connect(self.store_path)
        except (StoreError, sqlite3.Error, OSError) as exc:
            self._note_error(f"cannot keep requests in {self.store_path}: {exc}")
            return None
        self._holder = Holder.me()
        return self._conn

    def _persist_and_lease(self, conn: sqlite3.Connection) -> str:
        """Write what is held in memory to the outbox and take the lease.

        ``held`` (this process sends the outbox now), ``other`` (another one does) or
        ``failed`` (the outbox cannot be written: what was held stays in memory).
        """
        assert self._holder is not None
        with self._state:
            held, self._pending = self._pending, []
            self._inflight = held + self._inflight
        if not held and self._clock() < self._lease_fresh_until:
            return "held"  # nothing to write, and the lease has long to run
        try:
            with outbox.write(conn):
                other = outbox.take_lease(conn, self.key, self._holder)
                outbox.add(conn, self.key, held)
        except sqlite3.Error as exc:
            with self._state:
                self._pending = held + self._pending
                self._inflight = self._inflight[len(held) :]
            self._note_error(f"cannot keep requests in {self.store_path}: {exc}")
            return "failed"
        with self._state:
            self._inflight = self._inflight[len(held) :]
        self._via_outbox = True
        self.other_holder = other
        if other is not None:
            return "other"
        self._lease_fresh_until = self._clock() + outbox.LEASE_S / 2
        return "held"

    def _await_lease(self, conn: sqlite3.Connection, deadline: float) -> str:
        """At exit, while another process holds the lease: wait for it within the budget.

        The other may be ending too (ranks of one job end together) and give the
        lease back after its last send; what this process just left in the outbox
        would then wait for the next process to use the file. ``held`` once taken,
        else ``other`` (the holder lives on and sends it at its next cycle).
        """
        assert self._holder is not None
        while self._clock() < deadline - LEASE_WAIT_STEP_S:
            time.sleep(LEASE_WAIT_STEP_S)
            try:
                with outbox.write(conn):
                    other = outbox.take_lease(conn, self.key, self._holder)
            except sqlite3.Error:
                return "other"
            if other is None:
                self.other_holder = None
                return "held"
        return "other"

    def _drain_outbox(self, conn: sqlite3.Connection, deadline: float) -> bool:
        """Send the outbox in order while the server takes it; give the lease back when empty.

        Returns True when rows are left (the server failed, time ran out, the lease was lost).
        """
        assert self._holder is not None
        after = 0
        renewed = self._clock()
        while self._clock() < deadline:
            rows = outbox.waiting(conn, self.key, READ_ROWS, after_id=after)
            if not rows:
                with outbox.write(conn):
                    if outbox.count_waiting(conn, self.key) == 0:
                        outbox.release_lease(conn, self.key, self._holder)
                        self._lease_fresh_until = 0.0
                        self._via_outbox = not self._health.up
                        return False
                after = 0
                continue
            # While the server is not known to answer, the first row alone tries it:
            # nothing is merged (parsed and written again) for a try that may fail.
            for request in coalesce(rows if self._health.up else rows[:1]):
                if self._clock() >= deadline:
                    return True
                outcome = self._deliver(request)
                ids = [m.id for m in request.messages if m.id is not None]
                with outbox.write(conn):
                    if outcome.kind == "ok":
                        outbox.delete(conn, ids)
                    elif outcome.kind == "reject":
                        outbox.set_aside(conn, ids, outcome.error)
                    else:
                        outbox.failed(conn, ids, outcome.error)
                        self._record(conn)  # in the same transaction
                if outcome.kind == "retry":
                    return True
                after = ids[-1] if ids else after
            if self._clock() - renewed > outbox.LEASE_S / 3:
                with outbox.write(conn):
                    if outbox.take_lease(conn, self.key, self._holder) is not None:
                        return True  # taken over (this process was thought dead): leave it
                renewed = self._clock()
        return True

    def _send_pending(self, conn: sqlite3.Connection | None) -> bool:
        """Send what is held in memory straight to the server; True if some is left."""
        with self._state:
            batch, self._pending = self._pending, []
            self._inflight = batch
        requests = list(coalesce(batch))
        for n, request in enumerate(requests):
            outcome = self._deliver(request)
            if outcome.kind == "reject" and conn is not None:
                self._keep(conn, request.messages, rejected=outcome.error)
            elif outcome.kind == "retry":
                rest = [m for r in requests[n:] for m in r.messages]
                if conn is not None and self._keep(conn, rest):
                    self._via_outbox = True
                    rest = []
                with self._state:
                    self._pending = rest + self._pending
                    self._inflight = []
                self._trim_memory()
                return True
        with self._state:
            self._inflight = []
        return False

    def _release(self, conn: sqlite3.Connection) -> None:
        assert self._holder is not None
        self._lease_fresh_until = 0.0
        try:
            with outbox.write(conn):
                outbox.release_lease(conn, self.key, self._holder)
        except sqlite3.Error:
            pass

    def _keep(self, conn: sqlite3.Connection, messages: list[Message], rejected: str = "") -> bool:
        try:
            with outbox.write(conn):
                if rejected:
                    outbox.add_rejected(conn, self.key, messages, rejected)
                else:
                    outbox.add(conn, self.key, messages)
        except sqlite3.Error as exc:
            self._note_error(f"cannot keep requests in {self.store_path}: {exc}")
            return False
        return True

    def _trim_memory(self) -> None:
        """With no outbox to write to, keep at most MAX_MEMORY_SAMPLES samples (newest)."""
        with self._state:
            total = sum(m.samples for m in self._pending)
            dropped = 0
            while total > MAX_MEMORY_SAMPLES:
                index = next(i for i, m in enumerate(self._pending) if m.samples)
                total -= self._pending[index].samples
                dropped += self._pending.pop(index).samples
        if dropped:
            self._note_error(f"{dropped} live samples were dropped: the outbox cannot be written")

    def _write_state(
        self, conn: sqlite3.Connection | None, *, force: bool, throttled: bool = False
    ) -> None:
        """Note deliveries and errors in ``forward_state``.

        Sends straight from memory note theirs at most every :data:`STATE_EVERY_S`
        seconds: they are the ones that run while everything goes well.
        """
        if conn is None or not self._health.tally:
            return
        now = self._clock()
        recent = now - self._state_written < STATE_EVERY_S
        if throttled and not force and recent and not self._health.tally.error:
            return
        try:
            with outbox.write(conn):
                self._record(conn)
        except sqlite3.Error:
            return
        self._state_written = now

    def _record(self, conn: sqlite3.Connection) -> None:
        """Write what happened since the last time to ``forward_state`` (inside a transaction)."""
        tally = self._health.take_tally()
        if not tally:
            return
        try:
            outbox.record(
                conn,
                self.key,
                sent=tally.sent,
                sent_samples=tally.sent_samples,
                ok_at=tally.ok_at,
                error=tally.error,
                error_at=tally.error_at,
            )
        except BaseException:
            self._health.tally = tally  # the transaction rolls back: kept for the next write
            raise

    # -- delivery --------------------------------------------------------------------------
    def _connection(self) -> Connection:
        if self._http is None:
            self._http = Connection(self.destination)
        return self._http

    def _deliver(self, request: Request) -> Outcome:
        outcome = self._connection().send(request)
        self._health.after(outcome, request.samples)
        return outcome

    def _note_error(self, error: str) -> None:
        self._health.error(error)

    @property
    def last_error(self) -> str | None:
        """The last error this sender saw (also in ``forward_state``)."""
        return self._health.last_error

    def _close(self) -> None:
        if self._http is not None:
            self._http.close()
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None
