"""The live power of each host of a cluster job: what a ``%%carbon --dask`` cell's plot draws.

A job on a Dask cluster is measured where its hosts are: one worker per host
holds the host part (:mod:`carbon_jupyter.jobs.on_dask`), and the notebook's
own process measures its machine. To draw one line per host while the cell
runs, :class:`HostsFeed` asks each of them, once per poll, for the newest
sample of every device they measure (:class:`NewestSamples`, kept beside each
host part's tracker; the workers answer through ``client.run``) and turns the
answers into one sample per host:

- ``energy_j``: the host's energy since the job started, every device of the
  host once (the sum of the newest cumulative figures of each host part run;
  a host measured by two workers in turn adds both runs);
- ``power_w``: the energy the host's devices added since the previous poll over
  the time their samples advanced (the workers' own clocks, so a poll that
  falls between two ticks does not make the line jump).

Each host is one :class:`~carbon_jupyter.model.DeviceInfo` (``device_id`` its
name; ``method`` the least exact method among its devices, so that a host
with a modelled CPU is drawn dashed as an estimate), so the live view and the
plots draw hosts exactly as they draw devices. Hosts that join mid-cell add a
line; hosts that leave keep theirs, flat from then on. The feed is for
display: the job's figures are those its stored parts add up to
(:func:`carbon_jupyter.jobs.group.group`).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from carbon_jupyter import context
from carbon_jupyter.model import COUNTER_METHODS, MODEL_METHODS, DeviceInfo, Intensity, Sample

if TYPE_CHECKING:
    from carbon_jupyter.measure.tracker import Tracker

#: ``(device_id, kind, method, t_s, energy_j)``: a device's newest sample in a run.
Newest = tuple[str, str, str, float, float]
#: The shortest time between two polls of the cluster.
MIN_POLL_S = 1.0


@dataclass(frozen=True)
class HostReading:
    """What one process measures of one host now: its run and each device's newest sample."""

    host: str
    run_id: str
    devices: tuple[Newest, ...]
    #: Only the GPUs of this reading count (a notebook's own rank part).
    gpus_only: bool = False


class NewestSamples:
    """The newest sample of each device of a running tracker (subscribed to its ticks)."""

    def __init__(self, tracker: Tracker, *, gpus_only: bool = False) -> None:
        self.run_id = tracker.id
        self.gpus_only = gpus_only
        self._kinds = {d.device_id: (d.kind, d.method) for d in tracker.devices}
        self._newest: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()
        self._unsubscribe = tracker.subscribe(self._take, replay=True)

    def _take(self, samples: Sequence[Sample]) -> None:
        with self._lock:
            for s in samples:
                self._newest[s.device_id] = (s.t_s, s.energy_j)

    def reading(self, host: str) -> HostReading:
        """The newest sample of each device, as measured on ``host``."""
        with self._lock:
            newest = dict(self._newest)
        # A device not read yet is there from the start: nothing drawn, nothing added.
        devices = tuple(
            (device_id, kind, method, *newest.get(device_id, (0.0, 0.0)))
            for device_id, (kind, method) in self._kinds.items()
            if kind == "gpu" or not self.gpus_only
        )
        return HostReading(host, self.run_id, devices, self.gpus_only)

    def close(self) -> None:
        self._unsubscribe()


def least_exact(methods: Sequence[str]) -> str:
    """The method a line of several devices is drawn as: a model over a reading over a counter."""
    for method in methods:
        if method in MODEL_METHODS:
            return method
    for method in methods:
        if method not in COUNTER_METHODS:
            return method
    return methods[0] if methods else "cpu-model"


@dataclass
class _Host:
    """One host's line: its runs' newest figures and the point last drawn."""

    name: str
    runs: dict[str, dict[str, Newest]] = field(default_factory=dict)
    power_w: float | None = None
    energy_j: float = 0.0

    def take(self, readings: Sequence[HostReading]) -> None:
        """Fold this poll's readings in: power over the time the samples advanced."""
        added_j, advanced_s = 0.0, 0.0
        host_gpus = {d[0] for r in readings if not r.gpus_only for d in r.devices if d[1] == "gpu"}
        for reading in readings:
            before = self.runs.get(reading.run_id, {})
            now: dict[str, Newest] = {}
            for device in reading.devices:
                if reading.gpus_only and device[0] in host_gpus:
                    continue  # the host part measures this GPU too: count it once
                now[device[0]] = device
            if not now:
                continue
            run_added_j = sum(d[4] - before[k][4] if k in before else d[4] for k, d in now.items())
            newest_s = max(d[3] for d in now.values())
            before_s = max((d[3] for d in before.values()), default=0.0)
            added_j += run_added_j
            advanced_s = max(advanced_s, newest_s - before_s)
            self.runs[reading.run_id] = {**before, **now}
        self.energy_j = sum(d[4] for run in self.runs.values() for d in run.values())
        if advanced_s > 0:
            self.power_w = added_j / advanced_s

    def device(self) -> DeviceInfo:
        """This host as a line of the plot (``device_id`` its name)."""
        methods: dict[str, str] = {}
        for run in self.runs.values():
            for device_id, _kind, method, _, _ in run.values():
                methods.setdefault(device_id, method)
        parts = sorted(methods)
        return DeviceInfo(
            device_id=self.name,
            kind="cpu",
            name="+".join(parts) if parts else "host",
            method=least_exact([methods[k] for k in parts]),  # type: ignore[arg-type]
            detail=f"{len(parts)} device(s) of host {self.name}, each counted once",
        )


