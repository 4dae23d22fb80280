"""Play back a recorded power trace as if it were a device.

For examples, documentation, demos and benchmarks on machines without the
hardware: set ``CARBON_JUPYTER_REPLAY`` and every run measures a replayed
GPU next to the real devices::

    CARBON_JUPYTER_REPLAY=a100-train              # a built-in trace
    CARBON_JUPYTER_REPLAY=t4-inference,a100-train # two replayed GPUs
    CARBON_JUPYTER_REPLAY=/data/my-run.csv        # your own trace

Every figure from a replayed device has the method ``replay``, so it can never
be mistaken for a measurement.

Trace files
-----------
A CSV file with a header row ``t_s,power_w`` and optionally
``utilization_pct`` and ``memory_used_b`` columns (any order), one row per
reading, times strictly increasing. Lines starting with ``#`` before the
header describe the trace (``device``, ``kind``, ``description``, ``source``)::

    # device: NVIDIA A100-SXM4-80GB
    # kind: gpu
    # description: what was run
    # source: where the figures come from
    t_s,power_w,utilization_pct,memory_used_b
    0.0,61.5,0,536870912
    0.5,60.8,0,536870912

The built-in traces live in ``carbon_jupyter/data/traces/`` (see
:func:`builtin_traces`); they are synthesised to resemble typical published
traces, and say so in their header.

Playback
--------
The trace starts at the sensor's first reading. Power between two rows is
interpolated linearly, and the sensor's energy counter is the exact integral
of that piecewise-linear curve, so a run spanning the whole trace measures
exactly the trace's own energy (:attr:`Trace.energy_j`). With ``loop=True``
(default) the trace starts over when it ends; with ``loop=False`` the last
power value holds. ``speed`` plays the trace faster (2.0: twice as fast); the
counter stays the integral of the power shown over real time, so at speed 2
the whole trace takes half the time and half the energy.
"""

from __future__ import annotations

import bisect
import csv
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from carbon_jupyter.errors import ConfigError, SensorError
from carbon_jupyter.model import KINDS, DeviceInfo, Kind
from carbon_jupyter.sensors.base import Probe, Reading

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from importlib.resources.abc import Traversable
    else:
        from importlib.abc import Traversable

SOURCE = "replay"
ENV_VAR = "CARBON_JUPYTER_REPLAY"

_REQUIRED = ("t_s", "power_w")
_OPTIONAL = ("utilization_pct", "memory_used_b")


