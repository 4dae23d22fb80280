"""Where a tracker sends a run while it is live: the local store, a forwarder, a test list.

A tracker calls, in order and from any thread:

1. ``begin_run(run)`` once, at start: ``run.status == "running"``, energies zero,
   ``run.devices`` lists every device with zero energy.
2. ``add_samples(run_id, samples)`` about once a second with the samples taken
   since the previous call (a batch, never one call per sample).
3. ``finish_run(run)`` once, at stop, with the final run (``ok``, ``error`` or
   ``interrupted``).

A sink may raise; the tracker then keeps measuring, says so once, and returns
the run from memory. The store's own sink
(:func:`carbon_jupyter.store.open_sink`, the tracker's default) does not
raise for a store it cannot write just then (a full disk): it keeps the write
in memory, says so once, and makes it when the store can be written again
(:mod:`carbon_jupyter.store.pending`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from carbon_jupyter.model import Run, Sample


class RunSink(Protocol):
    def begin_run(self, run: Run) -> None: ...

    def add_samples(self, run_id: str, samples: Sequence[Sample]) -> None: ...

    def finish_run(self, run: Run) -> None: ...
