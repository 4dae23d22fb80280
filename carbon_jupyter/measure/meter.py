"""One device's energy over a run, from its successive readings. No threads, no I/O.

The sampler hands every reading of a device to its :class:`DeviceMeter`,
which turns the readings into energy and keeps what went wrong:

* **Counters** (``Reading.counter_j``): each step is judged by
  :func:`carbon_jupyter.measure.integrate.counter_step` against the device's plausible
  maximum power. Progress and wraps count as they are; an interval whose step
  no real draw can explain (a counter reset, a firmware glitch) is **bridged**:
  its energy is the interval's length times the mean of the power measured
  just before and just after it. A read that comes after a gap long enough to
  hide whole wraps takes the wrap count that fits the neighbouring power.
* **Power only** (``Reading.power_w``): trapezoids between readings.

The process share of a reading applies to the device energy since the
previous reading that carried a share (the sampler's full ticks), so fast
private reads in between do not change what the process is charged.

Every fault becomes one line of :meth:`DeviceMeter.warnings`, which the run
carries in ``Run.warnings``, so a run with a glitch never looks clean.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from carbon_jupyter.measure.integrate import counter_step, trapezoid_j, wrap_period_s
from carbon_jupyter.model import DeviceEnergy, DeviceInfo
from carbon_jupyter.sensors.base import Reading


def _seconds(value_s: float) -> str:
    return f"{value_s:.3g} s" if value_s < 10 else f"{value_s:.0f} s"


@dataclass
class _Gap:
    """A read that came late enough for a counter to wrap unseen."""

    at_s: float
    gap_s: float
    max_wraps: int
    wraps_added: int


@dataclass
class DeviceMeter:
    """The running energy of one device; see the module docstring.

    ``max_power_w`` is the device's plausible maximum power (None: unknown, so
    only the classic wrap rule applies). ``late_after_s`` is how long a
    power-only device may go unread before the gap is reported (None: never).
    """

    info: DeviceInfo
    max_power_w: float | None = None
    late_after_s: float | None = None
    t_s: float = 0.0
    counter_j: float | None = None
    range_j: float | None = None
    power_w: float | None = None
    energy_j: float = 0.0
    process_energy_j: float | None = None
    last_share: float | None = None
    #: Mean power of the latest interval whose energy is known (for bridging and gaps).
    interval_power_w: float | None = None
    #: (energy, seconds) of that interval: bridges weigh their neighbours by length.
    _interval: tuple[float, float] | None = None
    started: bool = False
    error: str | None = None
    stopped_at_s: float | None = None
    _charged_j: float = 0.0
    _pending_s: float = 0.0
    _pending_before: tuple[float, float] | None = None
    _glitches: list[tuple[float, float, float]] = field(default_factory=list)
    _bridged_s: float = 0.0
    _unbridged_s: float = 0.0
    _gaps: list[_Gap] = field(default_factory=list)
    _late: list[tuple[float, float]] = field(default_factory=list)

    # -- readings ------------------------------------------------------------------------
    def start(self, reading: Reading, t_s: float) -> None:
        """The run's zero: remember the counter or power, count nothing."""
        self.t_s = t_s
        self.counter_j = reading.counter_j
        self.range_j = reading.counter_range_j
        self.power_w = reading.power_w
        self.started = True

    def advance(self, reading: Reading, t_s: float, *, charge: bool = True) -> float:
        """Take one more reading; returns the energy added (joules).

        ``charge=False`` (the sampler's private reads) leaves the process's share
        of the energy to the next reading that is charged.
        """
        dt_s = t_s - self.t_s
        delta_j = 0.0
        if reading.counter_j is not None and self.counter_j is not None:
            delta_j = self._counter(reading, dt_s)
        elif reading.power_w is not None and self.power_w is not None:
            self._check_late(dt_s)
            delta_j = trapezoid_j(self.t_s, self.power_w, t_s, reading.power_w)
            if dt_s > 0:
                self.interval_power_w = delta_j / dt_s
        self.energy_j += delta_j
        if reading.counter_range_j is not None:
            self.range_j = reading.counter_range_j
        self.t_s = t_s
        self.counter_j = reading.counter_j
        self.power_w = reading.power_w
        if charge and (reading.process_share is not None or self.last_share is not None):
            self._charge(reading.process_share)
        return delta_j

    def _counter(self, reading: Reading, dt_s: float) -> float:
        assert reading.counter_j is not None and self.counter_j is not None
        range_j = reading.counter_range_j if reading.counter_range_j is not None else self.range_j
        hint_w = self.interval_power_w if self.interval_power_w is not None else reading.power_w
        step = counter_step(
            self.counter_j,
            reading.counter_j,
            range_j,
            dt_s=dt_s,
            max_power_w=self.max_power_w,
            hint_power_w=hint_w,
        )
        if step.energy_j is None:
            # A glitch: its energy is bridged once the power after it is known.
            self._glitches.append((self.t_s + dt_s, self.counter_j, reading.counter_j))
            if self._pending_s == 0.0:
                self._pending_before = self._interval
            self._pending_s += max(dt_s, 0.0)
            return 0.0
        if step.kind == "gap":
            self._gaps.append(_Gap(self.t_s + dt_s, dt_s, step.max_wraps, step.wraps))
        energy_j = step.energy_j
        if dt_s > 0:
            self.interval_power_w = step.energy_j / dt_s
            self._interval = (step.energy_j, dt_s)
        if self._pending_s > 0:
            energy_j += self._bridge(self._interval)
        return energy_j

    def _bridge(self, after: tuple[float, float] | None) -> float:
        """The pending glitch's energy: its length times its neighbours' mean power.

        The neighbours are weighed by their length, so a reading that closely
        follows the glitch (little energy, much rounding) cannot skew the bridge.
        """
        known = [n for n in (self._pending_before, after) if n is not None]
        pending_s, self._pending_s = self._pending_s, 0.0
        self._pending_before = None
        seconds = sum(n[1] for n in known)
        if seconds <= 0:
            self._unbridged_s += pending_s
            return 0.0
        self._bridged_s += pending_s
        return pending_s * sum(n[0] for n in known) / seconds

    def _check_late(self, dt_s: float) -> None:
        if self.late_after_s is not None and dt_s > self.late_after_s:
            self._late.append((self.t_s + dt_s, dt_s))

    def _charge(self, share: float | None) -> None:
        """Charge the process its share of the energy since the previous charge."""
        if share is None:
            share = self.last_share
        assert share is not None
        share = min(max(share, 0.0), 1.0)
        self.process_energy_j = (self.process_energy_j or 0.0) + (
            self.energy_j - self._charged_j
        ) * share
        self._charged_j = self.energy_j
        self.last_share = share

    @property
    def bridging(self) -> bool:
        """True while a glitch waits for the reading after it to be bridged."""
        return self._pending_s > 0

    def fail(self, error: str, t_s: float) -> None:
        """The device stopped answering at ``t_s``: its energy so far is kept."""
        self.error = error
        self.stopped_at_s = t_s

    def finish(self) -> None:
        """Bridge a glitch at the very end with the power before it, if any."""
        if self._pending_s > 0:
            self.energy_j += self._bridge(None)
            if self.last_share is not None:
                self._charge(None)

    # -- results -------------------------------------------------------------------------
    def energy(self, duration_s: float) -> DeviceEnergy:
        return DeviceEnergy(
            device=self.info,
            energy_j=self.energy_j,
            process_energy_j=self.process_energy_j,
            mean_power_w=self.energy_j / duration_s if duration_s > 0 else None,
            error=self.error,
        )

    def warnings(self, duration_s: float) -> list[str]:
        """One line per kind of fault this device had in the run, each naming what to do."""
        who = f"{self.info.device_id} ({self.info.name})"
        lines: list[str] = []
        if not self.started and self.error is not None:
            lines.append(
                f"{who} could not be read when the run started ({self.error}); it is missing "
                "from this run's figures, which are low by its share; "
                "`carbon-jupyter doctor` shows what it reads now"
            )
        elif self.error is not None and self.stopped_at_s is not None:
            lines.append(
                f"{who} stopped answering {_seconds(self.stopped_at_s)} into a "
                f"{_seconds(duration_s)} run ({self.error}); its energy after that is missing, "
                "so the run's figures are low; `carbon-jupyter doctor` shows what it reads now"
            )
        if self._glitches:
            at_s, before_j, after_j = self._glitches[0]
            count = len(self._glitches)
            what = "a counter glitch" if count == 1 else f"{count} counter glitches"
            bridged = (
                f"{_seconds(self._bridged_s)} bridged from the power measured around it"
                if self._unbridged_s == 0
                else f"{_seconds(self._unbridged_s)} could not be bridged and count as zero"
            )
            limit = (
                f" beyond its plausible maximum of {self.max_power_w:.0f} W"
                if (self.max_power_w is not None)
                else ""
            )
            lines.append(
                f"{who}: {what} (first at {_seconds(at_s)}: the energy counter went from "
                f"{before_j:.6g} J to {after_j:.6g} J, a step no real draw{limit} explains, as "
                f"after a counter reset or a resume from suspend); {bridged}"
            )
        if self._gaps:
            worst = max(self._gaps, key=lambda g: g.gap_s)
            period = wrap_period_s(self.range_j, self.max_power_w)
            every = f" (it can wrap every {_seconds(period)})" if period is not None else ""
            added = sum(g.wraps_added for g in self._gaps)
            lines.append(
                f"{who}: read after a gap of {_seconds(worst.gap_s)} at {_seconds(worst.at_s)}, "
                f"long enough for its counter to wrap unseen{every}; up to {worst.max_wraps} "
                f"wraps could hide there, {added} taken from the neighbouring power; the sampler "
                "thread was starved or the machine suspended: the figure is an estimate"
            )
        if self._late:
            at_s, gap_s = max(self._late, key=lambda late: late[1])
            lines.append(
                f"{who}: no power reading for {_seconds(gap_s)} at {_seconds(at_s)} (the sampler "
                "thread was starved or the machine suspended); the power over that gap is "
                "interpolated, so its energy is an estimate"
            )
        return lines
