"""The outbox: requests waiting for a team server, kept in the run store's own SQLite file.

Two tables of the store (:mod:`carbon_jupyter.store.schema`, step ``add_outbox``):
``outbox`` holds the requests in the order they are to be sent, per server and
token fingerprint; ``forward_state`` holds, per server and token, the last
delivery, the last error, what was delivered, and the *lease*: which process
sends this file's outbox to that server now.

The lease makes one process at a time the sender for a server: a process takes
it when nobody holds it, when the holder let it expire (:data:`LEASE_S` after
its last renewal), or when the holder is a process of this host that has
died; it gives it back when nothing is left to send. So the kernel that
replaces a dead one (or ``carbon-jupyter push``) delivers what the dead one
left, and two live ones never send the same rows at once.

Every function takes an open :mod:`sqlite3` connection in autocommit mode
(:func:`connect`); the ones that write expect to be called inside
:func:`write` (``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

import os
import socket
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from carbon_jupyter.store.rows import now_iso
from carbon_jupyter.store.sqlite import immediate

#: How long a lease lasts after its holder last renewed it, in seconds.
LEASE_S = 60.0
#: How long one write waits for another writer of the file, in seconds.
BUSY_TIMEOUT_S = 10.0

Key = tuple[str, str]


@dataclass
class Message:
    """One request to a team server: ``method`` ``path`` with the JSON ``body`` text.

    ``id`` is the outbox row, None while the message is only in memory.
    ``samples`` counts the samples it carries (0 for a run).
    """

    method: str
    path: str
    body: str
    run_id: str | None
    samples: int = 0
    id: int | None = None


@dataclass(frozen=True)
class Holder:
    """A process that holds (or held) a lease."""

    pid: int
    host: str
    started: float | None

    @classmethod
    def me(cls) -> Holder:
        from carbon_jupyter.store.lost import process_started

        return cls(os.getpid(), socket.gethostname(), process_started(os.getpid()))

    def describe(self) -> str:
        return f"process {self.pid} on {self.host}"


@dataclass(frozen=True)
class State:
    """What the outbox and ``forward_state`` say about one server and token."""

    server: str
    token_id: str
    waiting: int
    waiting_samples: int
    rejected: int
    last_ok_at: str | None
    last_error: str | None
    last_error_at: str | None
    sent: int
    sent_samples: int
    holder: Holder | None
    lease_until: float | None

    def to_json(self) -> dict[str, Any]:
        holder = self.holder
        return {
            "server": self.server,
            "waiting": self.waiting,
            "waiting_samples": self.waiting_samples,
            "rejected": self.rejected,
            "last_ok_at": self.last_ok_at,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "sent": self.sent,
            "sent_samples": self.sent_samples,
            "sender_pid": holder.pid if holder is not None else None,
        }


def connect(path: Path, timeout_s: float = BUSY_TIMEOUT_S) -> sqlite3.Connection:
    """A connection to the store file at ``path`` (its schema already up to date)."""
    conn = sqlite3.connect(path, timeout=timeout_s, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA synchronous=NORMAL")
    except sqlite3.Error:
        conn.close()
        raise
    return conn


#: A write transaction holding the file's write lock from its start.
write = immediate


def has_outbox(conn: sqlite3.Connection) -> bool:
    """Whether the file has the outbox tables (a store from before forwarding has not)."""
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'forward_state'"
    ).fetchone()
    return row is not None


# -- rows --------------------------------------------------------------------------------
def add(conn: sqlite3.Connection, key: Key, messages: Sequence[Message]) -> None:
    """Append ``messages``, in order; each gets its row ``id``."""
    created = now_iso()
    for m in messages:
        cursor = conn.execute(
            "INSERT INTO outbox (server, token_id, method, path, body, run_id, samples, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (*key, m.method, m.path, m.body, m.run_id, m.samples, created),
        )
        m.id = cursor.lastrowid


def add_rejected(
    conn: sqlite3.Connection, key: Key, messages: Sequence[Message], error: str
) -> None:
    """Append ``messages`` set aside at once (refused by the server before they were kept)."""
    add(conn, key, messages)
    set_aside(conn, [m.id for m in messages if m.id is not None], error)


def waiting(
    conn: sqlite3.Connection, key: Key, limit: int, *, after_id: int = 0, rejected: bool = False
) -> list[Message]:
    """The oldest ``limit`` rows waiting for ``key`` after row ``after_id``.

    ``rejected=True`` lists the rows set aside instead.
    """
    condition = "IS NOT NULL" if rejected else "IS NULL"
    rows = conn.execute(
        "SELECT id, method, path, body, run_id, samples FROM outbox "
        f"WHERE server = ? AND token_id = ? AND rejected_at {condition} AND id > ? "
        "ORDER BY id LIMIT ?",
        (*key, after_id, limit),
    ).fetchall()
    return [Message(m, p, b, r, int(n), int(i)) for i, m, p, b, r, n in rows]


def count_waiting(conn: sqlite3.Connection, key: Key) -> int:
    row = conn.execute(
        "SELECT COUNT(*) FROM outbox WHERE server = ? AND token_id = ? AND rejected_at IS NULL",
        key,
    ).fetchone()
    return int(row[0])


def delete(conn: sqlite3.Connection, ids: Sequence[int]) -> None:
    conn.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in ids])


def failed(conn: sqlite3.Connection, ids: Sequence[int], error: str) -> None:
    """One more failed try for these rows (they stay waiting)."""
    conn.executemany(
        "UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE id = ?",
        [(error, i) for i in ids],
    )


def set_aside(conn: sqlite3.Connection, ids: Sequence[int], error: str) -> None:
    """Rows the server refused for good: kept, shown, no longer sent on their own."""
    now = now_iso()
    conn.executemany(
        "UPDATE outbox SET attempts = attempts + 1, last_error = ?, rejected_at = ? WHERE id = ?",
        [(error, now, i) for i in ids],
    )


def requeue_rejected(conn: sqlite3.Connection, key: Key) -> int:
    """Put the rows set aside for ``key`` back in line (``carbon-jupyter push``); how many."""
    cursor = conn.execute(
        "UPDATE outbox SET rejected_at = NULL WHERE server = ? AND token_id = ? "
        "AND rejected_at IS NOT NULL",
        key,
    )
    return int(cursor.rowcount)


# -- state and lease ---------------------------------------------------------------------
def _ensure_state(conn: sqlite3.Connection, key: Key) -> None:
    conn.execute(
        "INSERT INTO forward_state (server, token_id, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT (server, token_id) DO NOTHING",
        (*key, now_iso()),
    )


def take_lease(
    conn: sqlite3.Connection, key: Key, me: Holder, *, lease_s: float = LEASE_S
) -> Holder | None:
    """Hold (or renew) the lease for ``key``; None when this process holds it now.

    Returns the other holder when a live process holds an unexpired lease.
    """
    from carbon_jupyter.store.lost import process_alive

    _ensure_state(conn, key)
    pid, host, started, until = conn.execute(
        "SELECT holder_pid, holder_host, holder_started, lease_until FROM forward_state "
        "WHERE server = ? AND token_id = ?",
        key,
    ).fetchone()
    now = time.time()
    if pid is not None and until is not None and until > now:
        other = Holder(int(pid), str(host), started)
        mine = other.pid == me.pid and other.host == me.host and _same_start(other, me)
        dead = other.host == me.host and not mine and not process_alive(other.pid, started)
        if not mine and not dead:
            return other
    conn.execute(
        "UPDATE forward_state SET holder_pid = ?, holder_host = ?, holder_started = ?, "
        "lease_until = ? WHERE server = ? AND token_id = ?",
        (me.pid, me.host, me.started, now + lease_s, *key),
    )
    return None


def _same_start(a: Holder, b: Holder) -> bool:
    return a.started is None or b.started is None or abs(a.started - b.started) < 1.0


def release_lease(conn: sqlite3.Connection, key: Key, me: Holder) -> None:
    """Give the lease back, if this process holds it."""
    conn.execute(
        "UPDATE forward_state SET holder_pid = NULL, holder_host = NULL, holder_started = NULL, "
        "lease_until = NULL WHERE server = ? AND token_id = ? AND holder_pid = ? "
        "AND holder_host = ?",
        (*key, me.pid, me.host),
    )


def record(
    conn: sqlite3.Connection,
    key: Key,
    *,
    sent: int = 0,
    sent_samples: int = 0,
    ok_at: str | None = None,
    error: str | None = None,
    error_at: str | None = None,
) -> None:
    """Add what was delivered and note the last delivery or error."""
    _ensure_state(conn, key)
    conn.execute(
        "UPDATE forward_state SET sent = sent + ?, sent_samples = sent_samples + ?, "
        "last_ok_at = COALESCE(?, last_ok_at), last_error = COALESCE(?, last_error), "
        "last_error_at = COALESCE(?, last_error_at), updated_at = ? "
        "WHERE server = ? AND token_id = ?",
        (sent, sent_samples, ok_at, error, error_at or (error and now_iso()), now_iso(), *key),
    )


def states(conn: sqlite3.Connection, server: str | None = None) -> list[State]:
    """Every server (and token) this file forwards to, most recently active first."""
    if not has_outbox(conn):
        return []
    where, params = ("WHERE s.server = ?", (server,)) if server else ("", ())
    rows = conn.execute(
        "SELECT s.server, s.token_id, s.last_ok_at, s.last_error, s.last_error_at, s.sent, "
        "s.sent_samples, s.holder_pid, s.holder_host, s.holder_started, s.lease_until, "
        "(SELECT COUNT(*) FROM outbox o WHERE o.server = s.server AND o.token_id = s.token_id "
        " AND o.rejected_at IS NULL), "
        "(SELECT COALESCE(SUM(o.samples), 0) FROM outbox o WHERE o.server = s.server "
        " AND o.token_id = s.token_id AND o.rejected_at IS NULL), "
        "(SELECT COUNT(*) FROM outbox o WHERE o.server = s.server AND o.token_id = s.token_id "
        " AND o.rejected_at IS NOT NULL) "
        f"FROM forward_state s {where} ORDER BY s.updated_at DESC",
        params,
    ).fetchall()
    found = []
    now = time.time()
    for (srv, tid, ok_at, error, error_at, sent, sent_samples, pid, host, started, until,
         n_waiting, n_samples, n_rejected) in rows:  # fmt: skip
        live = pid is not None and until is not None and until > now
        found.append(
            State(
                server=srv,
                token_id=tid,
                waiting=int(n_waiting),
                waiting_samples=int(n_samples),
                rejected=int(n_rejected),
                last_ok_at=ok_at,
                last_error=error,
                last_error_at=error_at,
                sent=int(sent),
                sent_samples=int(sent_samples),
                holder=Holder(int(pid), str(host), started) if live else None,
                lease_until=until if live else None,
            )
        )
    return found
