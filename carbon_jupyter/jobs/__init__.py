"""Distributed jobs: one training on many processes and machines, measured once per device.

- :mod:`~carbon_jupyter.jobs.identity`: which job a process belongs to, from its launcher
  (``torchrun``, ``srun``, ``CARBON_JUPYTER_JOB``);
- :mod:`~carbon_jupyter.jobs.parts` and :mod:`~carbon_jupyter.jobs.hostpart`: each rank
  measures its GPUs; one rank per host (a lock that passes on when its holder dies)
  measures the host's CPU and RAM;
- :mod:`~carbon_jupyter.jobs.share`: each rank's share of its host's CPU, without
  reading the host's counters again;
- :mod:`~carbon_jupyter.jobs.lost`: the parts of dead processes told to the team
  server by the ranks that survive them;
- :mod:`~carbon_jupyter.jobs.group`: the parts added up, once per device, by host;
- :mod:`~carbon_jupyter.jobs.on_dask` and :mod:`~carbon_jupyter.jobs.hostfeed`: every
  host of a Dask cluster measured once, and drawn live one line per host;
- :mod:`~carbon_jupyter.jobs.show`: a job as text;
- :func:`job`: a job from Python.
"""

from __future__ import annotations

from carbon_jupyter.jobs.group import Job, group
from carbon_jupyter.jobs.identity import JobIdentity, job_identity


def job(job_id: str, *, store: str | None = None) -> Job:
    """Job ``job_id`` as one run: ``energy_j``, ``cpu_energy_j``, ``gpu_energy_j``,
    ``ram_energy_j``, ``co2_g``, ``status``, ``hosts`` and ``parts``.

    Read from the store (default: the usual file; every host's parts are there
    when the hosts share it). For a job spread over machines with their own
    files, the team server has them all: ``GET /api/v1/jobs/{job_id}``.
    """
    from carbon_jupyter.jobs.group import load

    return load(job_id, store)


__all__ = ["Job", "JobIdentity", "group", "job", "job_identity"]
