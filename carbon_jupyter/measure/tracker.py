"""The tracker: one run of measurement from start to stop, and the ``track`` front door.

>>> import carbon_jupyter as cj
>>> with cj.track("fine-tune", phase="train") as t:      # doctest: +SKIP
...     train()
>>> t.run.co2_g                                           # doctest: +SKIP

``Tracker`` ties the parts together in the order of the data flow: it finds
the sensors (:func:`carbon_jupyter.sensors.discover`), resolves the carbon
intensity and PUE (:func:`carbon_jupyter.intensity.resolve`), runs a
:class:`~carbon_jupyter.measure.sampler.Sampler`, and hands the live samples and the
final :class:`~carbon_jupyter.model.Run` to a sink (the shared SQLite store by
default, and a team server beside it when one is configured: see
:mod:`carbon_jupyter.forward`). If the store fails, measuring goes on: the
failure is said once and the run is still returned from memory.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, Literal, TypeVar, cast

from carbon_jupyter import context
from carbon_jupyter.errors import TrackingError
from carbon_jupyter.measure import metrics
from carbon_jupyter.measure.device_health import missing as missing_devices
from carbon_jupyter.measure.integrate import co2_g
from carbon_jupyter.measure.sampler import Sampler, check_interval
from carbon_jupyter.model import (
    KINDS,
    DeviceEnergy,
    DeviceInfo,
    Intensity,
    Run,
    Sample,
    Status,
)
from carbon_jupyter.notices import notice_once
from carbon_jupyter.sensors.base import Sensor
from carbon_jupyter.settings import Settings, check_attribution, check_items, check_phase
from carbon_jupyter.sink import RunSink

F = TypeVar("F", bound=Callable[..., Any])

#: How often live samples are handed to the sink, in seconds.
FLUSH_INTERVAL_S = 1.0


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def build_run(
    *,
    run_id: str,
    label: str | None,
    phase: str | None,
    items: int | None,
    status: Status,
    started_at: str,
    ended_at: str | None,
    duration_s: float,
    attribution: str,
    devices: Sequence[DeviceEnergy],
    intensity: Intensity,
    tags: Mapping[str, str] | None = None,
    notebook: str | None = None,
    cell: str | None = None,
    kernel: str | None = None,
    user: str | None = None,
    host: str | None = None,
    error: str | None = None,
    warnings: Sequence[str] = (),
    metrics: Mapping[str, float] | None = None,
    samples: Sequence[Sample] = (),
) -> Run:
    """Assemble a Run: sum the devices per component under ``attribution``, then CO2."""
    per_kind = dict.fromkeys(KINDS, 0.0)
    for d in devices:
        per_kind[d.device.kind] += d.attributed_j(attribution)
    energy_j = sum(per_kind.values())
    return Run(
        id=run_id,
        label=label,
        phase=phase,
        items=items,
        status=status,
        started_at=started_at,
        ended_at=ended_at,
        duration_s=duration_s,
        attribution=cast(Any, attribution),
        devices=tuple(devices),
        intensity=intensity,
        energy_j=energy_j,
        cpu_energy_j=per_kind["cpu"],
        gpu_energy_j=per_kind["gpu"],
        ram_energy_j=per_kind["ram"],
        co2_g=co2_g(energy_j, intensity.intensity_g_per_kwh, intensity.pue),
        tags=dict(tags or {}),
        notebook=notebook,
        cell=cell,
        kernel=kernel,
        user=user,
        host=host,
        error=error,
        warnings=tuple(dict.fromkeys(warnings)),
        metrics=dict(metrics or {}),
        samples=tuple(samples),
    )


def _default_sink(settings: Settings) -> RunSink | None:
    """The store's sink, and beside it the forwarding sink when a team server is configured."""
    sink: RunSink | None
    try:
        from carbon_jupyter.store import open_sink

        sink = open_sink()
    except Exception as exc:
        notice_once(
            "store-open-failed",
            f"carbon-jupyter: runs are not being saved: {str(exc).rstrip('.')}. "
            "Measuring goes on; results stay in memory.",
        )
        sink = None
    return with_forwarding(sink, settings)


