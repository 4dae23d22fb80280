"""Every host of a Dask cluster measured as a part of one job, once per host.

``track("train", cluster=client)`` (and ``%%carbon --dask``) makes the run a
job, ``dask-<12 hex>`` unless ``job=`` names it. Its parts are the notebook's
own process (rank 0, with a host part for its machine) and every host of the
cluster: :func:`start_cluster_job` registers a :class:`HostsPlugin` on the
cluster, so that each worker process, those that join later included, competes
for its host's lock (:mod:`carbon_jupyter.jobs.hostpart`). The worker holding
it measures every device of its host (CPU packages, RAM and GPUs) as a run
tagged ``job``, ``part=host``, ``host``, ``launcher=dask`` and
``worker=<address>``, handing each sample to its store as it is taken.
Several worker processes on one machine so measure it once; when the
measuring worker leaves (or dies), another worker on that host takes over at
once (the kernel hands it the lock). A worker on the notebook's machine shares
that machine's lock with the notebook. While the cell runs, the notebook asks
the measuring workers for their newest samples (:func:`worker_reading`) to
draw one line per host (:mod:`carbon_jupyter.jobs.hostfeed`).

:meth:`ClusterJob.stop` unregisters the plugin and returns once every worker
has stored its final run. Should the notebook's kernel die (or restart) first,
the scheduler ends the job when the kernel's client leaves (:class:`ClientWatch`),
so that no worker goes on measuring. Each worker stores into its own
``CARBON_JUPYTER_DB`` (and forwards to a team server when
``CARBON_JUPYTER_SERVER`` is set in its environment), so the job is seen whole
(:func:`carbon_jupyter.job`) where the workers' runs meet: a store file they
share, or the team server.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from distributed.diagnostics.plugin import SchedulerPlugin, WorkerPlugin

from carbon_jupyter import context
from carbon_jupyter.errors import ConfigError, TrackingError
from carbon_jupyter.jobs.hostfeed import NewestSamples, as_plain
from carbon_jupyter.jobs.hostpart import HostPart, lock_path
from carbon_jupyter.jobs.identity import JobIdentity, check_job_id
from carbon_jupyter.notices import notice_once

if TYPE_CHECKING:
    from distributed import Client, Scheduler, Worker

    from carbon_jupyter.jobs.group import Job
    from carbon_jupyter.measure.tracker import Tracker

LAUNCHER = "dask"
#: Plugin names on the cluster: this prefix and the job id.
PLUGIN_PREFIX = "carbon-jupyter-"
#: The scheduler plugin that ends a job whose client left: this prefix and the plugin's name.
WATCH_PREFIX = "watch-"
#: The longest a worker's set-up waits for its host to be measured (by it or another).
SETUP_WAIT_S = 5.0
_POLL_S = 0.01
#: Tags of the notebook's rank part that the cluster's host parts do not take.
_JOB_TAGS = ("job", "rank", "local_rank", "world_size", "launcher", "part")
#: The options of the notebook's tracker that each worker takes as given.
_WHERE = ("country", "region", "intensity", "pue")


def ended_path(identity: JobIdentity) -> Path:
    """The file that says job ``identity`` has ended on its host (beside the host's lock)."""
    return lock_path(identity).with_suffix(".ended")


def cluster_job_id(job: str | Literal[False] | None) -> str:
    """The job of a tracker with ``cluster=``: ``job`` when given, else ``dask-<12 hex>``."""
    if job is False:
        raise ConfigError(
            "cluster= makes the run a job of the cluster's hosts: leave job= out, or name the job"
        )
    return f"dask-{uuid.uuid4().hex[:12]}" if job is None else check_job_id(job)


def cluster_options(tracker: Tracker, where: Mapping[str, Any]) -> dict[str, Any]:
    """What the cluster's host parts take from the notebook's ``tracker``.

    Its label, phase, sampling interval, notebook, cell and own tags, and the
    location options as given (``where``: ``country``, ``region``,
    ``intensity``, ``pue``): left out, each worker finds its own grid.
    """
    return {
        "label": tracker.label,
        "phase": tracker.phase,
        "interval": tracker.interval_s,
        "notebook": tracker.notebook,
        "cell": tracker.cell,
        "tags": {k: v for k, v in tracker.tags.items() if k not in _JOB_TAGS},
        **{name: where.get(name) for name in _WHERE},
    }


class _Idle:
    """Stands in for a host part's tracker once the job is ending: measures nothing."""

    def start(self) -> _Idle:
        return self

    def stop(self, status: str = "ok") -> None:
        return None


def _held_elsewhere(path: Path) -> bool:
    """Whether another process holds the lock file ``path`` now."""
    import fcntl

    try:
        with open(path, "a+b") as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    except OSError:
        pass
    return False


class HostsPlugin(WorkerPlugin):
    """On each worker: the host part of job ``job_id``, measuring every device of the host.

    ``options`` are :func:`cluster_options`. Set up on every worker when
    registered and on every worker that joins later; torn down when
    unregistered or when its worker closes.
    """

    def __init__(self, job_id: str, options: Mapping[str, Any]) -> None:
        self.job_id = job_id
        self.options = dict(options)
        #: The worker's host part (on the worker, once set up).
        self.part: HostPart | None = None
        self._closing: threading.Event | None = None
        self._acquired: threading.Event | None = None
        self._newest: NewestSamples | None = None

    def identity(self) -> JobIdentity:
        """This worker's place in the job: a host part, no rank."""
        return JobIdentity(
            job_id=self.job_id, rank=-1, local_rank=-1, world_size=None,
            host=context.host(), launcher=LAUNCHER,
        )  # fmt: skip

    async def setup(self, worker: Worker) -> None:
        await asyncio.to_thread(self.start, str(worker.address))

    async def teardown(self, worker: Worker) -> None:
        from distributed.core import Status

        # Removed from a worker that runs on: the plugin was unregistered, the job ends.
        # (A worker that closes tears its plugins down too; then another one takes over.)
        if worker.status in (Status.running, Status.paused):
            self.job_ending()
        await asyncio.to_thread(self.stop)

    def start(self, worker_address: str) -> None:
        """Compete for the host's lock; return once the host is measured (by any worker)."""
        from carbon_jupyter.measure.tracker import Tracker
        from carbon_jupyter.sensors import discover
        from carbon_jupyter.settings import Settings

        identity = self.identity()
        options = self.options
        tags = {
            **options.get("tags", {}), "job": self.job_id, "part": "host",
            "host": identity.host, "launcher": LAUNCHER, "worker": worker_address,
            "holder_pid": str(os.getpid()),
        }  # fmt: skip
        # Built here, so that bad options fail the set-up, which the client then reports.
        tracker = Tracker(
            options.get("label"),
            phase=options.get("phase"),
            interval=options.get("interval"),
            country=options.get("country"),
            region=options.get("region"),
            intensity=options.get("intensity"),
            pue=options.get("pue"),
            tags=tags,
            notebook=options.get("notebook"),
            cell=options.get("cell"),
            attribution="device",
            job=False,
        )
        # Every sample reaches the store as it is taken: a worker that dies loses none.
        tracker.flush_interval_s = 0.0
        discover(gpus=Settings.from_env().gpus)  # found now, not once the lock is held
        closing, acquired = threading.Event(), threading.Event()
        ended = ended_path(identity)
        self._closing, self._acquired = closing, acquired

        def make_tracker() -> Any:
            if closing.is_set() or ended.exists():  # the lock came free as the job ended
                return _Idle()
            acquired.set()
            return tracker

        part = self.part = HostPart(identity, make_tracker).start()
        path = lock_path(identity)
        deadline = time.monotonic() + SETUP_WAIT_S
        while time.monotonic() < deadline and not part.held.is_set():
            if acquired.is_set():
                part.held.wait(max(0.0, deadline - time.monotonic()))
                return
            if _held_elsewhere(path) and not acquired.is_set():
                return  # another worker (or the notebook) measures this host
            time.sleep(_POLL_S)

    def job_ending(self) -> None:
        """The job is ending, on every host: no worker of this host measures from now on.

        Said in a file beside the host's lock as well, so that a worker whose own
        plugin has not heard it yet does not start measuring when the lock comes
        to it (the workers of a host tear their plugins down in no set order).
        """
        self.closing()
        with contextlib.suppress(OSError):
            ended_path(self.identity()).touch()

    def closing(self) -> None:
        """The job is ending: a worker that gets the lock from now on does not measure."""
        if self._closing is not None:
            self._closing.set()

    def reading(self) -> dict[str, Any] | None:
        """The newest sample of each device this worker measures, as plain data; None if none."""
        from carbon_jupyter.measure.tracker import Tracker

        part = self.part
        tracker = part.tracker if part is not None and part.held.is_set() else None
        if part is None or not isinstance(tracker, Tracker) or not tracker.running:
            return None
        if self._newest is None or self._newest.run_id != tracker.id:
            self._newest = NewestSamples(tracker)
        return as_plain(self._newest.reading(part.identity.host))

    def stop(self) -> None:
        """Store the host part's final run (when this worker holds it) and leave the lock."""
        self.closing()
        newest, self._newest = self._newest, None
        if newest is not None:
            newest.close()
        part, self.part = self.part, None
        if part is not None:
            part.stop()


def worker_reading(name: str, dask_worker: Any = None) -> dict[str, Any] | None:
    """On a worker (``client.run``): what plugin ``name`` measures now (see :mod:`.hostfeed`)."""
    plugin = getattr(dask_worker, "plugins", {}).get(name)
    return plugin.reading() if isinstance(plugin, HostsPlugin) else None


def _mark_closing(name: str, dask_worker: Any = None) -> None:
    """On a worker (``client.run``): the plugin ``name`` is about to be removed."""
    plugin = getattr(dask_worker, "plugins", {}).get(name)
    if isinstance(plugin, HostsPlugin):
        plugin.job_ending()


class ClientWatch(SchedulerPlugin):
    """On the scheduler: ends the worker plugin ``plugin_name`` when client ``client_id`` leaves.

    A kernel that dies or restarts mid-run never stops its job; without this its
    workers would measure on until they close.
    """

    def __init__(self, client_id: str, plugin_name: str) -> None:
        self.client_id = client_id
        self.plugin_name = plugin_name
        self._ending: Any = None

    def remove_client(self, scheduler: Scheduler, client: str) -> None:
        if client != self.client_id:
            return

        async def end() -> None:
            with contextlib.suppress(Exception):
                scheduler.remove_plugin(WATCH_PREFIX + self.plugin_name)
            with contextlib.suppress(Exception):
                await scheduler.unregister_worker_plugin(None, self.plugin_name)

        self._ending = asyncio.ensure_future(end())


class ClusterJob:
    """Job ``job_id`` running on a Dask cluster through ``client``; :meth:`stop` ends it."""

    def __init__(self, client: Client, job_id: str, name: str) -> None:
        self.client = client
        self.job_id = job_id
        #: The plugin's name on the cluster.
        self.name = name
        self.stopped = False

    def stop(self) -> None:
        """Unregister the plugin; returns once every worker stored its final run. Safe twice.

        A cluster that cannot be reached any more is said once, not raised: its
        workers' runs hold what they stored so far.
        """
        if self.stopped:
            return
        self.stopped = True
        # First every worker, then the plugin: the workers waiting for a host's lock must
        # not start measuring as the holder lets go of it.
        with contextlib.suppress(Exception):
            self.client.run(_mark_closing, self.name)
        try:
            self.client.unregister_worker_plugin(self.name)  # type: ignore[no-untyped-call]
        except Exception as exc:
            notice_once(
                f"dask-stop:{self.job_id}",
                f"carbon-jupyter: job {self.job_id}: could not stop measuring the Dask "
                f"cluster's hosts ({type(exc).__name__}: {exc}); their runs keep what they "
                "stored so far.",
            )
        with contextlib.suppress(Exception):
            self.client.unregister_scheduler_plugin(WATCH_PREFIX + self.name)

    def job(self, store: str | None = None) -> Job:
        """The job as one run, from the store (:func:`carbon_jupyter.job`)."""
        from carbon_jupyter.jobs.group import load

        return load(self.job_id, store)


def start_cluster_job(client: Client, job_id: str, options: Mapping[str, Any]) -> ClusterJob:
    """Measure every host of ``client``'s cluster as a part of job ``job_id``.

    ``options`` are :func:`cluster_options`. Returns once each worker's host is
    measured; raises TrackingError when the cluster cannot be set up.
    """
    name = PLUGIN_PREFIX + job_id
    try:
        client.register_plugin(ClientWatch(str(client.id), name), name=WATCH_PREFIX + name)
    except Exception as exc:  # the scheduler cannot load carbon_jupyter: measure without it
        notice_once(
            "dask-watch",
            "carbon-jupyter: the Dask scheduler cannot end a job whose kernel died "
            f"({type(exc).__name__}: {exc}); install carbon-jupyter beside the scheduler.",
        )
    try:
        client.register_plugin(HostsPlugin(job_id, options), name=name)
    except Exception as exc:
        with contextlib.suppress(Exception):
            client.unregister_worker_plugin(name)  # type: ignore[no-untyped-call]
        with contextlib.suppress(Exception):
            client.unregister_scheduler_plugin(WATCH_PREFIX + name)
        raise TrackingError(
            f"could not measure the Dask cluster's hosts ({type(exc).__name__}: {exc})"
        ) from exc
    return ClusterJob(client, job_id, name)


def start_for(tracker: Tracker, where: Mapping[str, Any]) -> ClusterJob:
    """The cluster job of ``tracker`` (made with ``cluster=``), started."""
    if tracker.job is None or tracker.cluster is None:
        raise TrackingError("this tracker was not given a cluster")
    return start_cluster_job(tracker.cluster, tracker.job.job_id, cluster_options(tracker, where))