class HostsFeed:
    """The hosts of ``tracker``'s cluster job as lines of a live plot; a tracker for a live view.

    It has what :class:`~carbon_jupyter.show.live.LiveView` reads of a tracker
    (``label``, ``intensity``, ``attribution``, ``devices``, ``subscribe``) and
    :meth:`history`. :meth:`start` polls once (so the hosts are known), then
    every ``poll_s`` seconds on a thread of its own until :meth:`stop`.
    """

    attribution = "device"

    def __init__(
        self,
        tracker: Tracker,
        poll_s: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = tracker
        self.label = tracker.label
        self.poll_s = max(MIN_POLL_S, poll_s if poll_s is not None else tracker.interval_s)
        self._clock = clock
        self._t0 = clock()
        self._hosts: dict[str, _Host] = {}
        self._history: list[Sample] = []
        self._listeners: list[Callable[[Sequence[Sample]], None]] = []
        self._rank: NewestSamples | None = None
        self._own_host: NewestSamples | None = None
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def intensity(self) -> Intensity:
        return self.source.intensity

    @property
    def devices(self) -> tuple[DeviceInfo, ...]:
        """One line per host seen so far, in the order they were first seen."""
        with self._lock:
            return tuple(h.device() for h in self._hosts.values() if h.runs)

    def history(self) -> list[Sample]:
        """Every point drawn so far, in order."""
        with self._lock:
            return list(self._history)

    def subscribe(
        self, listener: Callable[[Sequence[Sample]], None], *, replay: bool = False
    ) -> Callable[[], None]:
        """Call ``listener`` with each poll's samples (``replay``: those so far first)."""
        with self._lock:
            if replay and self._history:
                listener(list(self._history))
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    # -- polling ------------------------------------------------------------------------
    def start(self) -> HostsFeed:
        """Poll once now, then every ``poll_s`` seconds until :meth:`stop`."""
        self._t0 = self._clock()
        self.poll()
        self._thread = threading.Thread(target=self._loop, name="carbon-hosts-feed", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop polling (a poll under way may take up to ``timeout_s``). Safe twice."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)
        for newest in (self._rank, self._own_host):
            if newest is not None:
                with contextlib.suppress(Exception):
                    newest.close()

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.poll()

    def poll(self) -> list[Sample]:
        """Ask every host for its newest figures; the samples of one point per host."""
        readings = [*self._local_readings(), *self._cluster_readings()]
        by_host: dict[str, list[HostReading]] = {}
        for reading in readings:
            by_host.setdefault(reading.host, []).append(reading)
        t_s = self._clock() - self._t0
        with self._lock:
            for name, found in by_host.items():
                self._hosts.setdefault(name, _Host(name)).take(found)
            tick = [
                Sample(t_s=t_s, device_id=h.name, power_w=h.power_w, energy_j=h.energy_j)
                for h in self._hosts.values()
                if h.runs
            ]
            if not tick:
                return []
            self._history.extend(tick)
            listeners = list(self._listeners)
        for listener in listeners:
            with contextlib.suppress(Exception):
                listener(tick)
        return tick

    def _local_readings(self) -> list[HostReading]:
        """The notebook's own machine: its GPUs, and its host part while this process holds it."""
        host = context.host()
        with contextlib.suppress(Exception):
            if self._rank is None and any(d.kind == "gpu" for d in self.source.devices):
                self._rank = NewestSamples(self.source, gpus_only=True)
            part = self.source.host_part
            tracker = part.tracker if part is not None and part.held.is_set() else None
            if tracker is not None and (
                self._own_host is None or self._own_host.run_id != tracker.id
            ):
                if self._own_host is not None:
                    self._own_host.close()
                self._own_host = NewestSamples(tracker)
        return [n.reading(host) for n in (self._rank, self._own_host) if n is not None]

    def _cluster_readings(self) -> list[HostReading]:
        cluster_job = self.source.cluster_job
        if cluster_job is None or cluster_job.stopped:
            return []
        from carbon_jupyter.jobs.on_dask import worker_reading

        try:
            answers = cluster_job.client.run(worker_reading, cluster_job.name, on_error="ignore")
        except Exception:
            return []
        found: list[HostReading] = []
        for answer in answers.values():
            if isinstance(answer, dict):
                with contextlib.suppress(KeyError, TypeError, ValueError):
                    found.append(from_plain(answer))
        return found


def as_plain(reading: HostReading) -> dict[str, Any]:
    """``reading`` as plain data (what a worker sends back)."""
    return {"host": reading.host, "run_id": reading.run_id, "devices": list(reading.devices)}


def from_plain(data: dict[str, Any]) -> HostReading:
    """The reading a worker sent back as plain data."""
    devices = tuple(
        (str(d[0]), str(d[1]), str(d[2]), float(d[3]), float(d[4])) for d in data["devices"]
    )
    return HostReading(str(data["host"]), str(data["run_id"]), devices)
