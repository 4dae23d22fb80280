"""``carbon-jupyter push``: the local history sent to a team server once.

Every stored run that the filters select is put (``PUT /api/v1/runs/{id}``)
with its devices, its hardware and package versions as recorded, then its
samples in batches, numbered as the store numbers them. The server keeps each
run and each ``(run, seq)`` once, so pushing again stores nothing twice, and
runs that were forwarded live are not doubled either. Before the history, the
outbox is delivered: what a notebook could not send yet, and what the server
refused earlier (tried once more: the token may have been fixed since).

Refusals that concern the whole push (no server, not reachable, a token the
server does not know or that may only read) raise
:class:`~carbon_jupyter.errors.ForwardError` with one line naming the fix;
a run the server refuses (another project owns its id, a figure it finds
invalid) is counted and named, and the push goes on.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from carbon_jupyter.errors import CarbonError
from carbon_jupyter.forward.config import Destination
from carbon_jupyter.forward.delivery import Connection, Outcome, Request, backoff_s
from carbon_jupyter.forward.messages import post_samples, put_run
from carbon_jupyter.forward.outbox import Message
from carbon_jupyter.model import Run, Sample

#: Tries of one request while the server does not answer, before the push gives up.
TRIES = 5
#: How many refusals the summary names.
NAMED_REFUSALS = 5


class ForwardError(CarbonError):
    """Forwarding cannot go on: no server, not reachable, a token it refuses."""


@dataclass
class PushResult:
    """What a push sent and what the server made of it."""

    server: str
    runs: int = 0
    new_runs: int = 0
    samples: int = 0
    new_samples: int = 0
    outbox_sent: int = 0
    outbox_left: int = 0
    outbox_note: str = ""
    refused: int = 0
    refusals: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        found = [
            f"sent {self.runs} run{'s' * (self.runs != 1)} and {self.samples} "
            f"sample{'s' * (self.samples != 1)} to {self.server} ({self.new_runs} runs and "
            f"{self.new_samples} samples were new there)"
        ]
        if self.outbox_sent or self.outbox_left or self.outbox_note:
            text = f"outbox: {self.outbox_sent} waiting requests delivered"
            if self.outbox_left:
                text += f", {self.outbox_left} still waiting"
            found.append(text + (f" ({self.outbox_note})" if self.outbox_note else ""))
        if self.refused:
            found.append(f"refused by the server: {self.refused} request(s):")
            found.extend(f"  {r}" for r in self.refusals)
        return found


def check_server(destination: Destination, timeout_s: float = 2.0) -> tuple[bool, str]:
    """Ask ``/api/v1/me``: (True, who the token is) or (False, what is wrong and the fix)."""
    ok, said, _ = _who(destination, timeout_s)
    return ok, said


def _who(destination: Destination, timeout_s: float) -> tuple[bool, str, str | None]:
    """(answered, what to say, the token's scope) from ``GET /api/v1/me``."""
    connection = Connection(destination, timeout_s=timeout_s)
    try:
        outcome, answer = connection.get("/api/v1/me")
    finally:
        connection.close()
    if outcome.kind != "ok" or not isinstance(answer, dict):
        return False, _problem(destination, outcome), None
    scope = str(answer.get("scope"))
    if answer.get("open"):
        return True, "it answered: an open server (no tokens), runs go to project default", scope
    said = f"it answered: user {answer.get('user')}, project {answer.get('project')}, scope {scope}"
    if scope == "read":
        said += (
            "; a read token cannot send runs: use one with scope ingest "
            "(`carbon-jupyter serve token create ... --scope ingest`)"
        )
    return True, said, scope


def _problem(destination: Destination, outcome: Outcome) -> str:
    if outcome.status == 401:
        fix = (
            "give a token (--token, or CARBON_JUPYTER_TOKEN)"
            if not destination.token
            else "this token is unknown or revoked there: create one with `carbon-jupyter "
            "serve token create --user U --project P` and set CARBON_JUPYTER_TOKEN"
        )
        return f"{destination.url} refused the token (401): {fix}"
    if outcome.status == 403:
        return (
            f"{destination.url} refused the token (403): it may only read; use a token "
            "with scope ingest (`carbon-jupyter serve token create ... --scope ingest`)"
        )
    if outcome.status is None:
        return f"{outcome.error} (is `carbon-jupyter serve` running there?)"
    if outcome.status == 404:
        return f"{destination.url} has no carbon-jupyter API (404): check the address"
    return f"{destination.url}: {outcome.error}"


def push(
    destination: Destination,
    store_path: Path,
    *,
    filters: dict[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
) -> PushResult:
    """Send the outbox, then the runs of ``store_path`` that ``filters`` select, to ``destination``.

    ``filters`` are those of :meth:`carbon_jupyter.store.Store.iter_runs`.
    Raises :class:`ForwardError` when the server cannot take the push at all.
    """
    from carbon_jupyter.store import open_store

    store = open_store(store_path, create=False)  # a missing store: StoreMissingError
    ok, said, scope = _who(destination, timeout_s=5.0)
    if not ok:
        raise ForwardError(said)
    if scope == "read":
        raise ForwardError(_problem(destination, Outcome("reject", 403)))
    result = PushResult(destination.url)
    _deliver_outbox(destination, store_path, result)
    connection = Connection(destination)
    conn = sqlite3.connect(f"{store.path.as_uri()}?mode=ro", uri=True, timeout=10.0)
    last_said = time.monotonic()
    try:
        for run in store.iter_runs(**(filters or {})):
            _push_run(connection, conn, run, result)
            if progress is not None and time.monotonic() - last_said > 5.0:
                progress(f"{result.runs} runs and {result.samples} samples sent so far")
                last_said = time.monotonic()
    finally:
        conn.close()
        connection.close()
    _record(store_path, destination, result)
    return result


def _deliver_outbox(destination: Destination, store_path: Path, result: PushResult) -> None:
    """What waits in the outbox for this server and token, the refused rows tried once more."""
    from carbon_jupyter.forward import outbox
    from carbon_jupyter.forward.sender import Sender

    sender = Sender(store_path, destination)  # used here, in this thread; no thread started
    try:
        conn = sender.open_outbox()
        if conn is None:
            result.outbox_note = sender.last_error or "the outbox cannot be read"
            return
        with outbox.write(conn):
            outbox.requeue_rejected(conn, destination.key)
        result.outbox_sent, result.outbox_left, holder = sender.deliver_outbox()
        if holder is not None:
            result.outbox_note = f"{holder.describe()} is sending them"
        elif result.outbox_left and sender.last_error:
            result.outbox_note = sender.last_error
    finally:
        sender.close()


def _stored_context(conn: sqlite3.Connection, run_id: str) -> tuple[dict[str, Any], dict[str, str]]:
    row = conn.execute("SELECT hardware, versions FROM runs WHERE id = ?", (run_id,)).fetchone()
    hardware, versions = (row or (None, None))[:2]
    return _json_dict(hardware), _json_dict(versions)


def _json_dict(text: str | None) -> Any:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _samples(
    conn: sqlite3.Connection, run_id: str, batch: int
) -> Iterator[tuple[int, list[Sample]]]:
    """The stored samples of a run in batches: (seq of the first, samples), in seq order."""
    after = 0
    while True:
        rows = conn.execute(
            "SELECT seq, t_s, device_id, power_w, energy_j, utilization_pct, memory_used_b, "
            "process_energy_j FROM samples WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (run_id, after, batch),
        ).fetchall()
        if not rows:
            return
        # Runs of consecutive seq numbers (a store written by hand may have gaps).
        start = 0
        for i in range(1, len(rows) + 1):
            if i == len(rows) or rows[i][0] != rows[i - 1][0] + 1:
                yield int(rows[start][0]), [Sample(*r[1:]) for r in rows[start:i]]
                start = i
        after = int(rows[-1][0])


def _push_run(
    connection: Connection, conn: sqlite3.Connection, run: Run, result: PushResult
) -> None:
    from carbon_jupyter.forward.wire import MAX_SAMPLES_PER_REQUEST

    hardware, versions = _stored_context(conn, run.id)
    put = put_run(run, hardware, versions)
    outcome, answer = _send(connection, put)
    if outcome.kind != "ok":
        _refused(result, run, outcome)
        return
    result.runs += 1
    if isinstance(answer, dict) and answer.get("result") == "created":
        result.new_runs += 1
    for first_seq, samples in _samples(conn, run.id, MAX_SAMPLES_PER_REQUEST):
        for message in post_samples(run.id, first_seq, samples):
            outcome, answer = _send(connection, message)
            if outcome.kind != "ok":
                _refused(result, run, outcome)
                return
            result.samples += message.samples
            if isinstance(answer, dict) and isinstance(answer.get("stored"), int):
                result.new_samples += answer["stored"]


def _send(connection: Connection, message: Message) -> tuple[Outcome, Any]:
    """One request, tried again while the server does not answer; a lost token ends the push."""
    for attempt in range(1, TRIES + 1):
        outcome, answer = connection.request(Request(message.method, message.path, message.body))
        if outcome.kind != "retry":
            break
        if attempt < TRIES:
            time.sleep(backoff_s(attempt))
    else:
        raise ForwardError(
            f"{outcome.error}; the push stopped. Run it again when the server answers "
            "(nothing is stored twice)."
        )
    if outcome.status in (401, 403):
        raise ForwardError(_problem(connection.destination, outcome))
    return outcome, answer


def _refused(result: PushResult, run: Run, outcome: Outcome) -> None:
    result.refused += 1
    if len(result.refusals) < NAMED_REFUSALS:
        result.refusals.append(f"run {run.id} ({run.label or 'no label'}): {outcome.error}")


def _record(store_path: Path, destination: Destination, result: PushResult) -> None:
    """Note the delivery in ``forward_state``, so status shows it (a read-only store: skipped)."""
    from carbon_jupyter.forward import outbox
    from carbon_jupyter.store.rows import now_iso

    if not result.runs:
        return
    try:
        conn = outbox.connect(store_path, timeout_s=5.0)
        try:
            with outbox.write(conn):
                outbox.record(conn, destination.key, sent=result.runs, sent_samples=result.samples,
                              ok_at=now_iso())  # fmt: skip
        finally:
            conn.close()
    except sqlite3.Error:
        pass
