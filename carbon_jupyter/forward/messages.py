"""From what a tracker hands the forwarding sink to the requests a team server takes.

A tracker calls ``begin_run``, ``add_samples`` (about once a second) and
``finish_run`` (see :mod:`carbon_jupyter.sink`); the sink queues each call as
an *event*. :class:`Numbering` turns events into
:class:`~carbon_jupyter.forward.outbox.Message` requests in order:

* ``begin_run`` → ``PUT /api/v1/runs/{id}`` with the run as it starts;
* ``add_samples`` → ``POST /api/v1/runs/{id}/samples``; each run's samples are
  numbered from 1 in the order they arrive, which is how the local store numbers
  them (``samples.seq``), so a batch sent live and again by ``carbon-jupyter
  push`` is stored once;
* ``finish_run`` → the samples the final run carries that no batch had (as the
  store adds them), then ``PUT`` of the final run.

Events converted together are sent with fewer requests: consecutive batches of
one run become one request (up to
:data:`~carbon_jupyter.forward.wire.MAX_SAMPLES_PER_REQUEST` samples), and a run
begun and finished within them is put once, final, where it began.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from carbon_jupyter.forward.delivery import dumps
from carbon_jupyter.forward.outbox import Message
from carbon_jupyter.forward.wire import MAX_SAMPLES_PER_REQUEST, run_body, sample_body
from carbon_jupyter.model import Run, Sample

_MAX = MAX_SAMPLES_PER_REQUEST
#: A sink call: ("begin", Run), ("samples", (run_id, samples)) or ("finish", Run).
Event = tuple[str, Any]


def run_path(run_id: str) -> str:
    """``/api/v1/runs/{run_id}``, the id escaped."""
    return f"/api/v1/runs/{quote(run_id, safe='')}"


def put_run(run: Run, hardware: dict[str, Any] | None = None,
            versions: dict[str, str] | None = None) -> Message:  # fmt: skip
    """``PUT`` of ``run`` as it stands; hardware and versions default to this machine's now."""
    if hardware is None or versions is None:
        from carbon_jupyter.store.rows import hardware_summary, versions_summary

        hardware = hardware_summary(run) if hardware is None else hardware
        versions = versions_summary() if versions is None else versions
    body = run_body(run, hardware=hardware, versions=versions)
    return Message("PUT", run_path(run.id), dumps(body), run.id)


def post_samples(run_id: str, first_seq: int, samples: Sequence[Sample]) -> list[Message]:
    """``POST``\\ s of ``samples`` numbered from ``first_seq``, at most a request's worth each."""
    step = MAX_SAMPLES_PER_REQUEST
    path = run_path(run_id) + "/samples"
    found = []
    for i in range(0, len(samples), step):
        part = samples[i : i + step]
        bodies = [sample_body(first_seq + i + n, s) for n, s in enumerate(part)]
        found.append(_samples_message(path, run_id, bodies))
    return found


def _samples_message(path: str, run_id: str, bodies: list[dict[str, Any]]) -> Message:
    return Message("POST", path, dumps({"samples": bodies}), run_id, len(bodies))


@dataclass
class _Cursor:
    """Where a run's numbering stands: the next ``seq``, the newest sample time per device."""

    next_seq: int = 1
    newest_t_s: dict[str, float] = field(default_factory=dict)


class Numbering:
    """Turns queued events into requests, keeping each live run's sample numbering.

    Not thread-safe: the sender converts under its own lock.
    """

    def __init__(self) -> None:
        self._cursors: dict[str, _Cursor] = {}

    def messages(self, events: Iterable[Event]) -> list[Message]:
        """The requests for ``events``, in order, with fewer requests where it changes nothing."""
        out: list[Message] = []
        batch: tuple[str, list[dict[str, Any]]] | None = None  # run_id, its sample bodies

        def close() -> None:
            nonlocal batch
            if batch is not None:
                out.append(_samples_message(run_path(batch[0]) + "/samples", *batch))
                batch = None

        for kind, payload in events:
            if kind == "samples" or kind == "finish":
                if kind == "finish":
                    run_id, samples = payload.id, self._missing(payload)
                else:
                    run_id, samples = payload
                bodies = self._numbered(run_id, samples)
                while bodies:
                    if batch is None or batch[0] != run_id or len(batch[1]) >= _MAX:
                        close()
                        batch = (run_id, [])
                    room = _MAX - len(batch[1])
                    batch[1].extend(bodies[:room])
                    bodies = bodies[room:]
            if kind == "begin" or kind == "finish":
                close()
                out.append(put_run(payload))
                if kind == "begin":
                    self._cursors[payload.id] = _Cursor()
                else:
                    self._cursors.pop(payload.id, None)
        close()
        return _put_once(out)

    def _missing(self, run: Run) -> list[Sample]:
        """The final run's samples newer than any batch had, per device (as the store adds them)."""
        cursor = self._cursors.get(run.id, _Cursor())
        return [s for s in run.samples if s.t_s > cursor.newest_t_s.get(s.device_id, float("-inf"))]

    def _numbered(self, run_id: str, samples: Sequence[Sample]) -> list[dict[str, Any]]:
        cursor = self._cursors.setdefault(run_id, _Cursor())
        first = cursor.next_seq
        cursor.next_seq += len(samples)
        newest = cursor.newest_t_s
        for s in samples:
            if s.t_s > newest.get(s.device_id, float("-inf")):
                newest[s.device_id] = s.t_s
        return [sample_body(first + n, s) for n, s in enumerate(samples)]


def _put_once(messages: list[Message]) -> list[Message]:
    """A run put twice among ``messages``: its last PUT in place of its first, once."""
    first: dict[str, int] = {}
    drop: set[int] = set()
    for index, m in enumerate(messages):
        if m.method != "PUT" or m.run_id is None:
            continue
        if m.run_id in first:
            messages[first[m.run_id]] = m
            drop.add(index)
        else:
            first[m.run_id] = index
    return [m for i, m in enumerate(messages) if i not in drop] if drop else messages
