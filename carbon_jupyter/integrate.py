"""Pure arithmetic for turning readings into energy. No I/O, no clocks.

* :func:`counter_delta_j` - the energy between two readings of a wrapping
  counter (RAPL ``energy_uj`` wraps at ``max_energy_range_uj``).
* :func:`trapezoid_j` - the energy between two power readings.
"""

from __future__ import annotations

from collections.abc import Iterable


def counter_delta_j(previous_j: float, current_j: float, range_j: float | None) -> float:
    """Energy in joules between two readings of a counter that wraps at ``range_j``.

    A counter that went backwards wrapped once: the energy is what was left to
    the top plus what came after zero. More than one wrap between two readings
    cannot be seen from the readings alone, so a sampler must read more often
    than the counter can wrap (RAPL: minutes to hours; NVML's 64-bit mJ counter
    never wraps in practice). Without a known range a backwards step is taken
    as a reset and counts from zero.
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
