"""Check the NVML path on real NVIDIA hardware: energy counter against sampled power, per GPU.

    python benchmarks/gpu_check.py [--seconds 20] [--interval 0.1] [--size 8192]

Runs a bf16 matrix-multiply loop on every visible GPU for ``--seconds`` while a
:class:`carbon_jupyter.Tracker` samples them, then prints for each GPU:

* the energy from NVML's total-energy counter (``nvml-energy``) over the span
  of the samples, and the trapezoid integral of the sampled power
  (``nvmlDeviceGetPowerUsage``) over the same span, and their ratio;
* the mean and peak power, the run's method per device, and the run's total.

Needs PyTorch with CUDA and an NVIDIA driver; on a machine without them it
says so and exits 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args()
    try:
        import torch
    except ImportError:
        print("PyTorch is not installed: pip install torch", file=sys.stderr)
        return 1
    if not torch.cuda.is_available():
        print("no CUDA device visible to PyTorch", file=sys.stderr)
        return 1

    import carbon_jupyter as cj
    from carbon_jupyter.measure.integrate import integrate_power_j

    count = torch.cuda.device_count()
    mats = []
    for index in range(count):
        device = torch.device("cuda", index)
        a = torch.randn(args.size, args.size, device=device, dtype=torch.bfloat16)
        mats.append((a, a.clone()))
    torch.cuda.synchronize()

    with cj.track("gpu-check", phase="train", gpus="all", interval=args.interval) as handle:
        deadline = time.monotonic() + args.seconds
        flops = 0
        while time.monotonic() < deadline:
            for a, b in mats:
                for _ in range(20):
                    a @ b
            flops += 20 * count * 2 * args.size**3
        torch.cuda.synchronize()
    run = handle.run
    assert run is not None
    figures = {"seconds": run.duration_s, "tflops": flops / run.duration_s / 1e12, "gpus": []}
    print(f"run {run.id[:8]}: {run.duration_s:.1f} s, {figures['tflops']:.0f} TFLOP/s bf16 total")
    for device in run.devices:
        if device.device.kind != "gpu":
            continue
        samples = [s for s in run.samples if s.device_id == device.device.device_id]
        powered = [(s.t_s, s.power_w) for s in samples if s.power_w is not None]
        counter_j = samples[-1].energy_j - samples[0].energy_j if len(samples) > 1 else 0.0
        sampled_j = integrate_power_j(powered)
        row = {
            "device": device.device.device_id,
            "name": device.device.name,
            "method": device.method,
            "run_energy_j": device.energy_j,
            "counter_j": counter_j,
            "sampled_power_j": sampled_j,
            "ratio_sampled_to_counter": sampled_j / counter_j if counter_j else None,
            "mean_power_w": device.mean_power_w,
            "peak_power_w": max((p for _, p in powered), default=None),
            "samples": len(samples),
        }
        figures["gpus"].append(row)  # type: ignore[attr-defined]
        print(
            f"{row['device']} {row['name']}: method {row['method']}, run energy "
            f"{device.energy_j:.0f} J; over the sampled span counter {counter_j:.0f} J vs "
            f"sampled power {sampled_j:.0f} J (ratio {row['ratio_sampled_to_counter']}); "
            f"mean {device.mean_power_w or 0:.0f} W, peak {row['peak_power_w']} W, "
            f"{len(samples)} samples"
        )
    print(repr(run))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
