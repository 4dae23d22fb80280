"""Runs and samples shaped like the tracker's, for the store tests (no tests here)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

from carbon_jupyter.model import DeviceEnergy, DeviceInfo, Intensity, Run, Sample

REPO = Path(__file__).resolve().parents[1]

GPU = DeviceInfo("gpu:0", "gpu", "NVIDIA H100 80GB HBM3", "nvml-energy", uuid="GPU-1234",
                 power_limit_w=700.0)  # fmt: skip
CPU = DeviceInfo("cpu:0", "cpu", "AMD EPYC 9654", "rapl")
RAM = DeviceInfo("ram", "ram", "RAM 512 GB", "ram-model", detail="0.375 W/GB")
INTENSITY = Intensity(380.0, "ember", 2023, 1.2, "argument", chosen_by="argument", key="DEU")


def make_run(
    run_id: str | None = None,
    *,
    status: str = "ok",
    label: str | None = "fine-tune",
    phase: str | None = "train",
    started_at: str = "2024-05-01T12:00:00.000+00:00",
    duration_s: float = 10.0,
    gpu_j: float = 3000.0,
    cpu_j: float = 800.0,
    ram_j: float = 100.0,
    attribution: str = "device",
    intensity: Intensity = INTENSITY,
    **fields: object,
) -> Run:
    """A run as the tracker builds it: totals summed from devices, CO2 from the factor."""
    running = status == "running"
    devices = (
        DeviceEnergy(GPU, 0.0 if running else gpu_j, 0.0 if running else gpu_j * 0.5,
                     None if running else gpu_j / duration_s),
        DeviceEnergy(CPU, 0.0 if running else cpu_j, None, None if running else cpu_j / duration_s),
        DeviceEnergy(RAM, 0.0 if running else ram_j),
    )  # fmt: skip
    per_kind = {"gpu": 0.0, "cpu": 0.0, "ram": 0.0}
    for d in devices:
        per_kind[d.device.kind] += d.attributed_j(attribution)
    energy_j = sum(per_kind.values())
    co2_g = energy_j / 3.6e6 * intensity.pue * intensity.intensity_g_per_kwh
    base: dict[str, object] = {
        "id": run_id or str(uuid.uuid4()),
        "label": label,
        "phase": phase,
        "items": 64,
        "status": status,
        "started_at": started_at,
        "ended_at": None if running else "2024-05-01T12:00:10.000+00:00",
        "duration_s": 0.0 if running else duration_s,
        "attribution": attribution,
        "devices": devices,
        "intensity": intensity,
        "energy_j": energy_j,
        "cpu_energy_j": per_kind["cpu"],
        "gpu_energy_j": per_kind["gpu"],
        "ram_energy_j": per_kind["ram"],
        "co2_g": co2_g,
        "tags": {"execution_count": "7", "dataset": "imdb"},
        "notebook": "/home/ada/project/train.ipynb",
        "cell": "cell-3",
        "kernel": "kernel-abc",
        "user": "ada",
        "host": "lab-1",
    }
    base.update(fields)
    return Run(**base)  # type: ignore[arg-type]


def make_samples(start: int, count: int, interval_s: float = 1.0) -> list[Sample]:
    """``count`` ticks from tick ``start``: GPU at 300 W and CPU at 80 W, cumulative energy."""
    out = []
    for tick in range(start, start + count):
        t_s = tick * interval_s
        out.append(Sample(t_s, "gpu:0", 300.0, 300.0 * t_s, 95.0, 40 * 2**30, 150.0 * t_s))
        out.append(Sample(t_s, "cpu:0", 80.0, 80.0 * t_s, 50.0))
    return out


def dead_pid() -> int:
    """The process id of a process that has ended, as a killed kernel's would be."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return int(done.stdout)


def run_python(code: str, *args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter that imports this checkout."""
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        env=python_env(),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def python_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env
