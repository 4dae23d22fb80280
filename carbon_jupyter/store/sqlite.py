"""The run store: one SQLite file shared by every kernel and server on the machine.

:class:`Store` is the tracker's sink (``begin_run``, ``add_samples``,
``finish_run``) and the reader behind every view. It is safe to use from
several threads and several processes at once:

* each thread gets its own SQLite connection (a connection is never shared
  between threads); after a ``fork`` the child opens fresh ones;
* the file is in WAL mode, so readers never wait for writers, and every write
  takes the write lock up front (``BEGIN IMMEDIATE``) and waits up to
  ``timeout_s`` for it, so concurrent writers queue instead of failing with
  "database is locked";
* samples arrive in batches (about one a second), one transaction per batch;
  while a run is live its row and device rows carry the energy flushed so far.

A run left ``running`` by a process that no longer exists on this host is
marked ``lost`` when a store is opened (and, at most every few seconds, when
runs are listed): its duration and energies are those of the last flushed
samples, its CO2 is recomputed with the run's own carbon factor and PUE.
When the file cannot be written just then (a full disk), that waits for a
later opening.

A store opened with ``create=False`` (every reader: ``carbon-jupyter runs``,
``carbon_jupyter.runs()``, the sidebar) never creates a file or a folder:
where there is none it raises :class:`~carbon_jupyter.store.failures.StoreMissingError`.
Where the file cannot be written (a full disk, a folder it may not write), such a
reader opens it read-only (:attr:`Store.read_only`) and reads it as it is.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from carbon_jupyter.errors import StoreError
from carbon_jupyter.model import Run, Sample
from carbon_jupyter.store import codecarbon, export, lost, schema
from carbon_jupyter.store.failures import StoreMissingError, cannot_write, translated
from carbon_jupyter.store.query import RunFilter
from carbon_jupyter.store.reading import StoreReads
from carbon_jupyter.store.rows import (
    ALL_RUN_COLUMNS,
    UPSERT_DEVICE,
    device_rows,
    hardware_summary,
    now_iso,
    run_row,
    sample_tuple,
    totals_from_devices,
    upsert_sql,
    versions_summary,
)

DEFAULT_TIMEOUT_S = 30.0
#: How often listing runs also looks for runs whose process died, in seconds.
LOST_CHECK_INTERVAL_S = 5.0

_UPSERT_RUN = upsert_sql("runs", ALL_RUN_COLUMNS, ("id",))
_INSERT_SAMPLE = (
    "INSERT OR IGNORE INTO samples (run_id, seq, t_s, device_id, power_w, energy_j, "
    "utilization_pct, memory_used_b, process_energy_j) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


class Store(StoreReads):
    """The SQLite run store at ``path``. Open it with :func:`carbon_jupyter.store.open_store`."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        create: bool = True,
    ):
        self.path = Path(path).expanduser().absolute()
        self.timeout_s = float(timeout_s)
        self._create = create
        #: True for a reader that found the file unwritable and opened it read-only.
        self.read_only = False
        self._lock = threading.Lock()
        self._conns: dict[threading.Thread, sqlite3.Connection] = {}
        self._pid = os.getpid()
        self._host = socket.gethostname()
        self._last_lost_check = 0.0
        #: Runs begun through this Store and still live: what a flush needs, kept in memory
        #: so that each flush is three statements (samples, devices, run totals).
        self._live: dict[str, _LiveRun] = {}
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    # -- opening ---------------------------------------------------------------------
    def _open(self) -> None:
        if self.path.is_dir():
            raise StoreError(
                f"The run store path {self.path} is a folder. Point CARBON_JUPYTER_DB (or "
                f"--db) at a file, such as {self.path / 'carbon.db'}."
            )
        if not self._create and not self.path.exists():
            raise StoreMissingError(self.path)
        with self._guard("creating"):
            if not self.path.parent.exists():
                self.path.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
            if not self.path.exists():
                # Owner-only from the first byte; SQLite gives -wal/-shm the same mode.
                with contextlib.suppress(FileExistsError):
                    os.close(os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        try:
            with self._guard("opening"):
                conn = self._conn()
                applied = schema.check_readable(conn, str(self.path))
                if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    conn.execute("PRAGMA journal_mode=WAL")
                if schema.needs_migration(applied):
                    schema.migrate(conn, str(self.path))
        except StoreError as exc:
            if self._create or not cannot_write(exc):
                raise
            # A reader on a full disk, or in a folder it may not write: read the file as is.
            self.close()
            self.read_only = True
            with self._guard("opening"):
                schema.check_readable(self._conn(), str(self.path))
            return
        self._mark_lost_when_writable()

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use."""
        thread = threading.current_thread()
        with self._lock:
            if self._pid != os.getpid():  # forked: the parent's connections are not ours
                self._conns = {}
                self._pid = os.getpid()
            conn = self._conns.get(thread)
            if conn is not None:
                return conn
            for other in [t for t in self._conns if not t.is_alive()]:
                self._conns.pop(other).close()
        conn = self._connect()
        with self._lock:
            self._conns[thread] = conn
        return conn

    def _connect(self) -> sqlite3.Connection:
        """A new connection to the file (read-only for a reader that cannot write it)."""
        if self.read_only:
            return sqlite3.connect(
                readonly_uri(self.path), uri=True, timeout=self.timeout_s,
                isolation_level=None, check_same_thread=False,
            )  # fmt: skip
        conn = sqlite3.connect(
            self.path, timeout=self.timeout_s, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error:
            conn.close()
            raise
        return conn

    def close(self) -> None:
        """Close every connection this store opened. The store reopens them if used again."""
        with self._lock:
            conns, self._conns = list(self._conns.values()), {}
        for conn in conns:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _guard(self, doing: str) -> contextlib.AbstractContextManager[None]:
        return translated(self.path, doing, self.timeout_s)

    @contextlib.contextmanager
    def _write(self, doing: str) -> Iterator[sqlite3.Connection]:
        """A write transaction that holds the lock from its start, with errors translated."""
        with self._guard(doing), immediate(self._conn()) as conn:
            yield conn

    @contextlib.contextmanager
    def _read(self, doing: str) -> Iterator[sqlite3.Connection]:
        """A read transaction: one consistent snapshot for several queries."""
        with self._guard(doing):
            conn = self._conn()
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")

    # -- the sink ----------------------------------------------------------------------
    def _full_row(self, run: Run, origin: str = "carbon-jupyter") -> dict[str, Any]:
        row = run_row(run, origin=origin)
        row.update(
            hardware=_json_text(hardware_summary(run)),
            versions=_json_text(versions_summary()),
            pid=os.getpid(),
            pid_host=self._host,
            pid_started=lost.process_started(os.getpid()),
        )
        return row

    def _put_run(self, conn: sqlite3.Connection, row: dict[str, Any], run: Run) -> None:
        conn.execute(_UPSERT_RUN, row)
        conn.executemany(UPSERT_DEVICE, device_rows(run))

    def begin_run(self, run: Run) -> None:
        """Store a run as it starts (status ``running``) with its devices."""
        row = self._full_row(run)
        with self._write(f"starting run {run.id[:8]} in") as conn:
            self._put_run(conn, row, run)
            next_seq = self._next_seq(conn, run.id)
        with self._lock:
            self._live[run.id] = _LiveRun.of(run, next_seq)

    def add_samples(self, run_id: str, samples: Sequence[Sample]) -> None:
        """Append one batch of a live run's samples in one transaction; update its totals."""
        if not samples:
            return
        with self._lock:
            live = self._live.get(run_id)
        if live is not None:
            self._add_live_samples(live, samples)
            return
        with self._write(f"saving samples of run {run_id[:8]} to") as conn:
            self._append_samples(conn, run_id, samples)
            latest: dict[str, Sample] = {}
            for s in samples:
                latest[s.device_id] = s
            conn.executemany(
                "UPDATE devices SET energy_j = ?, process_energy_j = "
                "COALESCE(?, process_energy_j) WHERE run_id = ? AND device_id = ?",
                [(s.energy_j, s.process_energy_j, run_id, d) for d, s in latest.items()],
            )
            lost.refresh_totals(conn, run_id, max(s.t_s for s in samples), status="running")

    def _add_live_samples(self, live: _LiveRun, samples: Sequence[Sample]) -> None:
        """The flush of a run begun here: totals computed in memory, three statements."""
        first = live.next_seq
        for s in samples:
            live.latest[s.device_id] = (s.energy_j, s.process_energy_j)
        duration_s = max(live.duration_s, max(s.t_s for s in samples))
        totals = live.totals()
        with self._write(f"saving samples of run {live.run_id[:8]} to") as conn:
            conn.executemany(
                _INSERT_SAMPLE,
                [sample_tuple(live.run_id, first + i, s) for i, s in enumerate(samples)],
            )
            conn.executemany(
                "UPDATE devices SET energy_j = ?, process_energy_j = COALESCE(?, process_energy_j),"
                " mean_power_w = ? WHERE run_id = ? AND device_id = ?",
                [
                    (j, pj, j / duration_s if duration_s > 0 else None, live.run_id, d)
                    for d, (j, pj) in live.latest.items()
                ],
            )
            conn.execute(
                "UPDATE runs SET energy_j = :energy_j, cpu_energy_j = :cpu_energy_j, "
                "gpu_energy_j = :gpu_energy_j, ram_energy_j = :ram_energy_j, co2_g = :co2_g, "
                "duration_s = :duration_s, updated_at = :updated_at "
                "WHERE id = :id AND status = 'running'",
                {**totals, "duration_s": duration_s, "updated_at": now_iso(), "id": live.run_id},
            )
        live.next_seq = first + len(samples)
        live.duration_s = duration_s

    @staticmethod
    def _next_seq(conn: sqlite3.Connection, run_id: str) -> int:
        row = conn.execute("SELECT MAX(seq) FROM samples WHERE run_id = ?", (run_id,)).fetchone()
        return int(row[0] or 0) + 1

    def _append_samples(
        self, conn: sqlite3.Connection, run_id: str, samples: Sequence[Sample]
    ) -> None:
        first = self._next_seq(conn, run_id)
        conn.executemany(
            _INSERT_SAMPLE, [sample_tuple(run_id, first + i, s) for i, s in enumerate(samples)]
        )

    def finish_run(self, run: Run) -> None:
        with self._lock:
            self._live.pop(run.id, None)
        self._finish_run(run)

    def _finish_run(self, run: Run) -> None:
        """Store the final run; samples it carries that were never flushed are added.

        Flushed samples are in time order per device, so the ones missing are those
        newer than each device's newest stored sample.
        """
        row = self._full_row(run)
        with self._write(f"finishing run {run.id[:8]} in") as conn:
            self._put_run(conn, row, run)
            if run.samples:
                newest = dict(
                    conn.execute(
                        "SELECT device_id, MAX(t_s) FROM samples WHERE run_id = ? "
                        "GROUP BY device_id",
                        (run.id,),
                    ).fetchall()
                )
                missing = [s for s in run.samples if s.t_s > newest.get(s.device_id, float("-inf"))]
                if missing:
                    self._append_samples(conn, run.id, missing)

    def set_metrics(self, run_id: str, metrics: dict[str, float]) -> None:
        """Add ``metrics`` to a stored run's (a name logged again takes the new value)."""
        from carbon_jupyter.store.query import RunNotFoundError

        with self._write(f"logging metrics of run {run_id[:8]} in") as conn:
            found = conn.execute("SELECT metrics FROM runs WHERE id = ?", (run_id,)).fetchone()
            if found is None:
                raise RunNotFoundError(f"no run {run_id} in {self.path}; nothing was logged")
            merged = {**(json.loads(found[0]) if found[0] else {}), **metrics}
            conn.execute(
                "UPDATE runs SET metrics = ? WHERE id = ?",
                (json.dumps(merged, sort_keys=True), run_id),
            )

    # -- export and import ----------------------------------------------------------------
    def export_csv(
        self,
        path: str | os.PathLike[str],
        *,
        samples: bool = False,
        limit: int | None = None,
        **filters: Any,
    ) -> list[Path]:
        """Write runs (filters as in :meth:`runs`) to CSV, and their samples beside it.

        Returns the files written: ``path`` and, with ``samples=True``,
        ``<name>-samples.csv`` in the same folder.
        """
        return export.export_csv(self, path, RunFilter(**filters), limit, samples)

    def export_json(
        self,
        path: str | os.PathLike[str],
        *,
        samples: bool = False,
        limit: int | None = None,
        **filters: Any,
    ) -> Path:
        """Write runs with their devices (and samples) to one JSON file; see :meth:`import_json`."""
        return export.export_json(self, path, RunFilter(**filters), limit, samples)

    def export_codecarbon(
        self, path: str | os.PathLike[str], *, limit: int | None = None, **filters: Any
    ) -> Path:
        """Write runs in the column layout of CodeCarbon's emissions.csv (kWh, kg, W)."""
        return codecarbon.export_codecarbon(self, path, RunFilter(**filters), limit)

    def import_json(self, path: str | os.PathLike[str]) -> int:
        """Add the runs of a JSON export, skipping runs already stored; returns how many."""
        return export.import_json(self, path)

    def import_codecarbon(self, path: str | os.PathLike[str]) -> int:
        """Add the runs of a CodeCarbon emissions.csv; importing twice adds nothing twice.

        Returns how many runs were added (or replaced by a longer row of the same run).
        """
        return codecarbon.import_codecarbon(self, path)

    # -- lost runs -----------------------------------------------------------------------
    def mark_lost_runs(self) -> list[str]:
        """Mark ``lost`` the runs left ``running`` by processes of this host that have died.

        Returns their ids. Runs written on other hosts are left alone.
        """
        self._last_lost_check = time.monotonic()
        with self._guard("checking for unfinished runs in"):
            candidates = (
                self._conn()
                .execute(
                    "SELECT id, pid, pid_started FROM runs "
                    "WHERE status = 'running' AND pid_host = ? AND pid IS NOT NULL",
                    (self._host,),
                )
                .fetchall()
            )
        dead = [rid for rid, pid, started in candidates if not lost.process_alive(pid, started)]
        if not dead:
            return []
        with self._write("marking unfinished runs lost in") as conn:
            for run_id in dead:
                lost.mark_lost(conn, run_id)
        return dead

    def _maybe_mark_lost(self) -> None:
        if time.monotonic() - self._last_lost_check >= LOST_CHECK_INTERVAL_S:
            self._mark_lost_when_writable()

    def _mark_lost_when_writable(self) -> None:
        """Mark dead runs lost, unless the file cannot be written now (then at a later read)."""
        if self.read_only:
            return
        try:
            self.mark_lost_runs()
        except StoreError as exc:
            if not cannot_write(exc):
                raise


@contextlib.contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction holding the file's write lock from its start (``BEGIN IMMEDIATE``)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def readonly_uri(path: Path) -> str:
    """An SQLite URI that reads ``path`` without writing anything beside it when it can.

    Without a write-ahead log holding data, the file alone is the database and is read
    as immutable (no -wal or -shm is created); otherwise read-only, through the log.
    """
    wal = path.with_name(path.name + "-wal")
    try:
        logged = wal.stat().st_size > 0
    except OSError:
        logged = False
    return path.as_uri() + ("?mode=ro" if logged else "?mode=ro&immutable=1")


def _json_text(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True)


@dataclass
class _LiveRun:
    """What flushing a live run needs, remembered from :meth:`Store.begin_run`."""

    run_id: str
    attribution: str
    intensity_g_per_kwh: float
    pue: float
    kinds: dict[str, str]
    next_seq: int
    duration_s: float = 0.0
    #: device id -> (energy_j, process_energy_j) of its newest flushed sample.
    latest: dict[str, tuple[float, float | None]] = field(default_factory=dict)

    @classmethod
    def of(cls, run: Run, next_seq: int) -> _LiveRun:
        return cls(
            run_id=run.id,
            attribution=run.attribution,
            intensity_g_per_kwh=run.intensity.intensity_g_per_kwh,
            pue=run.intensity.pue,
            kinds={d.device.device_id: d.device.kind for d in run.devices},
            next_seq=next_seq,
            latest={d.device.device_id: (d.energy_j, d.process_energy_j) for d in run.devices},
        )

    def totals(self) -> dict[str, float]:
        rows = [(self.kinds.get(d, "cpu"), j, pj) for d, (j, pj) in self.latest.items()]
        return totals_from_devices(rows, self.attribution, self.intensity_g_per_kwh, self.pue)
