"""The reading half of :class:`~carbon_jupyter.store.sqlite.Store`: runs, samples, totals.

Every view reads through these methods (the CLI, the magics, the sidebar's
routes, ``carbon_jupyter.runs()``), so they all see the same records. The
filters are those of :mod:`carbon_jupyter.store.query`; the connections,
locking and failure wording come from the store itself.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Generator, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal, overload

from carbon_jupyter.model import Run, Sample
from carbon_jupyter.store import query
from carbon_jupyter.store.query import RunFilter
from carbon_jupyter.store.rows import EXPORT_COLUMNS, SAMPLE_FIELDS, decode_json_columns


class StoreReads:
    """Reading methods; the store supplies its connections (see the module docstring)."""

    path: Path

    def _read(self, doing: str) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def _guard(self, doing: str) -> contextlib.AbstractContextManager[None]:
        raise NotImplementedError

    def _connect(self) -> sqlite3.Connection:
        raise NotImplementedError

    def _maybe_mark_lost(self) -> None:
        raise NotImplementedError

    @overload
    def runs(
        self,
        label: str | None = ...,
        phase: str | None = ...,
        notebook: str | None = ...,
        kernel: str | None = ...,
        since: datetime | timedelta | str | None = ...,
        status: str | Sequence[str] | None = ...,
        tag: str | Mapping[str, str] | None = ...,
        origin: str | None = ...,
        limit: int | None = ...,
        as_frame: Literal[False] = ...,
    ) -> list[Run]: ...

    @overload
    def runs(
        self,
        label: str | None = ...,
        phase: str | None = ...,
        notebook: str | None = ...,
        kernel: str | None = ...,
        since: datetime | timedelta | str | None = ...,
        status: str | Sequence[str] | None = ...,
        tag: str | Mapping[str, str] | None = ...,
        origin: str | None = ...,
        limit: int | None = ...,
        *,
        as_frame: bool,
    ) -> Any: ...

    def runs(
        self,
        label: str | None = None,
        phase: str | None = None,
        notebook: str | None = None,
        kernel: str | None = None,
        since: datetime | timedelta | str | None = None,
        status: str | Sequence[str] | None = None,
        tag: str | Mapping[str, str] | None = None,
        origin: str | None = None,
        limit: int | None = 50,
        as_frame: bool = False,
    ) -> Any:
        """Stored runs, newest first, as :class:`~carbon_jupyter.model.Run` records.

        The filters are described in :mod:`carbon_jupyter.store.query`; ``limit=None``
        returns every match (:meth:`iter_runs` streams them instead, for large stores).
        With ``as_frame=True`` the result is a pandas DataFrame with one row per run and
        every stored column (hardware, versions and tags as dicts).
        Runs carry their devices; their ``samples`` are empty (see :meth:`samples`).
        """
        flt = RunFilter(label, phase, notebook, kernel, since, status, tag, origin)
        self._maybe_mark_lost()
        if as_frame:
            return self._frame(flt, limit)
        with self._read("listing runs in") as conn:
            return query.select_runs(conn, flt, limit)

    def iter_runs(
        self,
        label: str | None = None,
        phase: str | None = None,
        notebook: str | None = None,
        kernel: str | None = None,
        since: datetime | timedelta | str | None = None,
        status: str | Sequence[str] | None = None,
        tag: str | Mapping[str, str] | None = None,
        origin: str | None = None,
        limit: int | None = None,
    ) -> Generator[Run, None, None]:
        """Stored runs, newest first, one at a time as they are read; every match by default.

        Filters as in :meth:`runs`. The runs come in batches from one snapshot of the file,
        read on a connection of their own, so the first comes at once and memory stays
        flat however many match. The snapshot is held (writers go on) until the iterator
        is used up or closed (``close()``, or ``contextlib.closing``).
        """
        flt = RunFilter(label, phase, notebook, kernel, since, status, tag, origin)
        flt.where()  # a filter that cannot be used is refused here, not at the first run
        self._maybe_mark_lost()
        return self._stream(flt, limit)

    def _stream(self, flt: RunFilter, limit: int | None) -> Generator[Run, None, None]:
        with self._guard("listing runs in"):
            conn = self._connect()
        runs = query.iter_runs(conn, flt, limit)
        try:
            with self._guard("listing runs in"):
                conn.execute("BEGIN")
            while True:
                with self._guard("listing runs in"):
                    run = next(runs, None)
                if run is None:
                    return
                yield run
        finally:
            runs.close()
            conn.close()

    def _frame(self, flt: RunFilter, limit: int | None) -> Any:
        pd = _pandas()
        with self._read("listing runs in") as conn:
            rows = query.select_run_rows(conn, flt, limit, EXPORT_COLUMNS)
        frame = pd.DataFrame([decode_json_columns(r) for r in rows], columns=EXPORT_COLUMNS)
        for column in ("started_at", "ended_at", "updated_at"):
            frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
        return frame

    def get_run(self, run_id: str, *, samples: bool = False) -> Run:
        """The run whose id is ``run_id`` or starts with it; its samples too if asked.

        Raises :class:`~carbon_jupyter.store.query.RunNotFoundError` (a StoreError and a
        KeyError) when no run or several runs match.
        """
        self._maybe_mark_lost()
        with self._read(f"reading run {run_id[:8]} from") as conn:
            return query.select_run(conn, run_id, str(self.path), samples)

    @overload
    def samples(
        self,
        run_id: str,
        since_seq: int | None = ...,
        *,
        device_id: str | None = ...,
        as_frame: Literal[False] = ...,
    ) -> list[Sample]: ...

    @overload
    def samples(
        self,
        run_id: str,
        since_seq: int | None = ...,
        *,
        device_id: str | None = ...,
        as_frame: bool,
    ) -> Any: ...

    def samples(
        self,
        run_id: str,
        since_seq: int | None = None,
        *,
        device_id: str | None = None,
        as_frame: bool = False,
    ) -> Any:
        """The samples of a run in the order they were stored (a list, or a DataFrame).

        Samples are numbered 1, 2, 3... per run without gaps, so a live view that has
        seen ``n`` samples asks for ``samples(run_id, since_seq=n)`` to get only the new
        ones. ``run_id`` must be a full id (see :meth:`get_run` for prefixes).
        """
        with self._read(f"reading samples of run {run_id[:8]} from") as conn:
            found = query.select_samples(conn, run_id, since_seq, device_id)
        if not as_frame:
            return found
        pd = _pandas()
        first = (since_seq or 0) + 1
        frame = pd.DataFrame(found, columns=list(SAMPLE_FIELDS))
        if device_id is None:
            frame.insert(0, "seq", range(first, first + len(found)))
        return frame

    def last_seq(self, run_id: str) -> int:
        """The number of the newest stored sample of a run (0 when it has none)."""
        with self._read("reading samples from") as conn:
            return query.last_seq(conn, run_id)

    def totals(
        self, by: str = "label", since: datetime | timedelta | str | None = None, **filters: Any
    ) -> list[dict[str, Any]]:
        """Count, duration_s, energy_j (and per component) and co2_g of runs, grouped.

        ``by`` is ``label``, ``notebook``, ``phase`` or ``day`` (the UTC day a run
        started); ``since`` and ``filters`` select runs as in :meth:`runs`. Groups come
        largest energy first, days in date order.
        """
        flt = RunFilter(since=since, **filters)
        self._maybe_mark_lost()
        with self._read("adding up runs in") as conn:
            return query.select_totals(conn, by, flt)


def _pandas() -> Any:
    try:
        import pandas
    except ImportError as exc:
        raise ImportError(
            "as_frame=True needs pandas, which is not installed: pip install pandas"
        ) from exc
    return pandas
