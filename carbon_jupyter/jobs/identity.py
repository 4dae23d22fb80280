"""Which distributed job this process belongs to, and its place in it, from the launcher.

Launchers tell each process where it stands through the environment:

- the job: ``CARBON_JUPYTER_JOB``; ``TORCHELASTIC_RUN_ID`` (``torchrun``,
  ``accelerate launch``); ``SLURM_JOB_ID`` with ``SLURM_STEP_ID`` (``srun``);
- the rank: ``RANK``, ``SLURM_PROCID``, ``OMPI_COMM_WORLD_RANK`` or ``PMI_RANK``;
- the local rank: ``LOCAL_RANK``, ``SLURM_LOCALID``, ``OMPI_COMM_WORLD_LOCAL_RANK``
  or ``MPI_LOCALRANKID``;
- the world size: ``WORLD_SIZE``, ``SLURM_NTASKS``, ``OMPI_COMM_WORLD_SIZE`` or
  ``PMI_SIZE``.

An explicit ``job=`` (``track(..., job="exp-42")``, ``carbon-jupyter run
--job``) wins over the environment. SLURM counts only inside a job step
(``srun``, where ``SLURM_STEP_ID`` and ``SLURM_PROCID`` are set), so a
notebook server started in an allocation does not make every cell a part of
one job. ``CARBON_JUPYTER_HOST`` names the host (containers, tests).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from carbon_jupyter import context
from carbon_jupyter.errors import ConfigError

JOB_ENV = "CARBON_JUPYTER_JOB"
_JOB_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,63}$")
_RANKS = ("RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK", "PMI_RANK")
_LOCAL_RANKS = ("LOCAL_RANK", "SLURM_LOCALID", "OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID")
_WORLD_SIZES = ("WORLD_SIZE", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE")


@dataclass(frozen=True)
class JobIdentity:
    """One process of a distributed job: the job's id and this process's place in it."""

    job_id: str
    rank: int
    local_rank: int
    world_size: int | None
    host: str
    launcher: str

    def tags(self) -> dict[str, str]:
        """The tags every part of this process carries."""
        out = {
            "job": self.job_id,
            "rank": str(self.rank),
            "local_rank": str(self.local_rank),
            "launcher": self.launcher,
        }
        if self.world_size is not None:
            out["world_size"] = str(self.world_size)
        return out


def check_job_id(text: str) -> str:
    """A job id: 1 to 64 letters, digits and ``._:@+-``, starting with a letter or digit."""
    value = text.strip()
    if not _JOB_PATTERN.match(value):
        raise ConfigError(f"job id {text!r}: use 1 to 64 letters, digits and ._:@+- (e.g. exp-42)")
    return value


def _first_int(env: Mapping[str, str], names: tuple[str, ...]) -> int | None:
    for name in names:
        text = env.get(name, "").strip()
        if text:
            try:
                return int(text)
            except ValueError:
                raise ConfigError(f"{name}={text!r} is not a whole number") from None
    return None


def _job_from_env(env: Mapping[str, str]) -> tuple[str, str] | None:
    explicit = env.get(JOB_ENV, "").strip()
    if explicit:
        return explicit, "carbon-jupyter"
    elastic = env.get("TORCHELASTIC_RUN_ID", "").strip()
    if elastic:
        return elastic, "torchrun"
    slurm = env.get("SLURM_JOB_ID", "").strip()
    step = env.get("SLURM_STEP_ID", "").strip()
    if slurm and step and env.get("SLURM_PROCID", "").strip():
        return f"slurm-{slurm}.{step}", "slurm"
    return None


def job_identity(
    job: str | None = None, environ: Mapping[str, str] | None = None
) -> JobIdentity | None:
    """This process's job (``job`` given, else from the launcher's variables); None if none."""
    env = os.environ if environ is None else environ
    if job is not None:
        found: tuple[str, str] | None = (job, "carbon-jupyter")
    else:
        found = _job_from_env(env)
    if found is None:
        return None
    job_id, launcher = found
    rank = _first_int(env, _RANKS)
    local_rank = _first_int(env, _LOCAL_RANKS)
    return JobIdentity(
        job_id=check_job_id(job_id),
        rank=rank if rank is not None else 0,
        local_rank=local_rank if local_rank is not None else 0,
        world_size=_first_int(env, _WORLD_SIZES),
        host=context.host(),
        launcher=launcher,
    )
