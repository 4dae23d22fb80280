"""The parts of a job this process measures: its rank's GPUs, and the host part when it holds it.

Each rank of a job is a run tagged ``job``, ``rank``, ``local_rank``,
``world_size`` and ``part=rank``; it measures the GPUs its rank uses. Beside
it, :func:`start_host_part` competes for the host's lock
(:mod:`carbon_jupyter.jobs.hostpart`); the rank that holds it also measures
the host's CPU packages and RAM as a run tagged ``part=host``. Every device of
the job is so measured once; :mod:`carbon_jupyter.jobs.group` adds them up.

When the lock comes to a rank, and when a rank ends, the parts of this job that
died on this host are sent to the team server as ``lost``
(:func:`carbon_jupyter.jobs.lost.report_lost_parts`; only when runs are
forwarded).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from carbon_jupyter.jobs.hostpart import HostPart
from carbon_jupyter.jobs.identity import JobIdentity
from carbon_jupyter.jobs.lost import report_lost_parts
from carbon_jupyter.sensors.base import Sensor

if TYPE_CHECKING:
    from carbon_jupyter.measure.tracker import Tracker

#: Rank tags that a host part does not carry (it is the host's, whichever rank holds it).
_RANK_ONLY = ("rank", "local_rank", "part")


def rank_gpus(gpus: Sequence[Sensor], identity: JobIdentity, explicit: bool) -> list[Sensor]:
    """The GPUs a rank uses, of those this process sees.

    Chosen GPUs (``gpus=``, ``CARBON_JUPYTER_GPUS``) are all the rank's. A
    process that sees one GPU (``srun --gpus-per-task``, or
    ``CUDA_VISIBLE_DEVICES`` set per rank) uses it. A process that sees
    several (``torchrun`` leaves ``CUDA_VISIBLE_DEVICES`` alone) uses the one at
    its local rank, as ``torch.cuda.set_device(local_rank)`` does; none when
    there are fewer GPUs than local ranks.
    """
    if explicit or len(gpus) <= 1:
        return list(gpus)
    if identity.local_rank < len(gpus):
        return [gpus[identity.local_rank]]
    return []


def start_host_part(rank: Tracker, identity: JobIdentity, sensors: Sequence[Sensor]) -> HostPart:
    """Compete for the host's lock beside ``rank``; the host part's tracker while held.

    Taking the lock over (its holder ended or died) and stopping (``rank`` ends)
    each report the job's lost parts on this host to the team server.
    """
    from carbon_jupyter.measure.tracker import Tracker

    tags = {k: v for k, v in rank.tags.items() if k not in _RANK_ONLY}
    tags.update(part="host", holder_rank=str(identity.rank), holder_pid=str(os.getpid()))

    def make_tracker() -> Tracker:
        host = Tracker(
            rank.label,
            phase=rank.phase,
            interval=rank.interval_s,
            sensors=list(sensors),
            sink=rank.sink,
            tags=tags,
            notebook=rank.notebook,
            cell=rank.cell,
            attribution="device",
            job=False,
        )
        host.intensity = rank.intensity
        # Every sample reaches the store as it is taken: a holder that dies loses none.
        host.flush_interval_s = 0.0
        return host

    def report() -> None:
        report_lost_parts(rank.sink, identity)

    return HostPart(identity, make_tracker, on_taken=report, on_stopped=report).start()
