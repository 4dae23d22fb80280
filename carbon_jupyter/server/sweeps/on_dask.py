"""Running a sweep's configurations as tasks of a Dask distributed cluster.

Each configuration is one task, :func:`carbon_jupyter.sweeps.task.run_task`,
submitted with ``retries=1`` and, when the cluster's workers declare them,
worker resources: ``GPU`` (as many as the configuration's GPU subset holds)
and ``threads`` (or ``CPU``: its thread count). Dask's scheduler places the
tasks, runs them again when a task fails (once) or a worker dies (up to the
scheduler's ``allowed-failures``), and keeps them off workers without the
resources; nothing here schedules. Each task measures the configuration on the
worker that runs it and sends the run to the server itself.

Start workers with their resources declared, e.g.
``dask worker tcp://scheduler:8786 --resources "GPU=2 threads=16"``. Two
workers on one machine still run one configuration at a time there (the
host's sweep lock, :func:`carbon_jupyter.sweeps.task.host_lock`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from carbon_jupyter.sweeps.spec import SweepSpec
from carbon_jupyter.sweeps.task import ConfigTask, run_task

#: How often the executor looks at its tasks and at a cancel, in seconds.
POLL_S = 0.5
CONNECT_TIMEOUT_S = 15
GPU_RESOURCES = ("GPU", "gpu")
THREAD_RESOURCES = ("threads", "CPU", "cpu")


def declared_resources(client: Any) -> set[str]:
    """The resource names any worker of the cluster declares."""
    names: set[str] = set()
    for worker in client.scheduler_info().get("workers", {}).values():
        names.update((worker.get("resources") or {}).keys())
    return names


def resources_for(task: ConfigTask, declared: set[str]) -> dict[str, float] | None:
    """The worker resources a configuration asks for, of those the cluster declares."""
    config = SweepSpec.from_json(task.spec).configuration(task.config)
    wanted: dict[str, float] = {}
    if config.gpus:
        for name in GPU_RESOURCES:
            if name in declared:
                wanted[name] = float(len(config.gpus))
                break
    if config.threads:
        for name in THREAD_RESOURCES:
            if name in declared:
                wanted[name] = float(config.threads)
                break
    return wanted or None


def run_on_dask(
    address: str,
    tasks: list[ConfigTask],
    *,
    stopping: Callable[[], bool],
    on_done: Callable[[ConfigTask, dict[str, Any] | None, str | None], None],
) -> None:
    """Run ``tasks`` on the cluster at ``address``; ``on_done`` hears of each as it ends.

    When ``stopping()`` turns true, the tasks not finished are cancelled (one a
    worker has started still runs to its end and sends its run).
    """
    from distributed import Client

    if not tasks:
        return
    client_of: Any = Client
    with client_of(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False) as client:
        declared = declared_resources(client)
        futures = {}
        for task in tasks:
            future = client.submit(
                run_task,
                task.to_json(),
                key=f"carbon-sweep-{task.sweep_id}-{task.index}-{uuid.uuid4().hex[:6]}",
                resources=resources_for(task, declared),
                retries=1,
                pure=False,
            )
            futures[future] = task
        pending = dict(futures)
        while pending:
            if stopping():
                client.cancel(list(pending))
                return
            for future in [f for f in pending if f.done()]:
                task = pending.pop(future)
                if future.status == "finished":
                    on_done(task, future.result(), None)
                elif future.status == "error":
                    error = future.exception()
                    on_done(task, None, f"{type(error).__name__}: {error}")
                else:
                    on_done(task, None, f"the Dask task ended {future.status}")
            time.sleep(POLL_S)
