"""Pure arithmetic for turning readings into energy. No I/O, no clocks.

* :func:`counter_step` - what a step between two readings of an energy
  counter means: plain progress, one wrap (RAPL ``energy_uj`` wraps at
  ``max_energy_range_uj``), a gap long enough to hide wraps, or a glitch that
  no real draw can explain.
* :func:`counter_delta_j` - the energy between two readings of a wrapping
  counter, without a plausibility check.
* :func:`trapezoid_j` - the energy between two power readings.

How a step is judged
--------------------
A device cannot draw more than its plausible maximum power ``max_power_w``
(RAPL's ``constraint_*_max_power_uw``, the TDP with a margin, NVML's power
limit with a margin), so in ``dt_s`` seconds its counter can advance by at most
``max_power_w * (dt_s + READ_SLACK_S)`` joules. Then, for a counter that wraps
at ``range_j``:

* a forward step within that bound is progress (``ok``);
* a backward step whose wrapped energy ``range_j - previous + current`` is within
  the bound is one wrap (``wrap``);
* any other step (backwards without a plausible wrap: a firmware reset, resume
  from suspend, a counter that was re-based; or a forward jump beyond the bound)
  is a ``glitch``: its energy is unknown, and the caller bridges the interval
  from the power measured around it;
* when ``dt_s`` is longer than the counter takes to wrap at full power
  (``range_j / max_power_w``), up to ``max_wraps`` whole wraps may hide in the
  step (``gap``): the wrap count whose energy is closest to ``hint_power_w *
  dt_s`` is taken when a neighbouring power is known, none otherwise.

Without a known maximum power only the classic rule is applied: a backward
step is one wrap when the range is known, a glitch when it is not.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

#: Seconds of reading jitter allowed on top of an interval before a step is implausible
#: (a counter updates about every millisecond and a read can land either side of that).
READ_SLACK_S = 0.01

StepKind = Literal["ok", "wrap", "gap", "glitch"]


@dataclass(frozen=True)
class CounterStep:
    """What one step of an energy counter means; see the module docstring.

    ``energy_j`` is None for a glitch (the caller bridges it). ``wraps`` is the
    number of wraps taken into the energy; ``max_wraps`` how many could hide in
    a ``gap``.
    """

    kind: StepKind
    energy_j: float | None
    wraps: int = 0
    max_wraps: int = 0


def wrap_period_s(range_j: float | None, max_power_w: float | None) -> float | None:
    """Seconds a counter of ``range_j`` takes to wrap at ``max_power_w`` (None if unknown)."""
    if range_j is None or range_j <= 0 or max_power_w is None or max_power_w <= 0:
        return None
    return range_j / max_power_w


def counter_step(
    previous_j: float,
    current_j: float,
    range_j: float | None,
    *,
    dt_s: float,
    max_power_w: float | None,
    hint_power_w: float | None = None,
) -> CounterStep:
    """Judge the step ``previous_j -> current_j`` taken over ``dt_s`` seconds.

    ``range_j`` is where the counter wraps (None: it never does);
    ``max_power_w`` the device's plausible maximum power (None: unknown);
    ``hint_power_w`` the power measured around the step, used to count wraps
    that a late read may have hidden.
    """
    wraps_range = range_j if range_j is not None and range_j > 0 else None
    if max_power_w is None or max_power_w <= 0:
        if current_j >= previous_j:
            return CounterStep("ok", current_j - previous_j)
        if wraps_range is not None:
            return CounterStep("wrap", wraps_range - previous_j + current_j, wraps=1)
        return CounterStep("glitch", None)
    bound_j = max_power_w * (max(dt_s, 0.0) + READ_SLACK_S)
    if current_j >= previous_j:
        base_j, base_wraps = current_j - previous_j, 0
    elif wraps_range is not None:
        base_j, base_wraps = wraps_range - previous_j + current_j, 1
    else:
        return CounterStep("glitch", None)
    if base_j > bound_j:
        return CounterStep("glitch", None)
    if wraps_range is None:
        return CounterStep("ok" if base_wraps == 0 else "wrap", base_j, wraps=base_wraps)
    hidden = math.floor((bound_j - base_j) / wraps_range)
    if hidden <= 0:
        return CounterStep("ok" if base_wraps == 0 else "wrap", base_j, wraps=base_wraps)
    extra = 0
    if hint_power_w is not None and hint_power_w >= 0:
        wanted_j = hint_power_w * dt_s
        extra = min(hidden, max(0, round((wanted_j - base_j) / wraps_range)))
    return CounterStep(
        "gap", base_j + extra * wraps_range, wraps=base_wraps + extra, max_wraps=base_wraps + hidden
    )


def counter_delta_j(previous_j: float, current_j: float, range_j: float | None) -> float:
    """Energy in joules between two readings of a counter that wraps at ``range_j``.

    A counter that went backwards wrapped once: the energy is what was left to
    the top plus what came after zero. Nothing here checks that the step is
    plausible (see :func:`counter_step`, which the sampler uses). Without a
    known range a backwards step is taken as a reset and counts from zero.
    """
    if current_j >= previous_j:
        return current_j - previous_j
    if range_j is not None and range_j > 0:
        return (range_j - previous_j) + current_j
    return current_j


def trapezoid_j(t0_s: float, p0_w: float, t1_s: float, p1_w: float) -> float:
    """Energy in joules between two power readings, by the trapezoid rule."""
    dt = t1_s - t0_s
    if dt <= 0:
        return 0.0
    return 0.5 * (p0_w + p1_w) * dt


def integrate_power_j(points: Iterable[tuple[float, float]]) -> float:
    """Energy in joules of a whole ``(t_s, power_w)`` series, by the trapezoid rule."""
    total = 0.0
    previous: tuple[float, float] | None = None
    for t, p in points:
        if previous is not None:
            total += trapezoid_j(previous[0], previous[1], t, p)
        previous = (t, p)
    return total


def co2_g(energy_j: float, intensity_g_per_kwh: float, pue: float) -> float:
    """Grams CO2e for ``energy_j`` of IT energy at a facility with ``pue``."""
    return energy_j / 3.6e6 * pue * intensity_g_per_kwh
