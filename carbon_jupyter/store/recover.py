"""Checking a run store file, and recovering what can be read from a damaged one.

``carbon-jupyter store check [--db PATH]`` (:func:`check`)
    Whether the file is healthy: SQLite's own ``integrity_check``, the schema
    version, and how many runs, devices and samples it holds. It reads only:
    nothing beside the file is created when it has no write-ahead log.
``carbon-jupyter store recover [--db PATH]`` (:func:`recover`)
    For a damaged file: moves it aside (never deletes it) as
    ``carbon.db.damaged-<UTC time>``, with its ``-wal`` and ``-shm`` under the
    same new name, copies every run, device row and sample that can still be
    read into a fresh store at the old path, and reports how many were copied
    and how many were lost.

How a damaged file is read
--------------------------
Recovery works on a scratch copy of the file (and of its write-ahead log, so
runs that only the log holds come back too), so the file moved aside is never
opened by SQLite. When the copy's 100-byte header is unreadable it is rebuilt
from what SQLite's file format fixes and from the page size that page 1's own
layout implies; the pages themselves are left as they are.

Each table is then read in ranges of its key (``rowid`` for runs and devices,
the sequence number of each run's samples), in order. When SQLite meets a page
it cannot read, the rows read so far are kept, and the rest of the range is
split in two and each half read again, down to single keys: every row on a
readable page is copied, and the keys that could not be read are counted as
lost (keys are dense, so this counts the rows that were there). A damaged
page that hides the end of a table makes that count a lower bound. Rows go
into the fresh store with ``INSERT OR IGNORE``, so a row that cannot be valid
(garbage SQLite did not detect) is skipped rather than stored.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from carbon_jupyter.errors import StoreError
from carbon_jupyter.store import schema
from carbon_jupyter.store.failures import StoreMissingError
from carbon_jupyter.store.sqlite import Store, readonly_uri

TABLES = ("runs", "devices", "samples")
COMPANIONS = ("-wal", "-shm")
#: Reads that may fail per table (per run for samples) before a damaged range is given up.
MAX_FAILED_READS = 2_000
#: Reads that may fail in one recovery, all tables together.
MAX_FAILED_READS_IN_ALL = 100_000
#: Rows written to the fresh store per transaction.
BATCH_ROWS = 5_000

_MAGIC = b"SQLite format 3\x00"
_PAGE_SIZES = (4096, 1024, 2048, 8192, 16384, 32768, 65536, 512)
_BIGGEST_KEY = 2**63 - 1

#: A row as SQLite returns it.
Row = tuple[Any, ...]


@dataclass(frozen=True)
class Health:
    """What :func:`check` found. ``counts`` holds None for a table that could not be counted."""

    path: Path
    problems: tuple[str, ...]
    steps: tuple[str, ...] | None
    counts: dict[str, int | None]

    @property
    def foreign(self) -> bool:
        """True for a sound SQLite file of another program (no carbon-jupyter tables)."""
        has_ours = bool(self.steps) or self.counts["runs"] is not None
        return not self.problems and not has_ours

    @property
    def healthy(self) -> bool:
        return not self.problems and not self.foreign

    def report(self) -> str:
        """The lines ``carbon-jupyter store check`` prints."""
        lines = [f"{self.path}: {'healthy' if self.healthy else 'damaged'}"]
        integrity = "ok (SQLite integrity_check)" if not self.problems else self.problems[0]
        lines.append(f"  {'integrity':<10} {integrity}")
        lines += [f"  {'':<10} {p}" for p in self.problems[1:5]]
        lines.append(f"  {'schema':<10} {self._schema_text()}")
        for table in TABLES:
            count = self.counts[table]
            lines.append(f"  {table:<10} {'unreadable' if count is None else count}")
        if self.problems:
            lines.append(
                f"Run `carbon-jupyter store recover --db {self.path}` to move it aside and "
                "copy every readable run into a fresh store."
            )
        return "\n".join(lines)

    def _schema_text(self) -> str:
        if self.steps is None:
            return "unreadable"
        known = len(schema.STEP_NAMES)
        unknown = [s for s in self.steps if s not in schema.STEP_NAMES]
        if unknown:
            return f"version {len(self.steps)}, newer than this carbon-jupyter ({known})"
        if len(self.steps) < known:
            return f"version {len(self.steps)} (upgraded to {known} when next written)"
        return f"version {known} (current)"


@dataclass
class Recovery:
    """What :func:`recover` did: where the damaged file went, what was copied and lost."""

    path: Path
    moved_to: Path
    moved: list[Path]
    copied: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLES, 0))
    lost: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLES, 0))
    #: Tables whose lost count is a lower bound (the page with their last rows is damaged).
    at_least: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)

    def report(self) -> str:
        """The lines ``carbon-jupyter store recover`` prints."""
        moved = ", ".join(str(p) for p in self.moved)
        lines = [f"The damaged run store was moved aside: {moved}."]
        if not any(self.copied.values()) and not any(self.lost.values()):
            lines.append(f"A fresh, empty run store is at {self.path}: nothing could be read.")
        else:
            lines.append(f"A fresh run store at {self.path} holds what could be read:")
        for table in TABLES:
            bound = "at least " if table in self.at_least else ""
            lines.append(
                f"  {table:<8} copied {self.copied[table]:,}, lost {bound}{self.lost[table]:,}"
            )
        lines += self.notes
        return "\n".join(lines)


def check(path: str | os.PathLike[str]) -> Health:
    """Check the store file at ``path`` without changing it; see the module docstring.

    Raises StoreError for a file that is not an SQLite database at all, or a sound one
    of another program: the path is wrong, not the store.
    """
    target = Path(path).expanduser().absolute()
    if not target.is_file():
        raise StoreMissingError(target)
    _refuse_what_is_no_store(target)
    conn = sqlite3.connect(readonly_uri(target), uri=True)
    try:
        health = _health(conn, target)
    finally:
        conn.close()
    if health.foreign:
        raise StoreError(
            f"{target} is an SQLite database of another program (no carbon-jupyter tables), "
            "not a damaged run store: nothing to check. Point --db (or CARBON_JUPYTER_DB) at "
            "your run store."
        )
    return health


def _health(conn: sqlite3.Connection, path: Path) -> Health:
    problems: tuple[str, ...] = ()
    try:
        found = [str(row[0]) for row in conn.execute("PRAGMA integrity_check(20)")]
        if found != ["ok"]:
            problems = tuple(found)
    except sqlite3.DatabaseError as exc:
        problems = (str(exc),)
    try:
        steps: tuple[str, ...] | None = tuple(schema.applied_steps(conn))
    except sqlite3.DatabaseError:
        steps = None
    counts: dict[str, int | None] = {}
    for table in TABLES:
        try:
            counts[table] = int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
        except sqlite3.DatabaseError as exc:
            counts[table] = None
            if steps and "no such table" in str(exc):
                problems += (f"the {table} table is missing",)
    return Health(path, problems, steps, counts)


def recover(path: str | os.PathLike[str], *, now: datetime | None = None) -> Recovery:
    """Move the damaged store at ``path`` aside and copy what can be read into a fresh one.

    A file that does not look like an SQLite database at all (neither its header nor its
    first page) is refused with a StoreError and left where it is: it is not a damaged
    store but the wrong path.
    """
    target = Path(path).expanduser().absolute()
    if not target.is_file():
        raise StoreMissingError(target)
    _refuse_what_is_no_store(target)
    if check(target).healthy:
        raise StoreError(f"{target} is healthy: nothing to recover, and it was left as it is.")
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    moved_to = _free_name(target, stamp)
    moved = _move_aside(target, moved_to)
    result = Recovery(target, moved_to, moved)
    scratch_dir = Path(tempfile.mkdtemp(prefix="carbon-jupyter-recover-"))
    try:
        source = _scratch_copy(moved_to, scratch_dir)
        conn = _open_damaged(source, result)
        Store(target).close()  # the fresh store, with the current schema
        fresh = sqlite3.connect(target, isolation_level=None)
        try:
            if conn is not None:
                _copy_all(conn, fresh, result)
        finally:
            fresh.close()
            if conn is not None:
                conn.close()
    finally:
        shutil.rmtree(scratch_dir, ignore_errors=True)
    return result


# -- moving aside -------------------------------------------------------------------------------
def _refuse_what_is_no_store(path: Path) -> None:
    """StoreError unless ``path`` starts with SQLite's header or a first page laid out as one."""
    with open(path, "rb") as f:
        start = f.read(65536)
    if start.startswith(_MAGIC) or _page_size(start, path.stat().st_size) is not None:
        return
    raise StoreError(
        f"{path} does not look like an SQLite database, damaged or not (no SQLite header, "
        "no table page where the first one should be), so it was left as it is. Point --db "
        "(or CARBON_JUPYTER_DB) at your run store."
    )


