"""Lost parts of a job, told to the team server by the ranks that survive them.

A part whose process dies (a rank killed with SIGKILL, or the rank that held the
host part) cannot tell the team server that it ended: the local store finds it
dead and closes it as ``lost`` (:mod:`carbon_jupyter.store.lost`), but on the
server it would stay ``running``. So the other ranks of the job on that host do
it for it, with :func:`report_lost_parts`:

- when the host's lock comes to a rank (its holder ended, or died) and that rank
  starts the host part;
- when a rank ends (its rank part, and its host part if it holds it).

Each time, the store marks ``lost`` the runs of dead processes of this host
(:meth:`~carbon_jupyter.store.Store.mark_lost_runs`), and every run of the job on
this host that is ``lost`` in the store is handed to the forwarding sink as a
finished run: the server stores it as the local store closed it (its energy up
to its last stored sample, its error). Sending a run again changes nothing on the
server, so ranks that report the same lost part do no harm.

This happens only when runs are forwarded (the tracker's sink is a
:class:`~carbon_jupyter.forward.sink.BothSinks`), twice per rank at most, never
per sample. It never raises: a failure is said once and the job goes on (the
server then learns of the lost part from ``carbon-jupyter push``, or shows it
``lost`` once nothing has been heard from it for ``serve --lost-after`` seconds).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from carbon_jupyter.jobs.identity import JobIdentity
from carbon_jupyter.notices import notice_once

if TYPE_CHECKING:
    from carbon_jupyter.forward.sink import BothSinks
    from carbon_jupyter.store import Store


def _forwarding(sink: Any) -> BothSinks | None:
    """``sink`` when it stores and forwards (a server is configured), else None."""
    if sink is None or not hasattr(sink, "forward"):
        return None  # no forwarding: nothing to import, nothing to tell
    from carbon_jupyter.forward.sink import BothSinks

    return sink if isinstance(sink, BothSinks) else None


def _store_of(sink: BothSinks) -> Store:
    """The store behind ``sink``: the one its store sink writes to, or one opened at its path."""
    from carbon_jupyter.store import Store, open_store

    inner = sink.store
    if isinstance(inner, Store):
        return inner
    opener = getattr(inner, "open", None)  # the store sink that keeps writes it cannot make yet
    if callable(opener):
        found = opener()
        if isinstance(found, Store):
            return found
    path = sink.path
    if path is None:
        raise LookupError("the runs of this process are not stored in a file")
    return open_store(str(path))


def report_lost_parts(sink: Any, identity: JobIdentity) -> list[str]:
    """Send the server every part of ``identity``'s job on this host that is lost here.

    ``sink`` is a tracker's sink (:attr:`carbon_jupyter.Tracker.sink`); nothing is
    done unless it forwards. Returns the ids of the runs handed to the forwarding
    sink (it only queues them; the sender delivers them, at the process's exit at
    the latest). Never raises.
    """
    both = _forwarding(sink)
    if both is None:
        return []
    try:
        store = _store_of(both)
        store.mark_lost_runs()
        lost = [
            run
            for run in store.iter_runs(tag={"job": identity.job_id}, status="lost")
            if run.host == identity.host
        ]
        for run in lost:
            both.forward.finish_run(run)
    except Exception as exc:
        notice_once(
            f"job-lost-report-{identity.job_id}",
            f"carbon-jupyter: could not tell the team server which parts of job "
            f"{identity.job_id} were lost on {identity.host} ({exc}); `carbon-jupyter push` "
            "sends them later.",
        )
        return []
    return [run.id for run in lost]
