"""Write the built-in replay traces in ``carbon_jupyter/data/traces/``.

The traces are synthesised, not recorded on hardware: each is a deterministic
function of a seeded random generator, shaped after the power traces that
``nvidia-smi`` / NVML report for such workloads (idle draw, model loading,
steady compute with periodic dips, back to idle). They exist so examples,
documentation and benchmarks can run on machines without a GPU; the CSV header
of each file says how it was made.

Run from the repository root; the output is the same on every run::

    python benchmarks/make_traces.py
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parent.parent / "carbon_jupyter" / "data" / "traces"
STEP_S = 0.5
GIB = 2**30

Row = tuple[float, float, int, int]  # t_s, power_w, utilization_pct, memory_used_b


def _clip(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


def _ramp(t: float, t0: float, t1: float, v0: float, v1: float) -> float:
    """Linear from v0 at t0 to v1 at t1."""
    return v0 + (v1 - v0) * _clip((t - t0) / (t1 - t0), 0.0, 1.0)


def a100_train(rng: random.Random) -> list[Row]:
    """One A100-SXM4-80GB (400 W limit) fine-tuning a model for about a minute and a half."""
    rows: list[Row] = []
    idle_mem = int(0.5 * GIB)
    train_mem = 71 * GIB
    for k in range(241):  # 0 .. 120 s
        t = k * STEP_S
        noise = rng.gauss(0.0, 1.0)
        if t < 8:  # idle, CUDA context only
            power, util, mem = 60.0 + 1.2 * noise, 0.0, idle_mem
        elif t < 16:  # loading weights and optimizer state, warming the data loader
            power = 78.0 + 6.0 * noise + 8.0 * math.sin(t)
            util = _clip(6.0 + 5.0 * noise, 0, 20)
            mem = int(_ramp(t, 8, 15, idle_mem, 38 * GIB))
        elif t < 20:  # first steps: kernel autotuning, then full speed
            power = _ramp(t, 16, 20, 110.0, 345.0) + 10.0 * noise
            util = _ramp(t, 16, 20, 35.0, 94.0) + 3.0 * noise
            mem = int(_ramp(t, 16, 19, 38 * GIB, train_mem))
        elif t < 100:  # training steps, ~1.3 s each
            phase = math.sin(2 * math.pi * t / 1.3)
            power = _clip(364.0 + 20.0 * phase + 5.0 * noise, 330.0, 400.0)
            util = _clip(97.0 + 2.0 * noise, 90, 100)
            mem = train_mem + int((0.6 + 0.6 * phase) * GIB)
            if t >= 25 and (t - 20) % 25 < 1.5:  # data-loader stall at each shard boundary
                power = 150.0 + 20.0 * abs(noise)
                util = _clip(25.0 + 8.0 * noise, 5, 45)
            elif 56 <= t < 64:  # evaluation pass: forward only
                power = _clip(272.0 + 14.0 * phase + 6.0 * noise, 240.0, 300.0)
                util = _clip(82.0 + 4.0 * noise, 70, 92)
                mem = 52 * GIB
        elif t < 106:  # writing a checkpoint
            power, util, mem = 96.0 + 6.0 * noise, _clip(3.0 + 2.0 * noise, 0, 10), train_mem
        elif t < 110:  # process ends, memory freed, clocks come down
            power = _ramp(t, 106, 110, 90.0, 62.0) + 2.0 * noise
            util, mem = 0.0, idle_mem
        else:  # idle again
            power, util, mem = 60.5 + 1.2 * noise, 0.0, idle_mem
        rows.append((t, round(power, 1), round(util), mem))
    return rows


def t4_inference(rng: random.Random) -> list[Row]:
    """One Tesla T4 (70 W limit) serving batches of inference requests for about a minute."""
    rows: list[Row] = []
    model_mem = int(3.2 * GIB)
    in_batch = False
    remaining_s = 0.0
    for k in range(121):  # 0 .. 60 s
        t = k * STEP_S
        noise = rng.gauss(0.0, 1.0)
        if t < 5:  # idle in the lowest power state
            power, util, mem = 10.0 + 0.4 * noise, 0.0, 0
        elif t < 8:  # loading the model: clocks up, memory allocated
            power = 29.0 + 1.5 * noise
            util = _clip(4.0 + 3.0 * noise, 0, 12)
            mem = int(_ramp(t, 5, 7.5, 0, model_mem))
        elif t < 55:  # batches of requests with gaps while the queue fills
            if remaining_s <= 0:
                in_batch = not in_batch
                remaining_s = (
                    rng.choice((1.5, 2.0, 2.5, 3.0)) if in_batch else rng.choice((1.0, 1.5))
                )
            remaining_s -= STEP_S
            if in_batch:
                power = _clip(66.0 + 2.5 * noise, 58.0, 70.0)
                util = _clip(94.0 + 4.0 * noise, 80, 100)
                mem = model_mem + int(rng.uniform(1.0, 2.0) * GIB)
            else:
                power = 33.0 + 2.0 * noise
                util = _clip(3.0 + 3.0 * noise, 0, 10)
                mem = model_mem + int(0.3 * GIB)
        else:  # queue empty: clocks stay up for a while with the model resident
            power = _ramp(t, 55, 60, 31.0, 27.0) + 0.8 * noise
            util, mem = 0.0, model_mem
        rows.append((t, round(power, 1), round(util), mem))
    return rows


TRACES: dict[str, tuple[str, str, int, Callable[[random.Random], list[Row]]]] = {
    "a100-train": (
        "NVIDIA A100-SXM4-80GB",
        "fine-tuning a model on one A100-SXM4-80GB for about 90 s: idle (~60 W), loading "
        "weights, training steps oscillating between 330 and 400 W with a data-loader stall "
        "every 25 s and an 8 s evaluation pass, a checkpoint, then idle again",
        20240611,
        a100_train,
    ),
    "t4-inference": (
        "Tesla T4",
        "batched inference on one Tesla T4 (70 W limit) for about 50 s: idle (~10 W), loading "
        "the model, batches at 60-70 W separated by gaps at ~33 W, then clocks coming down",
        20240612,
        t4_inference,
    ),
}


def render(name: str) -> str:
    device, description, seed, make = TRACES[name]
    rows = make(random.Random(seed))
    lines = [
        f"# device: {device}",
        "# kind: gpu",
        f"# description: {description}.",
        "# source: synthesised by benchmarks/make_traces.py (seeded, deterministic) to resemble "
        "typical published nvidia-smi power traces of such workloads; not recorded on hardware.",
        "t_s,power_w,utilization_pct,memory_used_b",
    ]
    lines += [f"{t:.1f},{p:.1f},{u},{m}" for t, p, u, m in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for name in TRACES:
        path = OUT_DIR / f"{name}.csv"
        path.write_text(render(name), encoding="utf-8")
        print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