def _free_name(path: Path, stamp: str) -> Path:
    """``<name>.damaged-<stamp>``, with a number added if that name (or a companion) is taken."""
    for n in range(1000):
        name = f"{path.name}.damaged-{stamp}" + (f"-{n}" if n else "")
        candidate = path.with_name(name)
        taken = [Path(f"{candidate}{s}") for s in ("", *COMPANIONS)]
        if not any(p.exists() for p in taken):
            return candidate
    raise FileExistsError(f"no free name beside {path} to move it aside to")


def _move_aside(path: Path, moved_to: Path) -> list[Path]:
    """Rename the file and its companions (``-wal``, ``-shm``) to ``moved_to``; never delete."""
    moved = []
    for suffix in ("", *COMPANIONS):
        source = Path(f"{path}{suffix}")
        if source.exists():
            destination = Path(f"{moved_to}{suffix}")
            os.rename(source, destination)
            moved.append(destination)
    return moved


def _scratch_copy(moved_to: Path, folder: Path) -> Path:
    """A copy of the damaged file and its log in ``folder``, for SQLite to read and repair."""
    copy = folder / "damaged.db"
    shutil.copyfile(moved_to, copy)
    wal = Path(f"{moved_to}-wal")
    if wal.exists() and wal.stat().st_size > 0:
        shutil.copyfile(wal, Path(f"{copy}-wal"))
    return copy


