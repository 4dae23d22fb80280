"""A job as text: its totals, each host with its devices, and its parts.

A rank part whose CPU share is known shows it after its energy (``CPU share
41 % (5.74 mWh)``): its part of its host's busy CPU time, and the host's CPU
energy that stands for (see :mod:`carbon_jupyter.jobs.group`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from carbon_jupyter.show import format as fmt

if TYPE_CHECKING:
    from carbon_jupyter.jobs.group import Job, JobPart


def job_text(job: Job) -> str:
    """What ``carbon-jupyter show JOB`` prints."""
    ranks = sorted({p.rank for p in job.parts if p.kind == "rank" and p.rank is not None})
    lines = [
        f"job {job.job_id} ({job.label or 'no label'}): {job.status}, {len(job.hosts)} host(s), "
        f"{len(ranks)} rank(s), {fmt.duration(job.duration_s)}",
        f"  energy {fmt.energy(job.energy_j)} (CPU {fmt.energy(job.cpu_energy_j)}, "
        f"GPU {fmt.energy(job.gpu_energy_j)}, RAM {fmt.energy(job.ram_energy_j)}), "
        f"{fmt.mass(job.co2_g)} CO2e",
    ]
    for name, host in sorted(job.hosts.items()):
        lines.append(
            f"  host {name}: {fmt.energy(host.energy_j)}, {fmt.mass(host.co2_g)} CO2e, "
            f"ranks {','.join(map(str, host.ranks)) or '-'}"
        )
        for device_id, device in sorted(host.devices.items()):
            lines.append(
                f"    {device_id:<14} {fmt.energy(device['energy_j']):>10}  {device['method']}"
            )
    lines.append("  parts:")
    for part in job.parts:
        who = f"rank {part.rank}" if part.kind == "rank" else "host part"
        extra = _cpu_share_text(part) + (f"  {part.error}" if part.error else "")
        lines.append(
            f"    {part.run_id[:8]}  {who:<10} {part.host:<16} {part.status:<11} "
            f"{fmt.energy(part.energy_j):>10}{extra}"
        )
    return "\n".join(lines)


def _cpu_share_text(part: JobPart) -> str:
    """``  CPU share 41 % (5.74 mWh)`` for a rank whose share is known, else nothing."""
    if part.cpu_share is None:
        return ""
    energy = part.cpu_process_energy_j
    of_host = f" ({fmt.energy(energy)})" if energy is not None else ""
    return f"  CPU share {100 * part.cpu_share:.0f} %{of_host}"