@dataclass(frozen=True)
class Trace:
    """A power trace: ``power_w[i]`` drawn at ``t_s[i]`` seconds, linear in between.

    Times are shifted so the trace starts at 0 s. ``utilization_pct`` and
    ``memory_used_b`` are optional series of the same length.
    """

    name: str
    device_name: str
    t_s: tuple[float, ...]
    power_w: tuple[float, ...]
    utilization_pct: tuple[float, ...] | None = None
    memory_used_b: tuple[int, ...] | None = None
    kind: Kind = "gpu"
    description: str = ""
    #: Energy from the start to each row, in joules (computed).
    cumulative_j: tuple[float, ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        n = len(self.t_s)
        if n < 2:
            raise ConfigError(f"trace {self.name!r} has {n} row(s); a trace needs at least two")
        if len(self.power_w) != n:
            raise ConfigError(f"trace {self.name!r}: {n} times but {len(self.power_w)} powers")
        for series, label in (
            (self.utilization_pct, "utilization_pct"),
            (self.memory_used_b, "memory_used_b"),
        ):
            if series is not None and len(series) != n:
                raise ConfigError(f"trace {self.name!r}: {label} has {len(series)} rows, not {n}")
        if not all(math.isfinite(t) for t in self.t_s) or any(
            b <= a for a, b in zip(self.t_s, self.t_s[1:], strict=False)
        ):
            raise ConfigError(f"trace {self.name!r}: the times (t_s) must increase strictly")
        if any(not math.isfinite(p) or p < 0 for p in self.power_w):
            raise ConfigError(f"trace {self.name!r}: power_w must be finite and not negative")
        if self.kind not in KINDS:
            raise ConfigError(f"trace {self.name!r}: kind {self.kind!r} is not one of {KINDS}")
        t0 = self.t_s[0]
        if t0 != 0:
            object.__setattr__(self, "t_s", tuple(t - t0 for t in self.t_s))
        cumulative = [0.0]
        for i in range(1, n):
            dt = self.t_s[i] - self.t_s[i - 1]
            cumulative.append(cumulative[-1] + 0.5 * (self.power_w[i - 1] + self.power_w[i]) * dt)
        object.__setattr__(self, "cumulative_j", tuple(cumulative))

    @property
    def duration_s(self) -> float:
        return self.t_s[-1]

    @property
    def energy_j(self) -> float:
        """The trace's own energy: the integral of its power over its whole length."""
        return self.cumulative_j[-1]

    def _segment(self, t_s: float) -> int:
        """Index i of the row that starts the segment holding ``t_s`` (0 <= t_s <= duration)."""
        return min(max(bisect.bisect_right(self.t_s, t_s) - 1, 0), len(self.t_s) - 2)

    def _interpolate(self, series: Sequence[float], t_s: float) -> float:
        t_s = min(max(t_s, 0.0), self.duration_s)
        i = self._segment(t_s)
        t0, t1 = self.t_s[i], self.t_s[i + 1]
        return series[i] + (series[i + 1] - series[i]) * (t_s - t0) / (t1 - t0)

    def power_at(self, t_s: float) -> float:
        """Power in watts at ``t_s`` seconds into the trace (clamped to the trace)."""
        return self._interpolate(self.power_w, t_s)

    def utilization_at(self, t_s: float) -> float | None:
        if self.utilization_pct is None:
            return None
        return self._interpolate(self.utilization_pct, t_s)

    def memory_at(self, t_s: float) -> int | None:
        if self.memory_used_b is None:
            return None
        return round(self._interpolate([float(m) for m in self.memory_used_b], t_s))

    def energy_to(self, t_s: float) -> float:
        """Exact energy in joules from the start to ``t_s`` (clamped to the trace)."""
        t_s = min(max(t_s, 0.0), self.duration_s)
        i = self._segment(t_s)
        return self.cumulative_j[i] + 0.5 * (self.power_w[i] + self.power_at(t_s)) * (
            t_s - self.t_s[i]
        )


class ReplaySensor:
    """A device whose readings come from a :class:`Trace` played against ``clock``."""

    def __init__(
        self,
        trace: Trace,
        *,
        device_id: str = "gpu:replay0",
        kind: Kind = "gpu",
        name: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        speed: float = 1.0,
        loop: bool = True,
    ) -> None:
        if not speed > 0 or not math.isfinite(speed):
            raise ConfigError(f"replay speed must be a positive number, got {speed!r}")
        self.trace = trace
        self.info = DeviceInfo(
            device_id=device_id,
            kind=kind,
            name=name or trace.device_name,
            method="replay",
            detail=f"replay of trace {trace.name!r}"
            + (f": {trace.description}" if trace.description else ""),
        )
        self._clock = clock
        self._speed = speed
        self._loop = loop
        self._start_s: float | None = None
        self._closed = False
        self._lock = threading.Lock()

    def read(self) -> Reading:
        """The trace at the time elapsed since the first reading."""
        with self._lock:
            if self._closed:
                raise SensorError(
                    f"the replay of {self.trace.name!r} was read after it was closed; "
                    "probe the sensors again"
                )
            now_s = self._clock()
            if self._start_s is None:
                self._start_s = now_s
            trace_s = max(0.0, now_s - self._start_s) * self._speed
        position_s, energy_j = self._position(trace_s)
        return Reading(
            counter_j=energy_j / self._speed,
            counter_range_j=None,
            power_w=self.trace.power_at(position_s),
            utilization_pct=self.trace.utilization_at(position_s),
            memory_used_b=self.trace.memory_at(position_s),
        )

    def _position(self, trace_s: float) -> tuple[float, float]:
        """Where in the trace ``trace_s`` falls, and the trace energy played up to it."""
        trace = self.trace
        duration_s = trace.duration_s
        if trace_s <= duration_s:
            return trace_s, trace.energy_to(trace_s)
        if not self._loop:
            return duration_s, trace.energy_j + trace.power_w[-1] * (trace_s - duration_s)
        laps = math.floor(trace_s / duration_s)
        position_s = trace_s - laps * duration_s
        return position_s, laps * trace.energy_j + trace.energy_to(position_s)

    def close(self) -> None:
        """Nothing to release; later reads raise SensorError. Idempotent."""
        self._closed = True

    def __repr__(self) -> str:
        return f"ReplaySensor({self.info.device_id!r}, trace={self.trace.name!r})"


# -- trace files --------------------------------------------------------------------


def _traces_dir() -> Traversable:
    return resources.files("carbon_jupyter").joinpath("data").joinpath("traces")


def builtin_traces() -> list[str]:
    """Names of the traces shipped with carbon-jupyter (``a100-train``, ...)."""
    folder = _traces_dir()
    if not folder.is_dir():
        return []
    return sorted(p.name[:-4] for p in folder.iterdir() if p.name.endswith(".csv"))


def _looks_like_path(spec: str) -> bool:
    return spec.endswith(".csv") or "/" in spec or os.sep in spec or Path(spec).is_file()


def load_trace(name_or_path: str | os.PathLike[str]) -> Trace:
    """Read a trace: a built-in name (``a100-train``) or a path to a CSV file.

    Raises :class:`ConfigError` naming the built-in traces when the name is
    unknown, and the line at fault when the file cannot be read as a trace.
    """
    if isinstance(name_or_path, os.PathLike) or _looks_like_path(str(name_or_path)):
        path = Path(name_or_path)
        if not path.is_file():
            raise ConfigError(
                f"no trace file at {str(path)!r}; give the path of a CSV file with columns "
                f"t_s,power_w, or a built-in trace: {', '.join(builtin_traces()) or 'none'}"
            )
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the trace file {str(path)!r}: {exc}") from exc
        return parse_trace(text, name=path.stem, where=str(path))
    name = str(name_or_path).strip()
    names = builtin_traces()
    if name not in names:
        raise ConfigError(
            f"there is no built-in trace named {name!r}; the built-in traces are "
            f"{', '.join(names) or 'none'}, or give the path of a CSV file"
        )
    text = _traces_dir().joinpath(f"{name}.csv").read_text(encoding="utf-8")
    return parse_trace(text, name=name, where=f"built-in trace {name!r}")


def parse_trace(text: str, *, name: str, where: str | None = None) -> Trace:
    """Build a :class:`Trace` from the text of a trace CSV (see the module docstring)."""
    where = where or name
    meta: dict[str, str] = {}
    rows: list[tuple[int, list[str]]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            key, sep, value = stripped.lstrip("#").partition(":")
            if sep and key.strip():
                meta.setdefault(key.strip().lower(), value.strip())
            continue
        rows.append((number, next(csv.reader([stripped]))))
    if not rows:
        raise ConfigError(f"{where}: no header row; the first row must name t_s,power_w")
    header_line, header = rows[0]
    columns = [c.strip() for c in header]
    missing = [c for c in _REQUIRED if c not in columns]
    if missing:
        raise ConfigError(
            f"{where}, line {header_line}: the header {','.join(columns)!r} lacks "
            f"{', '.join(missing)}; the first row must name t_s,power_w"
        )
    position = {c: columns.index(c) for c in (*_REQUIRED, *_OPTIONAL) if c in columns}
    values: dict[str, list[float]] = {c: [] for c in position}
    for number, row in rows[1:]:
        for column, index in position.items():
            try:
                values[column].append(float(row[index]))
            except (IndexError, ValueError):
                cell = row[index] if index < len(row) else ""
                raise ConfigError(
                    f"{where}, line {number}: {column} is {cell!r}, not a number"
                ) from None
    kind = meta.get("kind", "gpu")
    if kind not in KINDS:
        raise ConfigError(f"{where}: kind {kind!r} is not one of {', '.join(KINDS)}")
    utilization = values.get("utilization_pct")
    memory = values.get("memory_used_b")
    return Trace(
        name=name,
        device_name=meta.get("device", name),
        t_s=tuple(values["t_s"]),
        power_w=tuple(values["power_w"]),
        utilization_pct=tuple(utilization) if utilization is not None else None,
        memory_used_b=tuple(round(m) for m in memory) if memory is not None else None,
        kind=kind,
        description=" ".join(meta[k] for k in ("description", "source") if meta.get(k)),
    )


def probe(spec: str | None = None, *, clock: Callable[[], float] = time.monotonic) -> Probe:
    """Replay sensors for ``spec`` (default: ``CARBON_JUPYTER_REPLAY``); none when unset.

    ``spec`` is a built-in trace name or a path, or several separated by commas
    (one device each: ``gpu:replay0``, ``gpu:replay1``, ...). Raises
    :class:`ConfigError` for an unknown name or an unreadable file.
    """
    if spec is None:
        spec = os.environ.get(ENV_VAR, "")
    entries = [e.strip() for e in spec.split(",") if e.strip()]
    sensors: list[ReplaySensor] = []
    for index, entry in enumerate(entries):
        trace = load_trace(entry)
        sensors.append(
            ReplaySensor(
                trace, device_id=f"{trace.kind}:replay{index}", kind=trace.kind, clock=clock
            )
        )
    return Probe(SOURCE, tuple(sensors))