def _open_damaged(copy: Path, result: Recovery) -> sqlite3.Connection | None:
    """A connection that can read the copy's schema (its header rebuilt if need be), or None."""
    for attempt in range(2):
        conn = sqlite3.connect(copy, isolation_level=None)
        try:
            conn.execute("SELECT name FROM sqlite_master").fetchall()
            return conn
        except sqlite3.DatabaseError:
            conn.close()
        if attempt == 0:
            if not _rebuild_header(copy):
                break
            result.notes.append(
                "The file's header was unreadable; it was rebuilt in a scratch copy to read "
                "the pages behind it."
            )
    result.notes.append("Not even the list of tables could be read.")
    return None


def _rebuild_header(path: Path) -> bool:
    """Write a fresh 100-byte header over ``path``; False when page 1 shows no layout."""
    size = path.stat().st_size
    with open(path, "r+b") as f:
        page1 = f.read(65536)
        page_size = _page_size(page1, size)
        if page_size is None:
            return False
        wal = Path(f"{path}-wal").exists()
        header = bytearray(100)
        header[0:16] = _MAGIC
        header[16:18] = (1 if page_size == 65536 else page_size).to_bytes(2, "big")
        header[18] = header[19] = 2 if wal else 1  # WAL mode reads the log; else legacy
        header[21:24] = bytes((64, 32, 32))  # payload fractions, fixed by the format
        header[24:28] = (1).to_bytes(4, "big")  # change counter
        header[28:32] = (size // page_size).to_bytes(4, "big")  # pages in the file
        header[40:44] = (1).to_bytes(4, "big")  # schema cookie
        header[44:48] = (4).to_bytes(4, "big")  # schema format
        header[56:60] = (1).to_bytes(4, "big")  # UTF-8
        header[92:96] = (1).to_bytes(4, "big")  # the page count above is valid
        header[96:100] = _version_number().to_bytes(4, "big")  # the SQLite that wrote it
        f.seek(0)
        f.write(header)
    return True


def _version_number() -> int:
    major, minor, patch = sqlite3.sqlite_version_info
    return major * 1_000_000 + minor * 1000 + patch


def _page_size(page1: bytes, file_size: int) -> int | None:
    """The page size under which page 1 (after its header) is a well-formed b-tree page."""
    if len(page1) < 112 or page1[100] not in (0x05, 0x0D):
        return None
    interior = page1[100] == 0x05
    cells = int.from_bytes(page1[103:105], "big")
    start = int.from_bytes(page1[105:107], "big") or 65536
    pointers_at = 112 if interior else 108
    for size in _PAGE_SIZES:
        if file_size % size or start > size or pointers_at + 2 * cells > min(size, len(page1)):
            continue
        pointers = [
            int.from_bytes(page1[pointers_at + 2 * i : pointers_at + 2 * i + 2], "big")
            for i in range(cells)
        ]
        if all(start <= p < size for p in pointers):
            return size
    return None


# -- copying --------------------------------------------------------------------------------------
def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    try:
        return [str(row[1]) for row in conn.execute(f"PRAGMA table_info({table})")]
    except sqlite3.DatabaseError:
        return []


def _copy_all(source: sqlite3.Connection, fresh: sqlite3.Connection, result: Recovery) -> None:
    budget = _Budget()
    run_ids: dict[str, None] = {}
    for table, key in (("runs", "id"), ("devices", "run_id")):
        columns = [c for c in _columns(source, table) if c in _columns(fresh, table)]
        if key not in columns:
            continue
        scan = _scan(
            source, budget, f"SELECT MAX(rowid) FROM {table}",
            f"SELECT rowid, {', '.join(columns)} FROM {table} "
            "WHERE rowid BETWEEN ? AND ? ORDER BY rowid",
        )  # fmt: skip
        run_ids.update((str(row[columns.index(key)]), None) for row in scan.rows)
        _count(result, table, scan, _insert(fresh, table, columns, scan.rows))
    columns = [c for c in _columns(source, "samples") if c in _columns(fresh, "samples")]
    if "run_id" not in columns or "seq" not in columns:
        return
    for run_id in run_ids:
        scan = _scan(
            source, budget, "SELECT MAX(seq) FROM samples WHERE run_id = ?",
            f"SELECT seq, {', '.join(columns)} FROM samples "
            "WHERE run_id = ? AND seq BETWEEN ? AND ? ORDER BY seq",
            (run_id,),
        )  # fmt: skip
        _count(result, "samples", scan, _insert(fresh, "samples", columns, scan.rows))


def _count(result: Recovery, table: str, scan: _Scan, copied: int) -> None:
    result.copied[table] += copied
    result.lost[table] += scan.lost + len(scan.rows) - copied
    if not scan.exact:
        result.at_least.add(table)


def _insert(
    fresh: sqlite3.Connection, table: str, columns: Sequence[str], rows: Sequence[Row]
) -> int:
    """Insert ``rows`` (skipping any the schema refuses); returns how many went in."""
    sql = (
        f"INSERT OR IGNORE INTO {table} ({', '.join(columns)}) "
        f"VALUES ({', '.join('?' for _ in columns)})"
    )
    inserted = 0
    for start in range(0, len(rows), BATCH_ROWS):
        fresh.execute("BEGIN IMMEDIATE")
        for row in rows[start : start + BATCH_ROWS]:
            try:
                inserted += max(fresh.execute(sql, row).rowcount, 0)  # triggers not counted
            except sqlite3.Error:  # a value SQLite cannot bind or the table refuses
                continue
        fresh.execute("COMMIT")
    return inserted


@dataclass
class _Budget:
    """How many more reads may fail in this recovery, all tables together."""

    left: int = MAX_FAILED_READS_IN_ALL

    def for_scan(self) -> int:
        return min(MAX_FAILED_READS, self.left)


@dataclass
class _Scan:
    """The readable rows of one key range (key dropped), and how many keys were lost.

    ``exact`` is False when the highest key could not be read: rows after the last one
    read may be lost without being counted.
    """

    rows: list[Row]
    lost: int
    exact: bool


def _scan(
    conn: sqlite3.Connection,
    budget: _Budget,
    highest_sql: str,
    rows_sql: str,
    params: tuple[str, ...] = (),
) -> _Scan:
    """Read keys 1 to the highest with ``rows_sql`` (params, then the low and high key)."""
    try:
        row = conn.execute(highest_sql, params).fetchone()
        highest: int | None = int(row[0]) if row and row[0] is not None else 0
    except sqlite3.DatabaseError:
        highest = None

    def fetch(low: int, high: int) -> Iterable[Row]:
        return conn.execute(rows_sql, (*params, low, high))

    last = _BIGGEST_KEY if highest is None else highest
    keyed, failed = _read_ranges(fetch, 1, last, budget)
    top = highest if highest is not None else max((int(r[0]) for r in keyed), default=0)
    lost = sum(min(end, top) - first + 1 for first, end in failed if first <= top)
    return _Scan([r[1:] for r in keyed], lost, highest is not None)


def _read_ranges(
    fetch: Callable[[int, int], Iterable[Row]], low: int, high: int, budget: _Budget
) -> tuple[list[Row], list[tuple[int, int]]]:
    """Rows (key first) with keys ``low``..``high``, and the key ranges that could not be read.

    See "How a damaged file is read" in the module docstring.
    """
    rows: list[Row] = []
    failed: list[tuple[int, int]] = []
    may_fail = budget.for_scan()
    pending = [(low, high)]
    while pending:
        first, last = pending.pop()
        if first > last:
            continue
        read_to = first - 1
        try:
            for row in fetch(first, last):
                rows.append(row)
                read_to = int(row[0])
            continue
        except sqlite3.DatabaseError:
            may_fail -= 1
            budget.left -= 1
        start = read_to + 1
        if start > last:
            continue
        if start == last or may_fail <= 0:
            failed.append((start, last))
            continue
        middle = (start + last) // 2
        pending += [(middle + 1, last), (start, middle)]  # the lower half first
    return rows, failed