def with_forwarding(sink: RunSink | None, settings: Settings | None = None) -> RunSink | None:
    """``sink`` (a store's) and a forwarding sink beside it, when a server is configured.

    Forwarding never touches the store or the run: a failure to set it up is said
    once and the run is stored as usual. Without a server, ``sink`` itself.
    """
    from carbon_jupyter.forward import config

    if config.destination(settings) is None:
        return sink
    try:
        from carbon_jupyter.forward import forwarding_sink
        from carbon_jupyter.forward.sink import BothSinks

        forward = forwarding_sink(getattr(sink, "path", None))
    except Exception as exc:
        notice_once(
            "forward-failed",
            f"carbon-jupyter: runs are not being forwarded to the team server ({exc}). "
            "They are stored here as usual; `carbon-jupyter push` sends them later.",
        )
        return sink
    if forward is None:
        return sink
    return forward if sink is None else BothSinks(sink, forward)


class Tracker:
    """Measure the energy and CO2 of whatever runs between :meth:`start` and :meth:`stop`.

    Arguments left as None take the defaults from the environment
    (:class:`~carbon_jupyter.settings.Settings`). ``sink`` receives the run
    while it is live; by default the shared SQLite store, ``sink=None`` keeps
    the run in memory only. ``sensors`` replaces hardware discovery (tests,
    replayed traces). ``clock`` is a monotonic clock in seconds.

    ``cluster`` (a Dask ``Client``) measures every host of its cluster too, once
    per host: the run becomes a part of a job (``job=``, else ``dask-<12 hex>``)
    whose other parts are the cluster's hosts, grouped by
    :func:`carbon_jupyter.job` (see :mod:`carbon_jupyter.jobs.on_dask`).
    """

    def __init__(
        self,
        label: str | None = None,
        *,
        phase: str | None = None,
        items: int | None = None,
        interval: float | None = None,
        country: str | None = None,
        region: str | None = None,
        intensity: float | str | None = None,
        pue: float | str | None = None,
        gpus: str | Sequence[int | str] | None = None,
        attribution: str | None = None,
        tags: Mapping[str, str] | None = None,
        notebook: str | None = None,
        cell: str | None = None,
        sensors: Sequence[Sensor] | None = None,
        sink: RunSink | str | None = "default",
        clock: Callable[[], float] = time.monotonic,
        job: str | Literal[False] | None = None,
        cluster: Any = None,
    ) -> None:
        settings = Settings.from_env()
        self._settings = settings
        self.label = label
        self.phase = check_phase(phase)
        self.items = check_items(items)
        self.attribution = check_attribution(attribution or settings.attribution)
        self.interval_s = interval if interval is not None else settings.interval_s
        self.tags = {str(k): str(v) for k, v in (tags or {}).items()}
        from carbon_jupyter.jobs.identity import job_identity

        #: The Dask client whose cluster's hosts are measured with this run (``cluster=``).
        self.cluster = cluster
        self._cluster_job: Any = None
        self._where = {"country": country, "region": region, "intensity": intensity, "pue": pue}
        if cluster is not None:
            from carbon_jupyter.jobs.on_dask import cluster_job_id

            job = cluster_job_id(job)
        #: The distributed job this run is a part of (None: a run of its own).
        self.job = None if job is False else job_identity(job)
        if self.job is not None:
            self.tags = {**self.tags, **self.job.tags(), "part": "rank"}
        self._host_part: Any = None
        self._host_sensors: list[Sensor] = []
        self._cpu_share: Any = None  # a rank part's share of its host's CPU (jobs.share)
        #: How often live samples are handed to the sink, in seconds.
        self.flush_interval_s = FLUSH_INTERVAL_S
        self.notebook = notebook
        self.cell = cell
        self._gpus = gpus if gpus is not None else settings.gpus
        self._sensors = sensors
        self._sink_arg = sink if settings.store_enabled or sink != "default" else None
        self._clock = clock
        self._lock = threading.Lock()
        self._sampler: Sampler | None = None
        self._sink: RunSink | None = None
        self._pending: list[Sample] = []
        self._last_flush = 0.0
        self._run: Run | None = None
        self._machine_warnings: tuple[str, ...] = ()
        self._missing_warnings: tuple[str, ...] = ()
        self.id = str(uuid.uuid4())
        self.started_at = ""
        #: The user's own results for this run (:meth:`log_metric`).
        self.metrics: dict[str, float] = {}
        # Fail early on bad settings, before any code runs.
        check_interval(self.interval_s)
        from carbon_jupyter.intensity import resolve

        self.intensity: Intensity = resolve(
            country=country, region=region, intensity=intensity, pue=pue
        )

    # -- lifecycle ----------------------------------------------------------------------

    def _discover(self) -> Sequence[Sensor]:
        """The sensors for this run; remembers what every run on them must carry."""
        if self._sensors is not None:
            return self._for_job(self._sensors)
        from carbon_jupyter.sensors import discover

        found = discover(gpus=self._gpus)
        self._machine_warnings = found.warnings
        return self._for_job(found.sensors)

    def _for_job(self, sensors: Sequence[Sensor]) -> Sequence[Sensor]:
        """A part of a job measures its own GPUs; the host's CPU and RAM go to the host part."""
        if self.job is None:
            return sensors
        from carbon_jupyter.jobs.parts import rank_gpus

        self._host_sensors = [s for s in sensors if s.info.kind != "gpu"]
        # Beside a cluster the notebook's process is the job's one rank: all its GPUs are its.
        explicit = self._gpus is not None or self.cluster is not None
        return rank_gpus([s for s in sensors if s.info.kind == "gpu"], self.job, explicit)

    @property
    def running(self) -> bool:
        return self._sampler is not None and self._sampler.running

    @property
    def devices(self) -> tuple[DeviceInfo, ...]:
        """The devices being measured (empty before :meth:`start`)."""
        return self._sampler.devices if self._sampler is not None else ()

    @property
    def run(self) -> Run | None:
        """The finished run, once :meth:`stop` has returned."""
        return self._run

    @property
    def host_part(self) -> Any:
        """The :class:`~carbon_jupyter.jobs.hostpart.HostPart` this rank competes for, if any."""
        return self._host_part

    @property
    def cluster_job(self) -> Any:
        """The Dask cluster's hosts measured with this run (``cluster=``), once started."""
        return self._cluster_job

    @property
    def sink(self) -> RunSink | None:
        """Where this run goes (None before :meth:`start`, or when kept in memory)."""
        return self._sink

    def start(self) -> Tracker:
        """Read every device now and start sampling. Returns the tracker."""
        if self._sampler is not None:
            raise TrackingError(
                "this tracker was already started; make a new Tracker (or track()) per run"
            )
        sampler = Sampler(self._discover(), interval_s=self.interval_s, clock=self._clock)
        if self._sensors is None:  # discovered: say which earlier-lost devices it lacks
            self._missing_warnings = tuple(missing_devices(d.device_id for d in sampler.devices))
        self._sink = (
            _default_sink(self._settings) if self._sink_arg == "default" else self._sink_arg  # type: ignore[assignment]
        )
        self.started_at = utc_now_iso()
        self._sampler = sampler
        sampler.subscribe(self._collect)
        # The run's first row is written before the window opens: the store's first write
        # in a process (and the machine details it records) is not the user's code.
        self._to_sink("begin_run", self._snapshot("running"))
        if self.job is not None:  # the rank's CPU time, for its share of the host's CPU
            from carbon_jupyter.jobs.share import RankCpuShare

            self._cpu_share = RankCpuShare().start(sampler)
        sampler.start()
        metrics.started(self)
        self._last_flush = self._clock()
        if self.job is not None and self._host_sensors:
            from carbon_jupyter.jobs.parts import start_host_part

            self._host_part = start_host_part(self, self.job, self._host_sensors)
        if self.cluster is not None:
            from carbon_jupyter.jobs.on_dask import start_for

            try:
                self._cluster_job = start_for(self, self._where)
            except BaseException as exc:
                self.stop("error", error=str(exc))
                raise
        return self

    def stop(self, status: Status = "ok", error: str | None = None) -> Run:
        """Stop sampling, store the final run and return it. Safe to call twice."""
        if self._run is not None:
            return self._run
        if self._sampler is None:
            raise TrackingError("stop() called before start(); call start() first")
        if self._cluster_job is not None:  # the cluster's parts end inside this run's window
            self._cluster_job.stop()
        self._sampler.stop()
        if self._cpu_share is not None:
            self.tags = {**self.tags, **self._cpu_share.stop()}
        with self._lock:
            pending, self._pending = self._pending, []
        if pending:
            self._to_sink("add_samples", self.id, pending)
        run = self._snapshot(status, error=error, final=True)
        self._run = run
        metrics.stopped(self, run.id, self._store_path())
        self._to_sink("finish_run", run)
        if self._host_part is not None:
            self._host_part.stop("interrupted" if status == "interrupted" else "ok")
        return run

    def log_metric(self, name: str, value: float) -> None:
        """Keep ``value`` as this run's metric ``name`` (``accuracy``, ``loss``, ...).

        Stored with the run when it stops; after that, use
        :func:`carbon_jupyter.log_metric`, which updates the stored run.
        """
        name, number = metrics.check_metric(name, value)
        with self._lock:
            self.metrics[name] = number

    def _store_path(self) -> str | None:
        """The store file this run went to, where the sink says (else the default store)."""
        path = getattr(self._sink, "path", None)
        return str(path) if path is not None else None

    def subscribe(
        self, listener: Callable[[Sequence[Sample]], None], *, replay: bool = False
    ) -> Callable[[], None]:
        """Receive each tick's samples from the sampler thread (live views).

        ``replay=True`` first delivers the samples taken before subscribing.
        """
        if self._sampler is None:
            raise TrackingError("subscribe after start(): the sampler does not exist yet")
        return self._sampler.subscribe(listener, replay=replay)

    def snapshot(self) -> Run:
        """The run as measured so far (status ``running`` while live)."""
        if self._run is not None:
            return self._run
        return self._snapshot("running")

    # -- internals ----------------------------------------------------------------------
    def _snapshot(self, status: Status, *, error: str | None = None, final: bool = False) -> Run:
        assert self._sampler is not None
        result = self._sampler.result()
        return build_run(
            run_id=self.id,
            label=self.label,
            phase=self.phase,
            items=self.items,
            status=status,
            started_at=self.started_at,
            ended_at=utc_now_iso() if final else None,
            duration_s=result.duration_s,
            attribution=self.attribution,
            devices=result.devices,
            intensity=self.intensity,
            tags=self.tags,
            notebook=self.notebook or context.notebook_path(),
            cell=self.cell,
            kernel=context.kernel_id(),
            user=context.user(),
            host=context.host(),
            error=error,
            warnings=(*self._machine_warnings, *self._missing_warnings, *result.warnings),
            metrics=dict(self.metrics),
            samples=result.samples if final else (),
        )

    def _collect(self, samples: Sequence[Sample]) -> None:
        """Sampler-thread listener: batch samples and flush about once a second."""
        with self._lock:
            self._pending.extend(samples)
            now = self._clock()
            if now - self._last_flush < self.flush_interval_s:
                return
            batch, self._pending = self._pending, []
            self._last_flush = now
        self._to_sink("add_samples", self.id, batch)

    def _to_sink(self, method: str, *args: Any) -> None:
        if self._sink is None:
            return
        try:
            getattr(self._sink, method)(*args)
        except Exception as exc:
            # Said once per process: with per-cell tracking a broken store would
            # otherwise repeat itself under every cell.
            notice_once(
                "sink-failed",
                f"carbon-jupyter: could not save run {self.id[:8]} ({exc}). "
                "Measuring goes on; runs are kept in memory and returned.",
            )

    # -- context manager and decorator ---------------------------------------------------
    def __enter__(self) -> Tracker:
        return self.start()

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc_type is None:
            self.stop("ok")
        elif issubclass(exc_type, KeyboardInterrupt):
            self.stop("interrupted", error="KeyboardInterrupt")
        else:
            self.stop("error", error=f"{exc_type.__name__}: {exc}")
