"""The server's sweep executor: a thread per server process that runs submitted sweeps.

It claims the oldest queued sweep (:func:`~carbon_jupyter.server.sweeps.records.claim_next`;
with ``--workers N`` the processes share the queue, each sweep taken once) and
runs the configurations it is missing, each through
:func:`carbon_jupyter.sweeps.task.run_task`:

``local``
    on the server's own machine, one configuration at a time, in this thread;
``dask://HOST:PORT``
    as tasks of a Dask distributed cluster
    (:mod:`~carbon_jupyter.server.sweeps.on_dask`), placed by Dask's scheduler.

Either way the runs are measured where they run and sent to this server like
any client's runs; on a server with tokens, with a token minted for the sweep
(scope ``ingest``, the submitter's user and project) and revoked when it ends.
A cancel lets the configurations running now finish and starts no other.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine

from carbon_jupyter.errors import ConfigError
from carbon_jupyter.server.sweeps import records
from carbon_jupyter.server.sweeps.records import Claimed
from carbon_jupyter.sweeps.spec import SweepSpec
from carbon_jupyter.sweeps.task import ConfigTask

log = logging.getLogger("carbon_jupyter.server.sweeps")

#: How often an idle executor looks for queued sweeps, in seconds.
POLL_S = 1.0
#: How often a held sweep's claim is renewed, in seconds.
HEARTBEAT_S = 10.0
#: What ``--executor`` takes: run sweeps here, on a Dask cluster, or not at all.
LOCAL = "local"
NONE = "none"


def check_executor(text: str) -> str:
    """``local``, ``none`` or ``dask://HOST:PORT`` (or ``tcp://``, ``tls://``); else ValueError."""
    from carbon_jupyter.server.config import check_executor_text

    try:
        return check_executor_text(text)
    except ConfigError as exc:
        raise ValueError(str(exc).replace("--executor ", "executor ")) from None


def scheduler_address(executor: str) -> str:
    """The address Dask's client takes for ``dask://HOST:PORT`` (``tcp://HOST:PORT``)."""
    return "tcp://" + executor[len("dask://") :] if executor.startswith("dask://") else executor


def pending_tasks(
    engine: Engine, claimed: Claimed, server_url: str, token: str | None
) -> list[ConfigTask]:
    """The configurations of ``claimed`` without a run ``ok`` or ``error``, in order."""
    spec = SweepSpec.from_json(claimed.spec)
    schedule = spec.axes().schedule()
    with engine.connect() as conn:
        done = records.finished_pairs(conn, claimed.id)
    return [
        ConfigTask(
            sweep_id=claimed.id, spec=claimed.spec, repeat=repeat, config=config.key,
            index=index, total=len(schedule), server=server_url, token=token,
        )
        for index, (repeat, config) in enumerate(schedule, start=1)
        if (repeat, config.key) not in done
    ]  # fmt: skip


class SweepExecutor:
    """Runs the sweeps submitted to this server's database; see the module docstring."""

    def __init__(
        self, engine: Engine, *, server_url: str | None, run_task: Callable[..., Any] | None = None
    ) -> None:
        self.engine = engine
        self.server_url = server_url
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        if run_task is None:
            from carbon_jupyter.sweeps.task import run_task as default_task

            run_task = default_task
        self._run_task = run_task

    def start(self) -> SweepExecutor:
        if self._thread is None:
            self._thread = threading.Thread(target=self._main, name="carbon-sweeps", daemon=True)
            self._thread.start()
        return self

    def wake(self) -> None:
        """Look for queued sweeps now (one was just submitted)."""
        self._wake.set()

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _main(self) -> None:
        while not self._stop.is_set():
            try:
                claimed = records.claim_next(self.engine, self.holder)
            except Exception:  # the database is away: try again later
                log.exception("sweep executor: cannot read the queue")
                claimed = None
            if claimed is None:
                self._wake.wait(POLL_S)
                self._wake.clear()
                continue
            self.run(claimed)

    def stopping(self, sweep_id: str) -> bool:
        """Whether the sweep should start nothing more (cancelled, or the server stops)."""
        return self._stop.is_set() or records.cancel_requested(self.engine, sweep_id)

    def run(self, claimed: Claimed) -> None:
        """Run what ``claimed`` is missing, then finish it."""
        from carbon_jupyter.server.auth import has_tokens, issue_token, revoke_token

        token: str | None = None
        token_id: int | None = None
        beating = threading.Event()
        try:
            if not self.server_url:
                raise RuntimeError(
                    "this server does not know the URL its executors reach it at: start it "
                    "with `carbon-jupyter serve --url URL`"
                )
            if has_tokens(self.engine):
                token, token_id = issue_token(self.engine, claimed.user, claimed.project, "ingest")
                if claimed.had_token is not None:
                    revoke_token(self.engine, claimed.had_token)
            records.heartbeat(self.engine, claimed.id, self.holder, token_id)
            threading.Thread(
                target=self._beat, args=(claimed.id, beating), name="carbon-sweep-beat",
                daemon=True,
            ).start()  # fmt: skip
            tasks = pending_tasks(self.engine, claimed, self.server_url, token)
            if claimed.executor == LOCAL:
                self._run_here(claimed.id, tasks)
            else:
                from carbon_jupyter.server.sweeps.on_dask import run_on_dask

                run_on_dask(
                    scheduler_address(claimed.executor),
                    tasks,
                    stopping=lambda: self.stopping(claimed.id),
                    on_done=lambda task, result, error: self._done(task, result, error),
                )
            if self._stop.is_set():
                return  # the server stops: another process takes the sweep over later
            status = "cancelled" if records.cancel_requested(self.engine, claimed.id) else "done"
            records.finish(self.engine, claimed.id, self.holder, status)
        except Exception as exc:
            log.exception("sweep %s failed", claimed.id)
            records.finish(self.engine, claimed.id, self.holder, "failed", _one_line(exc))
        finally:
            beating.set()
            if token_id is not None:
                revoke_token(self.engine, token_id)

    def _beat(self, sweep_id: str, stop: threading.Event) -> None:
        while not stop.wait(HEARTBEAT_S):
            try:
                records.heartbeat(self.engine, sweep_id, self.holder)
            except Exception:
                log.exception("sweep %s: cannot renew the claim", sweep_id)

    def _run_here(self, sweep_id: str, tasks: list[ConfigTask]) -> None:
        for task in tasks:
            if self.stopping(sweep_id):
                return
            try:
                result = self._run_task(task)
            except Exception as exc:
                self._done(task, None, _one_line(exc))
            else:
                self._done(task, result, None)

    def _done(self, task: ConfigTask, result: dict[str, Any] | None, error: str | None) -> None:
        """A configuration ended: earlier partial runs of it are ``lost``; an error is kept."""
        keep = [result["run_id"]] if result else []
        records.mark_lost(
            self.engine, task.sweep_id, config=task.config, repeat=task.repeat, keep=keep
        )
        if error is not None:
            records.note_error(
                self.engine, task.sweep_id, f"{task.config} (repeat {task.repeat}): {error}"
            )


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:500]
