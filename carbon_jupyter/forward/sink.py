"""The forwarding sink: what a tracker hands it is queued in memory, nothing more.

:class:`ForwardSink` implements :class:`~carbon_jupyter.sink.RunSink`. Each call
appends one event to its sender's queue (:mod:`carbon_jupyter.forward.sender`)
and returns: no I/O, no SQLite, no network on the tracker's thread, and it
never raises. :class:`BothSinks` puts it beside the store's sink, so a run goes
to the local file as before and to the server as well; a failure in
forwarding never reaches the store or the cell.
"""

from __future__ import annotations

from collections.abc import Sequence

from carbon_jupyter.forward.sender import Sender
from carbon_jupyter.model import Run, Sample
from carbon_jupyter.sink import RunSink


class ForwardSink:
    """Queues a tracker's calls for ``sender``."""

    def __init__(self, sender: Sender) -> None:
        self.sender = sender

    def begin_run(self, run: Run) -> None:
        self.sender.enqueue(("begin", run))

    def add_samples(self, run_id: str, samples: Sequence[Sample]) -> None:
        if samples:
            self.sender.enqueue(("samples", (run_id, tuple(samples))))

    def finish_run(self, run: Run) -> None:
        self.sender.enqueue(("finish", run))


class BothSinks:
    """The store's sink and the forwarding sink, each given every call.

    The forwarding sink comes first (it only queues); then the store, whose
    failure the tracker reports as before.
    """

    def __init__(self, store: RunSink, forward: ForwardSink) -> None:
        self.store = store
        self.forward = forward

    @property
    def path(self) -> object:
        """The store's file, where the store's sink has one (None otherwise)."""
        return getattr(self.store, "path", None)

    def begin_run(self, run: Run) -> None:
        self.forward.begin_run(run)
        self.store.begin_run(run)

    def add_samples(self, run_id: str, samples: Sequence[Sample]) -> None:
        self.forward.add_samples(run_id, samples)
        self.store.add_samples(run_id, samples)

    def finish_run(self, run: Run) -> None:
        self.forward.finish_run(run)
        self.store.finish_run(run)
